import Foundation
import PulseGateCore
import PulseGateOAuth
import Testing

@Suite struct OAuthClientTests {
    let settings = OAuthClientSettings(
        clientID: "client_id", clientSecret: Secret("client secret"),
        authorizeURL: URL(string: "https://vendor.test/oauth/authorize?existing=1")!,
        tokenURL: URL(string: "https://vendor.test/oauth/token")!, redirectURI: "https://pg.test/v1/oauth/x/callback",
        scopes: ["read", "activity:read_all"], scopeSeparator: ",", usePKCE: true, clientAuthentication: .basic,
        extraAuthorizeParameters: [("approval_prompt", "auto")])

    /// RFC 7636 Appendix B.
    @Test func pkceS256MatchesTheRFCVector() {
        let pkce = PKCE(verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        #expect(pkce.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        let fresh = PKCE()
        #expect(fresh.verifier.count == 43)
        #expect(fresh.verifier != PKCE().verifier)
    }

    /// The Fitbit documentation's example (vendor-vectors A2).
    @Test func basicAuthorizationMatchesTheDocumentedExample() {
        #expect(
            OAuthClient.basicAuthorization("client_id", Secret("client secret"))
                == "Basic Y2xpZW50X2lkOmNsaWVudCBzZWNyZXQ=")
    }

    @Test func authorizeURLCarriesEverythingOnce() throws {
        let client = OAuthClient(settings: settings)
        let pkce = PKCE(verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        let url = client.authorizeURL(state: "st+ate/1", pkce: pkce)
        let items = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems)
        var query = [String: String]()
        for item in items { query[item.name] = item.value }
        #expect(query["existing"] == "1")
        #expect(query["client_id"] == "client_id")
        #expect(query["response_type"] == "code")
        #expect(query["scope"] == "read,activity:read_all")
        #expect(query["code_challenge"] == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(query["code_challenge_method"] == "S256")
        #expect(query["approval_prompt"] == "auto")
        // Reserved characters survive the round trip exactly.
        #expect(query["state"] == "st+ate/1")
        #expect(query["redirect_uri"] == "https://pg.test/v1/oauth/x/callback")
    }

    @Test func tokenRequestsUseTheConfiguredClientAuthentication() {
        let basic = OAuthClient(settings: settings).refreshRequest(refreshToken: Secret("r&1"))
        #expect(basic.header("Authorization")?.hasPrefix("Basic ") == true)
        #expect(String(decoding: basic.body ?? [], as: UTF8.self) == "grant_type=refresh_token&refresh_token=r%261")
        #expect(!basic.idempotent)
        var bodyAuth = settings
        bodyAuth.clientAuthentication = .body
        let body = OAuthClient(settings: bodyAuth).codeExchangeRequest(code: "c", pkce: PKCE(verifier: "v"))
        #expect(body.header("Authorization") == nil)
        let form = FormEncoding.decode(String(decoding: body.body ?? [], as: UTF8.self))
        #expect(form["client_secret"] == "client secret")
        #expect(form["code_verifier"] == "v")
        #expect(form["grant_type"] == "authorization_code")
    }

    @Test func vendorExtrasGoOnTokenRequestsAndRefreshesOnly() {
        var extras = settings
        extras.extraTokenParameters = [("action", "requesttoken")]
        extras.extraRefreshParameters = [("scope", "offline")]
        let client = OAuthClient(settings: extras)
        let refresh = String(decoding: client.refreshRequest(refreshToken: Secret("r")).body ?? [], as: UTF8.self)
        #expect(refresh == "action=requesttoken&grant_type=refresh_token&refresh_token=r&scope=offline")
        let exchange = FormEncoding.decode(
            String(decoding: client.codeExchangeRequest(code: "c", pkce: nil).body ?? [], as: UTF8.self))
        #expect(exchange["action"] == "requesttoken" && exchange["scope"] == nil)
    }

    @Test func tokenAnswersAreReadPerRFC6749() throws {
        let client = OAuthClient(settings: settings)
        let now = Timestamp(millisecondsSinceEpoch: 1_700_000_000_000)
        let ok = InboundResponse(
            status: 200,
            body: Array(#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"scope":"x y"}"#.utf8))
        let grant = try client.parseTokenResponse(ok, now: now, previousRefreshToken: Secret("keep"))
        #expect(grant.accessToken.text == "a")
        #expect(grant.refreshToken?.text == "keep", "no new refresh token: the previous one stays")
        #expect(grant.expiresAt == now.adding(milliseconds: 3_600_000))
        #expect(grant.scopes == ["x", "y"])

        func classify(_ status: Int, _ body: String, _ headers: [(name: String, value: String)] = []) -> OAuthError? {
            do {
                _ = try client.parseTokenResponse(
                    InboundResponse(status: status, headers: headers, body: Array(body.utf8)), now: now)
                return nil
            } catch { return error }
        }
        guard case .grantRejected = classify(400, #"{"error":"invalid_grant"}"#) else {
            Issue.record("invalid_grant"); return
        }
        guard case .clientRejected = classify(401, #"{"error":"invalid_client"}"#) else {
            Issue.record("invalid_client"); return
        }
        guard case .transient(_, let wait) = classify(429, "{}", [("Retry-After", "7")]), wait == .seconds(7) else {
            Issue.record("429"); return
        }
        guard case .transient = classify(503, "oops") else { Issue.record("503"); return }
        // An unknown 4xx page (a proxy) must never unlink anyone.
        guard case .transient = classify(403, "<html>forbidden</html>") else { Issue.record("html 403"); return }
        guard case .transient = classify(200, #"{"token_type":"Bearer"}"#) else {
            Issue.record("no access token"); return
        }
    }
}

@Suite struct TokenCipherTests {
    let key = try! TokenCipher.Key(bytes: Array(repeating: 7, count: 32))
    let other = try! TokenCipher.Key(bytes: Array(repeating: 9, count: 32))

    @Test func sealsAndOpensBoundToItsContext() throws {
        let cipher = TokenCipher(current: key)
        let sealed = cipher.seal(Secret("refresh-token-value"), context: "connection:a:refresh")
        #expect(!sealed.hexString.contains(Array("refresh-token-value".utf8).hexString))
        #expect(try cipher.open(sealed, context: "connection:a:refresh").text == "refresh-token-value")
        #expect(throws: TokenCipher.CipherError.self) { try cipher.open(sealed, context: "connection:b:refresh") }
        var tampered = sealed
        tampered[tampered.count - 20] ^= 1
        #expect(throws: TokenCipher.CipherError.self) { try cipher.open(tampered, context: "connection:a:refresh") }
        // Two seals of the same value differ (fresh nonce).
        #expect(cipher.seal(Secret("x"), context: "c") != cipher.seal(Secret("x"), context: "c"))
    }

    @Test func rotationOpensOldValuesAndMarksThemForResealing() throws {
        let old = TokenCipher(current: key)
        let sealed = old.seal(Secret("t"), context: "c")
        let rotated = TokenCipher(current: other, previous: [key])
        #expect(try rotated.open(sealed, context: "c").text == "t")
        #expect(rotated.needsRotation(sealed))
        #expect(!rotated.needsRotation(rotated.seal(Secret("t"), context: "c")))
        #expect(throws: TokenCipher.CipherError.self) { try TokenCipher(current: other).open(sealed, context: "c") }
    }

    @Test func keyFilesAcceptHexBase64AndRawAndRefuseOtherSizes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pg-key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let bytes = TokenCipher.Key.generate()
        let hex = dir.appendingPathComponent("hex").path
        try Data((bytes.hexString + "\n").utf8).write(to: URL(fileURLWithPath: hex))
        let b64 = dir.appendingPathComponent("b64").path
        try Data(Data(bytes).base64EncodedString().utf8).write(to: URL(fileURLWithPath: b64))
        let raw = dir.appendingPathComponent("raw").path
        try Data(bytes).write(to: URL(fileURLWithPath: raw))
        let short = dir.appendingPathComponent("short").path
        try Data("abcd".utf8).write(to: URL(fileURLWithPath: short))
        let ids = try [hex, b64, raw].map { try TokenCipher.Key(file: $0).id }
        #expect(Set(ids.map(\.hexString)).count == 1)
        #expect(throws: TokenCipher.CipherError.self) { try TokenCipher.Key(file: short) }
        #expect(throws: TokenCipher.CipherError.self) {
            try TokenCipher.Key(file: dir.appendingPathComponent("missing").path)
        }
    }
}

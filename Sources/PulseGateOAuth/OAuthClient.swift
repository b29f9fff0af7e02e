import Foundation
import PulseGateCore

/// One vendor app's OAuth 2.0 registration and the vendor's flavour of RFC 6749.
public struct OAuthClientSettings: Sendable {
    /// How the client proves itself at the token endpoint (RFC 6749 §2.3.1).
    public enum ClientAuthentication: String, Sendable, Codable, CaseIterable {
        /// `Authorization: Basic base64(id:secret)` (Polar, Fitbit legacy).
        case basic
        /// `client_id` and `client_secret` in the form body (Strava, Oura, Google).
        case body
    }

    public var clientID: String
    public var clientSecret: Secret
    public var authorizeURL: URL
    public var tokenURL: URL
    public var redirectURI: String
    public var scopes: [String]
    /// Strava joins scopes with commas; RFC 6749 and everyone else with spaces.
    public var scopeSeparator: String
    public var usePKCE: Bool
    public var clientAuthentication: ClientAuthentication
    /// Vendor extras on the authorize URL (Strava `approval_prompt`, Google `access_type=offline`).
    public var extraAuthorizeParameters: [(String, String)]
    /// Vendor extras on every token request (Withings `action=requesttoken`).
    public var extraTokenParameters: [(String, String)]
    /// Vendor extras on refresh requests only (WHOOP `scope=offline`, without which no new refresh
    /// token comes back).
    public var extraRefreshParameters: [(String, String)]

    public init(
        clientID: String, clientSecret: Secret, authorizeURL: URL, tokenURL: URL, redirectURI: String,
        scopes: [String], scopeSeparator: String = " ", usePKCE: Bool, clientAuthentication: ClientAuthentication,
        extraAuthorizeParameters: [(String, String)] = [], extraTokenParameters: [(String, String)] = [],
        extraRefreshParameters: [(String, String)] = []
    ) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.authorizeURL = authorizeURL
        self.tokenURL = tokenURL
        self.redirectURI = redirectURI
        self.scopes = scopes
        self.scopeSeparator = scopeSeparator
        self.usePKCE = usePKCE
        self.clientAuthentication = clientAuthentication
        self.extraAuthorizeParameters = extraAuthorizeParameters
        self.extraTokenParameters = extraTokenParameters
        self.extraRefreshParameters = extraRefreshParameters
    }
}

/// The tokens a vendor granted, with everything else it said kept in `raw` for the adapter (Strava's
/// `athlete`, Polar's `x_user_id`).
public struct TokenGrant: Sendable {
    public var accessToken: Secret
    public var refreshToken: Secret?
    public var expiresAt: Timestamp?
    /// What the vendor says was granted; `nil` when it did not say (then the request's scopes hold).
    public var scopes: [String]?
    public var raw: JSONValue

    public init(
        accessToken: Secret, refreshToken: Secret?, expiresAt: Timestamp?, scopes: [String]?, raw: JSONValue = .null
    ) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.expiresAt = expiresAt
        self.scopes = scopes
        self.raw = raw
    }
}

/// Why a token request failed, sorted by what the engine must do about it.
public enum OAuthError: Error, Sendable, CustomStringConvertible {
    /// The grant is dead for good (`invalid_grant`, revoked, user gone): only the user can fix it by
    /// linking again.
    case grantRejected(String)
    /// The vendor refuses *our app* (`invalid_client`, `unauthorized_client`, bad request): an operator
    /// problem that must never be blamed on users, so connections are left untouched.
    case clientRejected(String)
    /// Try again later: network, 5xx, 429, an answer we could not read.
    case transient(String, retryAfter: Duration?)

    public var description: String {
        switch self {
        case .grantRejected(let m): "grant rejected: \(m)"
        case .clientRejected(let m): "client rejected: \(m)"
        case .transient(let m, _): "transient: \(m)"
        }
    }
}

/// Builds the RFC 6749 requests for one vendor app and reads the answers. Pure: no I/O, so every
/// vendor's deviation is testable with bytes.
public struct OAuthClient: Sendable {
    public let settings: OAuthClientSettings

    public init(settings: OAuthClientSettings) {
        self.settings = settings
    }

    /// The URL to send the user's browser to (RFC 6749 §4.1.1, RFC 7636 §4.3).
    public func authorizeURL(state: String, pkce: PKCE?) -> URL {
        var components = URLComponents(url: settings.authorizeURL, resolvingAgainstBaseURL: false)!
        var items = components.queryItems ?? []
        items.append(URLQueryItem(name: "client_id", value: settings.clientID))
        items.append(URLQueryItem(name: "response_type", value: "code"))
        items.append(URLQueryItem(name: "redirect_uri", value: settings.redirectURI))
        if !settings.scopes.isEmpty {
            items.append(URLQueryItem(name: "scope", value: settings.scopes.joined(separator: settings.scopeSeparator)))
        }
        items.append(URLQueryItem(name: "state", value: state))
        if let pkce {
            items.append(URLQueryItem(name: "code_challenge", value: pkce.challenge))
            items.append(URLQueryItem(name: "code_challenge_method", value: PKCE.method))
        }
        for (name, value) in settings.extraAuthorizeParameters { items.append(URLQueryItem(name: name, value: value)) }
        components.percentEncodedQueryItems = items.map {
            URLQueryItem(name: FormEncoding.escape($0.name), value: $0.value.map(FormEncoding.escape))
        }
        return components.url!
    }

    /// The authorization-code exchange (RFC 6749 §4.1.3).
    public func codeExchangeRequest(code: String, pkce: PKCE?) -> OutboundRequest {
        var fields = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", settings.redirectURI)]
        if let pkce { fields.append(("code_verifier", pkce.verifier)) }
        return tokenRequest(fields)
    }

    /// The refresh request (RFC 6749 §6).
    public func refreshRequest(refreshToken: Secret) -> OutboundRequest {
        tokenRequest(
            [("grant_type", "refresh_token"), ("refresh_token", refreshToken.text)] + settings.extraRefreshParameters)
    }

    func tokenRequest(_ fields: [(String, String)]) -> OutboundRequest {
        var fields = settings.extraTokenParameters + fields
        var headers: [(name: String, value: String)] = [
            ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"),
        ]
        switch settings.clientAuthentication {
        case .basic:
            headers.append(("Authorization", Self.basicAuthorization(settings.clientID, settings.clientSecret)))
        case .body:
            fields.append(("client_id", settings.clientID))
            fields.append(("client_secret", settings.clientSecret.text))
        }
        return OutboundRequest(
            method: .post, url: settings.tokenURL, headers: headers, body: FormEncoding.encode(fields),
            idempotent: false)
    }

    /// `Basic base64(id:secret)`, as the vendors document and send it (Fitbit's example encodes
    /// `client_id:client secret` with the space as is). RFC 6749 §2.3.1 asks for form-encoding first,
    /// which changes only secrets with reserved characters — and vendors that do not decode would then
    /// refuse them; the vendors' examples are the authority here.
    public static func basicAuthorization(_ id: String, _ secret: Secret) -> String {
        let pair = "\(id):\(secret.text)"
        return "Basic \(Data(pair.utf8).base64EncodedString())"
    }

    /// Reads a token endpoint answer (RFC 6749 §5.1/§5.2).
    ///
    /// - Parameter previousRefreshToken: kept when a refresh answer carries no new refresh token
    ///   (RFC 6749 §6: the server *may* issue a new one; Google never does).
    public func parseTokenResponse(_ response: InboundResponse, now: Timestamp, previousRefreshToken: Secret? = nil)
        throws(OAuthError) -> TokenGrant
    {
        let json = try? JSONValue.parse(response.body)
        if response.isSuccess {
            guard let json, let access = json["access_token"]?.string, !access.isEmpty else {
                throw .transient(
                    "token endpoint answered \(response.status) without an access_token", retryAfter: nil)
            }
            return grant(from: json, access: access, now: now, previousRefreshToken: previousRefreshToken)
        }
        throw Self.classify(response, json: json)
    }

    /// Builds the grant from a successful body; `expires_at` (absolute, Strava) wins over `expires_in`.
    public func grant(from json: JSONValue, access: String, now: Timestamp, previousRefreshToken: Secret?)
        -> TokenGrant
    {
        var expiresAt: Timestamp?
        if let at = json["expires_at"]?.double {
            expiresAt = Timestamp(secondsSinceEpoch: at)
        } else if let seconds = json["expires_in"]?.double ?? json["expires_in"]?.string.flatMap(Double.init) {
            expiresAt = now.adding(milliseconds: Int64(seconds * 1000))
        }
        let refresh = json["refresh_token"]?.string.flatMap { $0.isEmpty ? nil : Secret($0) }
        let scopes = json["scope"]?.string.map {
            $0.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        }
        return TokenGrant(
            accessToken: Secret(access), refreshToken: refresh ?? previousRefreshToken, expiresAt: expiresAt,
            scopes: scopes, raw: json)
    }

    /// Sorts an error answer: 429/5xx are transient; RFC 6749 error codes decide the 4xx.
    public static func classify(_ response: InboundResponse, json: JSONValue?) -> OAuthError {
        let retryAfter = response.header("Retry-After").flatMap(Int.init).map { Duration.seconds($0) }
        if response.status == 429 || response.status >= 500 || response.status == 408 {
            return .transient("token endpoint answered \(response.status)", retryAfter: retryAfter)
        }
        let code = json?["error"]?.string
        let detail = json?["error_description"]?.string.map { " (\($0))" } ?? ""
        switch code {
        case "invalid_grant":
            return .grantRejected("invalid_grant\(detail)")
        case "invalid_client", "unauthorized_client", "invalid_request", "unsupported_grant_type", "invalid_scope":
            return .clientRejected("\(code!)\(detail)")
        default:
            // A 4xx that is not RFC 6749 (a proxy page, a vendor-specific body the adapter did not map):
            // never treat it as proof the grant is dead, or one odd answer would unlink users.
            return .transient(
                "token endpoint answered \(response.status) without an OAuth error code", retryAfter: retryAfter)
        }
    }
}

extension Secret {
    /// The secret as text, for building a request. Never log the result.
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateTestSupport
import PulseGateVendorKit
import PulseGateVendorWithings
import Synchronization
import Testing

@Suite struct WithingsAdapterTests {
    let adapter = try! WithingsAdapter()

    static func at(_ text: String) -> Timestamp { Timestamp(rfc3339: text)! }
    static func form(_ request: OutboundRequest) -> [String: String] {
        FormEncoding.decode(String(decoding: request.body ?? [], as: UTF8.self))
    }
    static func envelope(_ status: Int, _ error: String) -> InboundResponse {
        .json(200, #"{"status":\#(status),"body":{},"error":"\#(error)"}"#)
    }

    @Test func manifestLoads() {
        let manifest = adapter.manifest
        #expect(manifest.id == "withings")
        #expect(manifest.oauth.scopes == ["user.info", "user.metrics", "user.activity", "user.sleepevents"])
        #expect(manifest.oauth.scopeSeparator == ",")
        #expect(manifest.oauth.pkce == false)
        #expect(manifest.oauth.clientAuthentication == .body)
        #expect(manifest.oauth.refreshTokens == .rotating)
        #expect(manifest.oauth.accessTokenLifetimeSeconds == 10800)
        #expect(manifest.urls["authorize"] == "https://account.withings.com/oauth2_user/authorize2")
        // One OAuth endpoint for every action; `requesttoken` rides in the form body.
        #expect(manifest.urls["token"] == "https://wbsapi.withings.net/v2/oauth2")
        #expect(manifest.oauth.extraTokenParameters == ["action": "requesttoken"])
        #expect(manifest.oauth.extraRefreshParameters == nil)
        #expect(manifest.rateLimits == [RateLimitRule(scope: .app, requests: 120, seconds: 60)])
        #expect(manifest.metrics.contains("blood_pressure_systolic") && manifest.metrics.contains("sleep_stage"))
    }

    // MARK: token requests

    /// Withings picks the OAuth action from the form body (API reference "Get your access token",
    /// "Refresh your access token"): both requests carry it there, with the client secret, and the URL
    /// has no query.
    @Test func tokenRequestsNameTheActionInTheBody() {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        let exchange = client.codeExchangeRequest(code: "auth-code", pkce: nil)
        let refresh = client.refreshRequest(refreshToken: Secret("refresh-1"))
        for request in [exchange, refresh] {
            #expect(request.method == .post)
            #expect(request.url.path == "/v2/oauth2" && request.url.query == nil)
            #expect(request.header("Content-Type") == "application/x-www-form-urlencoded")
            #expect(request.header("Authorization") == nil)
            let form = Self.form(request)
            #expect(form["action"] == "requesttoken")
            #expect(form["client_id"] == "test-client" && form["client_secret"] == "test-secret")
        }
        #expect(
            Self.form(exchange) == [
                "action": "requesttoken", "grant_type": "authorization_code", "code": "auth-code",
                "redirect_uri": "https://pulsegate.test/v1/oauth/withings/callback", "client_id": "test-client",
                "client_secret": "test-secret",
            ])
        #expect(
            Self.form(refresh) == [
                "action": "requesttoken", "grant_type": "refresh_token", "refresh_token": "refresh-1",
                "client_id": "test-client", "client_secret": "test-secret",
            ])
    }

    // MARK: token answers (vendor-vectors A12)

    static let a12 =
        #"{"status":0,"body":{"userid":"12345678","access_token":"a075f8c14fb8df40b08ebc8508533dc332a41910","refresh_token":"f631236f02b991810feb774765b6ae8e6c6839ca","expires_in":10800,"scope":"user.activity,user.sleepevents,user.metrics","csrf_token":"PACnnxwHTaBQOGIVtXmzmBqVyuTcizMe","token_type":"Bearer"}}"#

    func read(_ response: InboundResponse, previous: Secret? = nil) throws(OAuthError) -> TokenGrant {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        return try adapter.readTokenResponse(
            response, client: client, now: Self.at("2026-11-20T12:00:00Z"), previousRefreshToken: previous)
    }

    func outcome(_ response: InboundResponse) -> OAuthError? {
        do {
            _ = try read(response)
            return nil
        } catch {
            return error
        }
    }

    @Test func tokenEnvelopeIsUnwrapped() throws {
        let grant = try read(.json(200, Self.a12), previous: Secret("old-refresh"))
        #expect(grant.accessToken == Secret("a075f8c14fb8df40b08ebc8508533dc332a41910"))
        // Rotation: the answer's refresh token replaces the one the refresh was made with.
        #expect(grant.refreshToken == Secret("f631236f02b991810feb774765b6ae8e6c6839ca"))
        #expect(grant.expiresAt == Self.at("2026-11-20T15:00:00Z"))
        #expect(grant.scopes == ["user.activity", "user.sleepevents", "user.metrics"])
        #expect(grant.raw["userid"]?.idString == "12345678")
    }

    @Test func tokenRefusalsAreSortedByWhatTheyName() {
        func kind(_ error: OAuthError?) -> String {
            switch error {
            case .grantRejected: "grant"
            case .clientRejected: "client"
            case .transient: "transient"
            case nil: "none"
            }
        }
        // HTTP 200 with a non-zero status is never a success.
        #expect(kind(outcome(Self.envelope(503, "Invalid Params: invalid refresh_token"))) == "grant")
        #expect(kind(outcome(Self.envelope(503, "Invalid Params: invalid code"))) == "grant")
        #expect(kind(outcome(Self.envelope(503, "invalid_client: The client credentials are invalid"))) == "client")
        #expect(kind(outcome(Self.envelope(503, "Invalid_request: The client ID was not specified"))) == "client")
        // A12's error form: "authentication failed" at the token endpoint can only be our client.
        #expect(
            kind(
                outcome(
                    Self.envelope(401, "XRequestID: Not provided invalid_token: The access token provided is invalid")
                )) == "client")
        #expect(kind(outcome(Self.envelope(2554, "Not implemented"))) == "client")
        // Our bug or something odd: retried, never the user's fault.
        #expect(kind(outcome(Self.envelope(503, "Invalid Params: missing refresh_token"))) == "transient")
        #expect(kind(outcome(Self.envelope(503, "Invalid Params"))) == "transient")
        #expect(kind(outcome(Self.envelope(522, "Timeout"))) == "transient")
        #expect(kind(outcome(Self.envelope(2555, "An unknown error occurred"))) == "client")
        #expect(kind(outcome(.json(500, "<html>down</html>"))) == "transient")
        #expect(kind(outcome(.json(200, "<html>maintenance</html>"))) == "transient")
        #expect(kind(outcome(.json(200, #"{"status":0,"body":{}}"#))) == "transient")
        guard case .transient(_, let wait) = outcome(Self.envelope(601, "Too many request")) else {
            Issue.record("601 not transient")
            return
        }
        #expect(wait == .seconds(60))
    }

    // MARK: signed requests (vendor-vectors B7)

    @Test func signatureVector() {
        let signed = ["timestamp": "1700000000", "action": "getnonce", "client_id": "my-client-id"]
        #expect(
            WithingsClient.signature(secret: Secret("my-client-secret"), signed: signed)
                == "9e39001b55385a74659709a410b02b01eaf59631da91da750138b5645ca3b5ee")
        #expect(
            WithingsClient.signature(secret: Secret("my-client-secre"), signed: signed)
                != "9e39001b55385a74659709a410b02b01eaf59631da91da750138b5645ca3b5ee")
    }

    @Test func revokeSignsANonceThenTheRevocation() async throws {
        let transport = ScriptedTransport { request in
            let form = Self.form(request)
            #expect(request.method == .post)
            #expect(request.header("Authorization") == nil)
            switch (request.url.path, form["action"]) {
            case ("/v2/signature", "getnonce"):
                #expect(form["client_id"] == "test-client")
                #expect(form["timestamp"] == "1700000000")
                #expect(form["signature"] == "ee278c4f7a9f5a5a8101e1a45c51fefcd85d5c72c4c236fa5752cc2b95a1e07e")
                return .json(200, #"{"status":0,"body":{"nonce":"nonce-4711"}}"#)
            case ("/v2/oauth2", "revoke"):
                #expect(form["nonce"] == "nonce-4711")
                #expect(form["userid"] == "12345678")
                #expect(form["signature"] == "a7bc3daa68b53b0b947e9d64a6c5ad09ce461b8b86e77434be241a5a611516ae")
                return .json(200, #"{"status":0,"body":{}}"#)
            default:
                Issue.record("unexpected \(request.url.path) \(form)")
                return .json(500, "{}")
            }
        }
        let context = makeContext(
            adapter, transport: transport, now: Timestamp(millisecondsSinceEpoch: 1_700_000_000_000))
        try await adapter.revoke(connection: connection(vendorUserID: "12345678"), context: context)
        #expect(transport.sent.withLock { $0.count } == 2)
    }

    @Test func refusedRevokeFallsBackToTheSubscriptions() async throws {
        let transport = ScriptedTransport { request in
            let form = Self.form(request)
            switch (request.url.path, form["action"]) {
            case ("/v2/signature", _): return .json(200, #"{"status":0,"body":{"nonce":"n-1"}}"#)
            case ("/v2/oauth2", _): return Self.envelope(2553, "Unauthorized")
            case ("/notify", "revoke"):
                #expect(request.header("Authorization") == "Bearer access-1")
                #expect(form["callbackurl"] == "https://pulsegate.test/v1/webhooks/withings")
                return form["appli"] == "44" ? Self.envelope(286, "No such subscription") : .json(200, #"{"status":0}"#)
            default: return .json(500, "{}")
            }
        }
        try await adapter.revoke(connection: connection(), context: makeContext(adapter, transport: transport))
        let revoked = transport.sent.withLock { $0 }.filter { $0.url.path == "/notify" }.compactMap {
            Self.form($0)["appli"]
        }
        #expect(revoked == ["1", "4", "16", "44", "46"])
        // Without a userid nothing can be revoked at Withings.
        await #expect(throws: VendorError.self) {
            try await adapter.revoke(
                connection: ConnectionContext(
                    id: "c", subject: "s", vendorUserID: nil, scopes: [], accessToken: Secret("a")),
                context: makeContext(adapter, transport: transport))
        }
    }

    // MARK: handshake and authenticity

    @Test func callbackChecksAreAnsweredWithoutStoring() async {
        let context = makeContext(adapter)
        #expect(await adapter.handshake(webhook("", method: "HEAD"), context: context)?.status == 200)
        #expect(await adapter.handshake(webhook("", method: "GET"), context: context)?.status == 200)
        #expect(await adapter.handshake(webhook(""), context: context)?.status == 200)
        #expect(await adapter.handshake(webhook(Self.a13), context: context) == nil)
    }

    static let a13 = "userid=12345&appli=1&startdate=1530576000&enddate=1530698753"

    static func label(_ verdict: WebhookVerdict) -> String? {
        if case .rejected(_, let label) = verdict { return label }
        return nil
    }

    @Test func callbackTokenIsRequiredWhenConfigured() async {
        let open = makeContext(adapter)
        // No token configured: Withings signs nothing, so there is nothing to check.
        #expect(await adapter.verify(webhook(Self.a13), context: open) == .authentic)
        let context = makeContext(adapter, secrets: ["callback_token": Secret("cb-7f3a9e")])
        #expect(await adapter.verify(webhook(Self.a13, query: ["token": "cb-7f3a9e"]), context: context) == .authentic)
        // Echoed into the body, as Withings' own example shows callback parameters.
        #expect(await adapter.verify(webhook(Self.a13 + "&token=cb-7f3a9e"), context: context) == .authentic)
        #expect(Self.label(await adapter.verify(webhook(Self.a13), context: context)) == "missing_token")
        #expect(
            Self.label(await adapter.verify(webhook(Self.a13, query: ["token": "cb-7f3a9f"]), context: context))
                == "bad_token")
        #expect(
            Self.label(await adapter.verify(webhook(Self.a13 + "&token=", query: [:]), context: context))
                == "bad_token")
    }

    // MARK: notifications (vendor-vectors A13)

    static func tasks(_ notifications: [VendorNotification]) -> [FetchTask] {
        notifications.compactMap {
            if case .fetch(let task) = $0.action { return task }
            return nil
        }
    }

    @Test func measureNotificationsFetchTheirWindow() throws {
        let notifications = try adapter.notifications(in: Array(Self.a13.utf8))
        #expect(notifications.map(\.vendorUserID) == ["12345"])
        #expect(Self.tasks(notifications) == [WithingsAdapter.measuresTask(start: 1_530_576_000, end: 1_530_698_753)])
        // Blood pressure (4) and temperature (2) share the measures service, and one window is one job.
        let bp = try adapter.notifications(
            in: Array(Self.a13.replacingOccurrences(of: "appli=1", with: "appli=4").utf8))
        #expect(Self.tasks(bp).map(\.key) == ["measures:1530576000-1530698753"])
        // Ids outgrow 32 bits and are kept as sent; unknown fields (a custom callback parameter) are ignored.
        let big = try adapter.notifications(
            in: Array("foo=bar&userid=98765432109&appli=2&startdate=10&enddate=20&token=x".utf8))
        #expect(big.first?.vendorUserID == "98765432109")
    }

    @Test func activityAndSleepNotificationsFetchADayAtATime() throws {
        // Activity comes with the user's local day only: widened to every time zone, a day per task.
        let activity = try adapter.notifications(in: Array("userid=12345&appli=16&date=2026-11-19".utf8))
        let day = Self.at("2026-11-19T00:00:00Z").millisecondsSinceEpoch / 1000
        #expect(
            Self.tasks(activity) == [
                WithingsAdapter.intradayTask(start: day - 14 * 3600, end: day + 10 * 3600),
                WithingsAdapter.intradayTask(start: day + 10 * 3600, end: day + 34 * 3600),
                WithingsAdapter.intradayTask(start: day + 34 * 3600, end: day + 36 * 3600),
            ])
        let sleep = try adapter.notifications(
            in: Array("userid=133337&startdate=1682809920&enddate=1682837220&appli=44".utf8))
        #expect(Self.tasks(sleep) == [WithingsAdapter.sleepTask(start: 1_682_809_920, end: 1_682_837_220)])
        // A window of 40 days is cut to its latest 31, a day per task.
        let long = try adapter.notifications(in: Array("userid=1&appli=44&startdate=0&enddate=\(40 * 86_400)".utf8))
        let tasks = Self.tasks(long)
        #expect(tasks.count == 31)
        #expect(tasks.first?.parameters["startdate"] == .int(9 * 86_400))
        #expect(tasks.last?.parameters["enddate"] == .int(40 * 86_400))
    }

    @Test func userEventsEndTheConnection() throws {
        for action in ["unlink", "delete"] {
            let events = try adapter.notifications(in: Array("userid=12345&appli=46&action=\(action)".utf8))
            #expect(events == [VendorNotification(vendorUserID: "12345", action: .deauthorized)])
        }
        guard
            case .ignore = try adapter.notifications(in: Array("userid=12345&appli=46&action=update".utf8)).first?
                .action
        else { Issue.record("user update not ignored"); return }
        guard
            case .ignore = try adapter.notifications(in: Array("userid=12345&appli=50&date=2026-11-19".utf8)).first?
                .action
        else { Issue.record("bed-in not ignored"); return }
    }

    @Test func malformedNotificationsAreRefused() {
        for body in [
            "appli=1&startdate=1&enddate=2", "userid=abc&appli=1&startdate=1&enddate=2", "userid=12345&appli=x",
            "userid=12345", "userid=12345&appli=1&startdate=100", "userid=12345&appli=1&startdate=100&enddate=50",
            "userid=12345&appli=16&date=19.11.2026", "userid=12345&appli=44", "{\"userid\":12345,\"appli\":1}",
        ] {
            #expect(throws: VendorError.self, "\(body)") { try adapter.notifications(in: Array(body.utf8)) }
        }
        #expect(throws: VendorError.self) { try adapter.notifications(in: [0xFF, 0xFE, 0x00]) }
    }

    // MARK: fetch

    static let a14 =
        #"{"status":0,"body":{"updatetime":1690491663,"timezone":"Europe/Berlin","measuregrps":[{"grpid":4716596696,"attrib":0,"date":1690491576,"created":1690491663,"modified":1690491663,"category":1,"deviceid":"c405eb8e0e053f6601e151c7e43c04e29aad6956","hash_deviceid":"c405eb8e0e053f6601e151c7e43c04e29aad6956","measures":[{"value":89,"type":9,"unit":0,"algo":0,"fm":3},{"value":109,"type":10,"unit":0,"algo":0,"fm":3},{"value":88,"type":11,"unit":0,"algo":0,"fm":3}],"modelid":44,"model":"BPM Core","comment":null}],"more":1,"offset":1}}"#

    @Test func measuresAreFetchedAGroupPerRecordAndPaged() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.url.path == "/measure")
            #expect(request.header("Authorization") == "Bearer access-1")
            #expect(request.header("Content-Type") == "application/x-www-form-urlencoded")
            let form = Self.form(request)
            #expect(form["action"] == "getmeas")
            #expect(form["meastypes"] == "1,6,9,10,11,12,54,71,73,123")
            #expect(form["category"] == "1")
            #expect(form["startdate"] == "1530576000" && form["enddate"] == "1530698753")
            return .json(200, Self.a14)
        }
        let context = makeContext(adapter, transport: transport)
        let task = WithingsAdapter.measuresTask(start: 1_530_576_000, end: 1_530_698_753)
        let outcome = try await adapter.fetch(task, connection: connection(), context: context)
        #expect(outcome.records.map(\.key) == ["measuregrp:4716596696"])
        #expect(
            outcome.followUps == [WithingsAdapter.measuresTask(start: 1_530_576_000, end: 1_530_698_753, offset: 1)])
        let samples = try adapter.map(
            outcome.records[0], connection: connection(), now: Self.at("2026-11-20T12:00:00Z"))
        #expect(samples.map(\.metric) == [.bloodPressureDiastolic, .bloodPressureSystolic, .heartRate])
        #expect(samples.map(\.value.number) == [89, 109, 88])
        // Epoch seconds are UTC whatever the answer's "timezone" says.
        #expect(samples.allSatisfy { $0.start == Self.at("2023-07-27T20:59:36Z") })
        #expect(samples.allSatisfy { $0.source.recordID == "4716596696" && $0.source.vendor == "withings" })
        #expect(
            samples.allSatisfy { $0.source.device == SourceRef.Device(manufacturer: "Withings", model: "BPM Core") })
    }

    @Test func envelopeErrorsOfDataServicesAreSorted() async {
        func failure(_ response: InboundResponse) async -> String {
            let context = makeContext(adapter, transport: ScriptedTransport { _ in response })
            do {
                _ = try await adapter.fetch(
                    WithingsAdapter.measuresTask(start: 1, end: 2), connection: connection(), context: context)
                return "none"
            } catch {
                switch error {
                case .unauthorized: return "unauthorized"
                case .rateLimited(_, let wait): return "rate limited \(wait)"
                case .rejected: return "rejected"
                case .unavailable: return "unavailable"
                case .malformed: return "malformed"
                default: return "\(error)"
                }
            }
        }
        #expect(
            await failure(
                Self.envelope(401, "XRequestID: Not provided invalid_token: The access token provided is invalid"))
                == "unauthorized")
        #expect(await failure(Self.envelope(601, "Too many request")) == "rate limited 60.0 seconds")
        #expect(await failure(Self.envelope(503, "Invalid Params")) == "rejected")
        #expect(await failure(Self.envelope(2554, "Not implemented")) == "rejected")
        #expect(await failure(Self.envelope(522, "Timeout")) == "unavailable")
        #expect(await failure(Self.envelope(2556, "An error occurred")) == "unavailable")
        #expect(await failure(.json(200, "<html>maintenance</html>")) == "unavailable")
        #expect(await failure(.json(502, "bad gateway")) == "unavailable")
        #expect(await failure(.json(200, #"{"status":0,"body":{}}"#)) == "malformed")
    }

    @Test func intradayAndSleepAskForADayAndKeepItWhole() async throws {
        let transport = ScriptedTransport { request in
            let form = Self.form(request)
            #expect(form["startdate"] == "1795132800" && form["enddate"] == "1795219200")
            switch request.url.path {
            case "/v2/measure":
                #expect(form["action"] == "getintradayactivity")
                #expect(form["data_fields"] == WithingsAdapter.intradayFields)
                // Withings answers an empty series as an empty array.
                return .json(200, #"{"status":0,"body":{"series":[]}}"#)
            case "/v2/sleep":
                #expect(form["action"] == "get")
                #expect(form["data_fields"] == "hr,rr,rmssd")
                return .json(200, #"{"status":0,"body":{"series":[\#(Self.sleepSegments)],"model":16}}"#)
            default:
                return .json(500, "{}")
            }
        }
        let context = makeContext(adapter, transport: transport)
        let day: (Int64, Int64) = (1_795_132_800, 1_795_219_200)
        let intraday = try await adapter.fetch(
            WithingsAdapter.intradayTask(start: day.0, end: day.1), connection: connection(), context: context)
        #expect(intraday.records.isEmpty)
        let sleep = try await adapter.fetch(
            WithingsAdapter.sleepTask(start: day.0, end: day.1), connection: connection(), context: context)
        #expect(sleep.records.map(\.key) == ["sleep:1795132800-1795219200"])
    }

    @Test func subscriptionsAreMadeForWhatIsMissingAndGranted() async throws {
        let callback = "https://pulsegate.test/v1/webhooks/withings?token=cb%2B1"
        let transport = ScriptedTransport { request in
            #expect(request.url.path == "/notify")
            #expect(request.header("Authorization") == "Bearer access-1")
            let form = Self.form(request)
            if form["action"] == "list" {
                return .json(
                    200,
                    #"{"status":0,"body":{"profiles":[{"appli":1,"callbackurl":"\#(callback)","expires":2147483647,"comment":"pulsegate"},{"appli":4,"callbackurl":"https://old.example/hook","expires":2147483647}]}}"#
                )
            }
            #expect(form["action"] == "subscribe")
            #expect(form["callbackurl"] == callback)
            return form["appli"] == "4" ? Self.envelope(293, "Callback URL unreachable") : .json(200, #"{"status":0}"#)
        }
        let context = makeContext(adapter, transport: transport, secrets: ["callback_token": Secret("cb+1")])
        var metricsOnly = connection()
        metricsOnly.scopes = ["user.metrics", "user.info"]
        // One category failed: the others were still made, and the failure reaches the job.
        await #expect(throws: VendorError.self) {
            _ = try await adapter.fetch(WithingsAdapter.subscriptionsTask, connection: metricsOnly, context: context)
        }
        let subscribed = transport.sent.withLock { $0 }.map(Self.form).filter { $0["action"] == "subscribe" }
        #expect(subscribed.compactMap { $0["appli"] } == ["4", "46"])
    }

    // MARK: link

    @Test func linkTakesTheUserIDFromTheTokenAnswerAndSubscribes() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.header("Authorization") == "Bearer fresh-token")
            let form = Self.form(request)
            return form["action"] == "list"
                ? .json(200, #"{"status":0,"body":{"profiles":[]}}"#)
                : Self.envelope(2555, "An unknown error occurred")
        }
        let context = makeContext(adapter, transport: transport)
        let grant = TokenGrant(
            accessToken: Secret("fresh-token"), refreshToken: Secret("r"), expiresAt: nil,
            scopes: ["user.metrics", "user.activity", "user.info"],
            raw: try JSONValue.parse(Array(#"{"userid":363,"access_token":"x"}"#.utf8)))
        // Failed subscriptions do not fail the link (the reconcile makes them later).
        #expect(try await adapter.didLink(grant: grant, callback: [:], context: context) == "363")
        let subscribed = transport.sent.withLock { $0 }.map(Self.form).filter { $0["action"] == "subscribe" }
        #expect(subscribed.compactMap { $0["appli"] } == ["1", "4", "16", "44", "46"])
        let anonymous = TokenGrant(accessToken: Secret("t"), refreshToken: nil, expiresAt: nil, scopes: nil)
        await #expect(throws: VendorError.self) {
            _ = try await adapter.didLink(grant: anonymous, callback: [:], context: context)
        }
    }

    // MARK: mapping

    static func measureRecord(_ group: String) -> RawRecord {
        RawRecord(
            key: "measuregrp:1",
            body: Array(#"{"kind":"measuregrp","timezone":"America/New_York","group":\#(group)}"#.utf8))
    }

    @Test func measuresAreScaledByTheirDecimalExponent() throws {
        let group =
            #"{"grpid":9876543210123,"attrib":0,"date":1795150800,"category":1,"model":"Body+","measures":[{"value":72500,"type":1,"unit":-3},{"value":2245,"type":6,"unit":-2},{"value":36650,"type":71,"unit":-3},{"value":3312,"type":73,"unit":-2},{"value":97,"type":54,"unit":0},{"value":452,"type":123,"unit":-1},{"value":5021,"type":5,"unit":-2},{"value":15,"type":12,"unit":1}]}"#
        let samples = try adapter.map(
            Self.measureRecord(group), connection: connection(), now: Self.at("2026-11-20T12:00:00Z"))
        let values = Dictionary(samples.map { ($0.metric.name, $0.value.number!) }, uniquingKeysWith: { a, _ in a })
        // 72500 × 10⁻³ is exactly 72.5, not 72.50000000000001.
        #expect(values["body_weight"] == 72.5)
        #expect(values["body_fat"] == 22.45)
        #expect(values["body_temperature"] == 36.65)  // type 71; type 12 (150 °C) would be refused anyway
        #expect(values["skin_temperature"] == 33.12)
        #expect(values["spo2"] == 97)
        #expect(values["vo2max"] == 45.2)
        #expect(samples.count == 6)  // fat-free mass (5) has no metric
        #expect(
            samples.allSatisfy { $0.start == Self.at("2026-11-20T05:00:00Z") && $0.source.recordID == "9876543210123" })
        #expect(samples.first { $0.metric == .bodyFat }?.quality == .vendorComputed)
        #expect(samples.first { $0.metric == .bodyWeight }?.quality == [])
        #expect(WithingsAdapter.realValue(.object(["value": .int(20), "unit": .int(-1)])) == 2)
    }

    @Test func ambiguousGoalAndBrokenGroupsMapLessOrFail() throws {
        let now = Self.at("2026-11-20T12:00:00Z")
        func count(_ attrib: Int, _ category: Int) throws -> Int {
            let group =
                #"{"grpid":5,"attrib":\#(attrib),"date":1795150800,"category":\#(category),"measures":[{"value":80,"type":1,"unit":0}]}"#
            return try adapter.map(Self.measureRecord(group), connection: connection(), now: now).count
        }
        #expect(try count(0, 1) == 1)
        #expect(try count(2, 1) == 1)  // typed in by the user
        #expect(try count(1, 1) == 0)  // maybe another user of the scale
        #expect(try count(4, 1) == 0)  // entered at account creation
        #expect(try count(0, 2) == 0)  // a goal
        #expect(throws: VendorError.self) {
            try adapter.map(Self.measureRecord(#"{"grpid":5,"measures":[]}"#), connection: connection(), now: now)
        }
        #expect(throws: VendorError.self) {
            try adapter.map(RawRecord(key: "x", body: Array("{}".utf8)), connection: connection(), now: now)
        }
    }

    @Test func intradayEntriesBecomeInstantsAndIntervals() throws {
        let series = #"""
            {"1795154460":{"deviceid":"d1","model":"ScanWatch","model_id":93,"heart_rate":72,"steps":48,"distance":35.5,"calories":2.1,"duration":60},
             "1795154400":{"deviceid":"d1","model":"ScanWatch","model_id":93,"heart_rate":70,"steps":0,"duration":60,"spo2_auto":97.5},
             "1795154520":{"model":"iOS step tracker","steps":12},
             "1795154580":{"model":"ScanWatch","heart_rate":0,"rmssd":41.2,"rr":14}}
            """#
        let record = RawRecord(
            key: "intraday:1-2", body: Array(#"{"kind":"intraday","startdate":1,"enddate":2,"series":\#(series)}"#.utf8)
        )
        let samples = try adapter.map(record, connection: connection(), now: Self.at("2026-11-20T12:00:00Z"))
        let t0 = Self.at("2026-11-20T06:00:00Z")
        #expect(samples.filter { $0.metric == .heartRate }.map(\.value.number) == [70, 72])
        #expect(samples.filter { $0.metric == .heartRate }.map(\.start) == [t0, t0.adding(milliseconds: 60_000)])
        let steps = samples.filter { $0.metric == .stepCount }
        // Zero steps and steps without a duration are left out.
        #expect(steps.map(\.value.number) == [48])
        #expect(
            steps.first?.start == t0.adding(milliseconds: 60_000)
                && steps.first?.end == t0.adding(milliseconds: 120_000))
        #expect(samples.filter { $0.metric == .distance }.map(\.value.number) == [35.5])
        #expect(samples.first { $0.metric == .activeEnergy }?.quality == .vendorComputed)
        #expect(samples.filter { $0.metric == .spo2 }.map(\.value.number) == [97.5])
        #expect(samples.filter { $0.metric == .hrvRMSSD }.map(\.value.number) == [41.2])
        #expect(samples.filter { $0.metric == .respiratoryRate }.map(\.value.number) == [14])
        #expect(samples.allSatisfy { $0.source.recordID == nil && $0.source.device?.model == "ScanWatch" })
    }

    static let sleepSegments = #"""
        {"startdate":1795150800,"enddate":1795152600,"state":1,"model":"ScanWatch","model_id":93,"hr":{"1795150800":58,"1795151400":56},"rr":{"1795150800":13},"rmssd":{"1795151400":48}},
        {"startdate":1795152600,"enddate":1795153800,"state":2,"model":"ScanWatch","model_id":93,"hr":{"1795151400":56,"1795152600":52}},
        {"startdate":1795153800,"enddate":1795154400,"state":15,"model":"ScanWatch","model_id":93},
        {"startdate":1795146000,"enddate":1795150800,"state":4,"model":"ScanWatch","model_id":93}
        """#

    @Test func sleepSegmentsBecomeStagesAndReadings() throws {
        let record = RawRecord(
            key: "sleep:1-2",
            body: Array(#"{"kind":"sleep","startdate":1,"enddate":2,"series":[\#(Self.sleepSegments)]}"#.utf8))
        let samples = try adapter.map(record, connection: connection(), now: Self.at("2026-11-20T12:00:00Z"))
        let stages = samples.filter { $0.metric == .sleepStage }
        #expect(stages.map(\.value) == ["asleep", "light", "deep"].map { Sample.Value.category($0) })
        #expect(stages.map(\.start) == ["03:40", "05:00", "05:30"].map { Self.at("2026-11-20T\($0):00Z") })
        #expect(stages.map(\.end) == ["05:00", "05:30", "05:50"].map { Self.at("2026-11-20T\($0):00Z") })
        // A manual sleep is the user's statement, not a score.
        #expect(stages.map(\.quality) == [[], .vendorComputed, .vendorComputed])
        // The reading both segments list is one sample.
        #expect(samples.filter { $0.metric == .heartRate }.map(\.value.number) == [58, 56, 52])
        #expect(samples.filter { $0.metric == .respiratoryRate }.map(\.value.number) == [13])
        #expect(samples.filter { $0.metric == .hrvRMSSD }.map(\.value.number) == [48])
        #expect(Set(samples.map(\.id)).count == samples.count)
    }

    // MARK: backfill and reconcile

    @Test func backfillAndReconcileFollowTheGrantedScopes() {
        let from = Self.at("2026-11-17T12:00:00Z")
        let to = Self.at("2026-11-20T12:00:00Z")
        let tasks = adapter.backfillTasks(from: from, to: to, connection: connection())
        #expect(tasks.filter { $0.kind == "measures" }.count == 1)
        #expect(tasks.filter { $0.kind == "intraday" }.count == 3)
        #expect(tasks.filter { $0.kind == "sleep" }.count == 3)
        var metrics = connection()
        metrics.scopes = ["user.metrics"]
        #expect(adapter.backfillTasks(from: from, to: to, connection: metrics).map(\.kind) == ["measures"])
        let reconcile = adapter.reconcileTasks(since: Timestamp(millisecondsSinceEpoch: 0), connection: metrics)
        #expect(reconcile.first == WithingsAdapter.subscriptionsTask)
        // Edits of old measures are found by their update time; the reach is capped at 30 days.
        let since = reconcile.last?.parameters["lastupdate"]?.int ?? 0
        #expect(abs(since - (Timestamp.now.millisecondsSinceEpoch / 1000 - 30 * 86_400)) < 60)
    }

    // MARK: rate limits and payload URLs

    @Test func the601EnvelopePausesCalls() throws {
        let reader = try #require(adapter.rateLimitHeaders)
        let now = Self.at("2026-11-20T12:00:00Z")
        #expect(reader(Self.envelope(601, "Too many request"), now) == .seconds(60))
        #expect(reader(.json(200, Self.a14), now) == nil)
        #expect(reader(Self.envelope(401, "invalid_token"), now) == nil)
        #expect(reader(.json(429, "{}"), now) == nil)
    }

    @Test func payloadURLsStayOnWithingsHosts() throws {
        // Withings notifications carry no URLs; the guard still knows only Withings' API hosts.
        let context = makeContext(adapter)
        #expect(throws: Never.self) { try context.checkPayloadURL("https://wbsapi.withings.net/measure") }
        #expect(throws: VendorError.self) { try context.checkPayloadURL("https://wbsapi.withings.net.evil.example/x") }
        #expect(throws: VendorError.self) { try context.checkPayloadURL("http://wbsapi.withings.net/measure") }
    }
}

import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit
import PulseGateVendorSuunto
import Synchronization
import Testing

@Suite struct SuuntoAdapterTests {
    let adapter = try! SuuntoAdapter()
    /// After every fixture's data, so the schema's future-time check never interferes.
    let now = Timestamp(rfc3339: "2026-11-22T00:00:00Z")!
    static let secrets = ["notification_secret": Secret("test-secret"), "subscription_key": Secret("sub-key-1")]

    static func at(_ text: String) -> Timestamp { Timestamp(rfc3339: text)! }

    /// A JWT as Suunto issues it (the signature is not checked, so any bytes do).
    static func jwt(_ claims: String) -> String {
        func segment(_ text: String) -> String {
            Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        return segment(#"{"alg":"HS256","typ":"JWT"}"#) + "." + segment(claims) + ".c2lnbmF0dXJl"
    }

    static let accessToken = jwt(
        #"{"user":"suuntouser1","sub":"5f1e2d3c","exp":1795000000,"iat":1794913600,"jti":"c0ffee","authorities":["ROLE_USER"]}"#
    )

    func context(
        transport: ScriptedTransport = ScriptedTransport { _ in .json(500, "{}") }, secrets: [String: Secret]? = nil
    )
        -> VendorContext
    {
        makeContext(adapter, transport: transport, secrets: secrets ?? Self.secrets, now: now)
    }

    func user() -> ConnectionContext { connection(subject: "member-1", vendorUserID: "suuntouser1", token: "access-1") }

    func expectError(_ kind: String, _ body: () async throws(VendorError) -> Void) async {
        do {
            try await body()
            Issue.record("expected a \(kind) error")
        } catch {
            let label: String =
                switch error {
                case .unauthorized: "unauthorized"
                case .rateLimited: "rateLimited"
                case .unavailable: "unavailable"
                case .rejected: "rejected"
                case .malformed: "malformed"
                case .forbiddenURL: "forbiddenURL"
                case .grantRevoked: "grantRevoked"
                }
            #expect(label == kind, "\(error)")
        }
    }

    // MARK: manifest and OAuth

    @Test func manifestLoads() {
        #expect(adapter.manifest.id == "suunto")
        #expect(adapter.manifest.urls["authorize"] == "https://cloudapi-oauth.suunto.com/oauth/authorize")
        #expect(adapter.manifest.urls["token"] == "https://cloudapi-oauth.suunto.com/oauth/token")
        #expect(adapter.manifest.urls["api"] == "https://cloudapi.suunto.com")
        #expect(adapter.manifest.oauth.scopes.isEmpty)
        #expect(adapter.manifest.oauth.pkce == false)
        #expect(adapter.manifest.oauth.clientAuthentication == .basic)
        #expect(adapter.manifest.oauth.refreshTokens == .mayRotate)
        #expect(adapter.manifest.webhook.deadlineSeconds == 2)
        #expect(adapter.manifest.allowedHosts == ["cloudapi.suunto.com"])
        #expect(!adapter.manifest.rateLimits.isEmpty)
    }

    @Test func authorizeHasNoScopeAndTokenCallsUseBasicAuth() {
        let client = OAuthClient(settings: context().settings.oauthSettings(adapter.manifest))
        let authorize = client.authorizeURL(state: "s", pkce: nil).absoluteString
        #expect(authorize.hasPrefix("http://vendor.test/oauth/authorize?"))
        #expect(!authorize.contains("scope="))
        #expect(!authorize.contains("code_challenge"))
        let request = client.codeExchangeRequest(code: "c0de", pkce: nil)
        #expect(request.header("Authorization") == OAuthClient.basicAuthorization("test-client", Secret("test-secret")))
        #expect(!String(decoding: request.body ?? [], as: UTF8.self).contains("client_secret"))
    }

    @Test func tokenExpiryComesFromExpiresInElseFromTheJWT() throws {
        let client = OAuthClient(settings: context().settings.oauthSettings(adapter.manifest))
        let issued = Self.at("2026-11-20T00:00:00Z")
        let withoutExpiresIn = InboundResponse.json(
            200,
            #"{"access_token":"\#(Self.accessToken)","token_type":"bearer","refresh_token":"r-1","user":"suuntouser1"}"#
        )
        let grant = try adapter.readTokenResponse(
            withoutExpiresIn, client: client, now: issued, previousRefreshToken: nil)
        #expect(grant.expiresAt == Timestamp(millisecondsSinceEpoch: 1_795_000_000_000))
        #expect(grant.refreshToken == Secret("r-1"))
        let withExpiresIn = InboundResponse.json(
            200,
            #"{"access_token":"\#(Self.accessToken)","token_type":"bearer","refresh_token":"r-2","expires_in":86399}"#)
        let refreshed = try adapter.readTokenResponse(
            withExpiresIn, client: client, now: issued, previousRefreshToken: Secret("r-1"))
        #expect(refreshed.expiresAt == issued.adding(milliseconds: 86_399_000))
        #expect(refreshed.refreshToken == Secret("r-2"))
        let refused = InboundResponse.json(
            400, #"{"error":"invalid_grant","error_description":"Invalid refresh token"}"#)
        #expect(throws: OAuthError.self) {
            try adapter.readTokenResponse(refused, client: client, now: issued, previousRefreshToken: nil)
        }
    }

    @Test func theUsernameComesFromTheTokensUserClaimWithoutACall() async throws {
        let transport = ScriptedTransport { _ in .json(500, "{}") }
        let grant = TokenGrant(
            accessToken: Secret(Self.accessToken), refreshToken: Secret("r"), expiresAt: nil, scopes: nil,
            raw: .object(["user": .string("suuntouser1")]))
        #expect(
            try await adapter.didLink(grant: grant, callback: [:], context: context(transport: transport))
                == "suuntouser1")
        #expect(transport.sent.withLock { $0.isEmpty })
    }

    @Test func aTokenWithoutAUserClaimIsRefused() async {
        func grant(_ token: String, raw: JSONValue = .object([:])) -> TokenGrant {
            TokenGrant(accessToken: Secret(token), refreshToken: nil, expiresAt: nil, scopes: nil, raw: raw)
        }
        let refused = [
            grant("opaque-token-not-a-jwt"),
            grant(Self.jwt(#"{"sub":"5f1e2d3c","exp":1795000000}"#)),
            grant(Self.jwt(#"{"user":"","exp":1795000000}"#)),
            grant(Self.jwt(#"{"user":"two words","exp":1795000000}"#)),
            grant("a.%%%.c"),
            // The token response and the token disagree about the user.
            grant(Self.accessToken, raw: .object(["user": .string("someone-else")])),
        ]
        for g in refused {
            await expectError("malformed") { () async throws(VendorError) in
                _ = try await adapter.didLink(grant: g, callback: [:], context: context())
            }
        }
    }

    @Test func revokeCallsDeauthorizeWithTheUsersToken() async throws {
        let transport = ScriptedTransport { _ in InboundResponse(status: 200) }
        try await adapter.revoke(connection: user(), context: context(transport: transport))
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.method == .get)
        #expect(sent.url.absoluteString == "http://vendor.test/oauth/deauthorize?client_id=test-client")
        #expect(sent.header("Authorization") == "Bearer access-1")
        #expect(sent.header("Ocp-Apim-Subscription-Key") == nil)
        // Already dead or unknown: done.
        for status in [400, 401, 404] {
            try await adapter.revoke(
                connection: user(), context: context(transport: ScriptedTransport { _ in .json(status, "{}") }))
        }
        await expectError("unavailable") { () async throws(VendorError) in
            try await adapter.revoke(
                connection: user(), context: context(transport: ScriptedTransport { _ in .json(503, "{}") }))
        }
    }

    // MARK: signature (vendor-vectors B5)

    static let b5 =
        #"{"type":"WORKOUT_CREATED","username":"suuntouser1","workoutKey":"5e8f1b2c3d4e5f6a7b8c9d0e"}"#
    static let b5Signature = "968c007ff64902b313b10a42e8707ecc4ba02cd368e535ed9fbf9a4031551652"

    @Test func signatureVectorVerifies() async {
        let context = context()
        #expect(
            await adapter.verify(
                webhook(Self.b5, headers: [("X-HMAC-SHA256-Signature", Self.b5Signature)]), context: context)
                == .authentic)
        #expect(
            await adapter.verify(
                webhook(Self.b5, headers: [("x-hmac-sha256-signature", Self.b5Signature.uppercased())]),
                context: context)
                == .authentic)
    }

    @Test func forgedNotificationsAreRefused() async {
        let context = context()
        func label(_ request: WebhookRequest, _ context: VendorContext) async -> String? {
            if case .rejected(_, let label) = await adapter.verify(request, context: context) { return label }
            return nil
        }
        // The same JSON re-serialized with a space: other bytes, so the signature must fail.
        let spaced = Self.b5.replacingOccurrences(of: "\"username\":", with: "\"username\": ")
        #expect(
            await label(webhook(spaced, headers: [("X-HMAC-SHA256-Signature", Self.b5Signature)]), context)
                == "bad_signature")
        #expect(await label(webhook(Self.b5), context) == "missing_signature")
        #expect(await label(webhook(Self.b5, headers: [("X-HMAC-SHA256-Signature", "zz")]), context) == "bad_signature")
        let wrong = WebhookSignature.hmacSHA256(key: Array("other-secret".utf8), Array(Self.b5.utf8)).hexString
        #expect(
            await label(webhook(Self.b5, headers: [("X-HMAC-SHA256-Signature", wrong)]), context) == "bad_signature")
        // No secret configured: nothing can be verified, so everything is refused.
        let unconfigured = makeContext(adapter, secrets: [:], now: now)
        #expect(
            await label(webhook(Self.b5, headers: [("X-HMAC-SHA256-Signature", Self.b5Signature)]), unconfigured)
                == "no_key")
    }

    @Test func noTimestampIsSignedSoAReplayIsAbsorbedByTheBodyDigest() async {
        // Suunto signs the body only: a delivery replayed a day later still verifies (there is nothing to
        // be stale), and its dedupe key is the first delivery's, so the engine stores it once.
        let first = webhook(Self.b5, headers: [("X-HMAC-SHA256-Signature", Self.b5Signature)], at: now)
        let later = webhook(
            Self.b5, headers: [("X-HMAC-SHA256-Signature", Self.b5Signature)], at: now.adding(milliseconds: 86_400_000))
        #expect(await adapter.verify(later, context: context()) == .authentic)
        #expect(adapter.dedupeKey(first) == adapter.dedupeKey(later))
        #expect(await adapter.handshake(first, context: context()) == nil)
    }

    // MARK: notifications

    /// The webhook page's example, byte for byte as compact JSON.
    static let workoutCreated =
        #"{"type":"WORKOUT_CREATED","username":"johndoe123","workout":{"workoutKey":"67604889401b942184624cb8","activityId":3,"startTime":1702729200000,"totalTime":3600,"energyConsumption":500,"startPosition":{"x":24.97242731,"y":60.27185791},"stepCount":8500,"totalAscent":120.5,"totalDescent":110.3,"totalDistance":10000,"hrdata":{"workoutAvgHR":145,"workoutMaxHR":175},"avgSpeed":2.78,"maxSpeed":6,"timeOffsetInMinutes":120},"gear":{"manufacturer":"Suunto","name":"Suunto Vertical","productType":"SPORT_WATCH"}}"#

    static let activityPush =
        #"{"type":"SUUNTO_247_ACTIVITY_CREATED","username":"johndoe123","samples":[{"timestamp":"2026-11-19T08:00:00.000+03:00","entryData":{"HR":58,"HRExt":{"Min":55,"Max":63},"StepCount":120,"EnergyConsumption":41840,"SpO2":0.97,"HRV":42}},{"timestamp":"2026-11-19T08:10:00.000+0300","entryData":{"HR":61,"StepCount":300,"HRV":0,"Altitude":152.5}},{"timestamp":"2026-11-19T08:20:00.000","entryData":{"HR":99}}]}"#

    static let sleepPush =
        #"{"type":"SUUNTO_247_SLEEP_CREATED","username":"johndoe123","samples":[{"timestamp":"2026-11-19T07:02:00.000+02:00","entryData":{"SleepId":1700000001,"BedtimeStart":"2026-11-18T23:10:00.000+02:00","BedtimeEnd":"2026-11-19T07:02:00.000+02:00","Duration":28320,"DeepSleepDuration":5400,"LightSleepDuration":15000,"REMSleepDuration":6000,"SleepQualityScore":81,"HRAvg":54,"HRMin":47,"AvgHRV":58,"MaxSpo2":0.98,"IsNap":false}},{"timestamp":"2026-11-19T14:40:00.000+02:00","entryData":{"BedtimeStart":"2026-11-19T14:10:00.000+02:00","BedtimeEnd":"2026-11-19T14:40:00.000+02:00","Duration":1800,"HRMin":60,"IsNap":true}}]}"#

    @Test func workoutNotificationsBecomeFitFetches() throws {
        #expect(
            try adapter.notifications(in: Array(Self.workoutCreated.utf8))
                == [
                    VendorNotification(
                        vendorUserID: "johndoe123",
                        action: .fetch(
                            FetchTask(
                                kind: "workout", key: "workout:67604889401b942184624cb8",
                                parameters: .object(["key": .string("67604889401b942184624cb8")]))))
                ])
        #expect(
            try adapter.notifications(in: Array(Self.b5.utf8))
                == [
                    VendorNotification(
                        vendorUserID: "suuntouser1",
                        action: .fetch(SuuntoAdapter.workoutTask("5e8f1b2c3d4e5f6a7b8c9d0e")))
                ])
        // The legacy form-encoded workout notification.
        #expect(
            try adapter.notifications(in: Array("username=johndoe123&workoutid=67604889401b942184624cb8".utf8))
                == [
                    VendorNotification(
                        vendorUserID: "johndoe123",
                        action: .fetch(SuuntoAdapter.workoutTask("67604889401b942184624cb8")))
                ])
    }

    @Test func samplePushesBecomeRecordsAndTheRestIsIgnored() throws {
        let activity = try #require(try adapter.notifications(in: Array(Self.activityPush.utf8)).first)
        #expect(activity.vendorUserID == "johndoe123")
        guard case .records(let records) = activity.action else {
            Issue.record("24/7 activity not kept as a record: \(activity.action)")
            return
        }
        #expect(records.count == 1 && records[0].key.hasPrefix("activity247:"))
        #expect(records[0].body == Array(Self.activityPush.utf8))
        // The same push again has the same record key (a replay replaces, not adds).
        guard case .records(let again) = try adapter.notifications(in: Array(Self.activityPush.utf8))[0].action else {
            return
        }
        #expect(again[0].key == records[0].key)
        guard case .records(let sleep) = try adapter.notifications(in: Array(Self.sleepPush.utf8))[0].action else {
            Issue.record("24/7 sleep not kept as a record")
            return
        }
        #expect(sleep[0].key.hasPrefix("sleep247:"))
        for body in [
            #"{"type":"SUUNTO_247_RECOVERY_CREATED","username":"johndoe123","samples":[{"timestamp":"2026-11-19T08:00:00.000+03:00","entryData":{"Balance":0.8,"StressState":1}}]}"#,
            #"{"type":"ROUTE_CREATED","username":"johndoe123","route":{"id":"r-1"}}"#,
            #"{"type":"SUUNTO_247_ACTIVITY_CREATED","username":"johndoe123","samples":[]}"#,
            #"{"type":"SOMETHING_NEW","username":"johndoe123"}"#,
        ] {
            let n = try adapter.notifications(in: Array(body.utf8))
            guard case .ignore = n.first?.action else {
                Issue.record("not ignored: \(body)")
                continue
            }
            #expect(n.first?.vendorUserID == "johndoe123")
        }
    }

    @Test func malformedNotificationsAreClearErrors() {
        for body in [
            "<xml/>",
            "",
            #"{"type":"WORKOUT_CREATED","username":"johndoe123""#,
            #"{"type":"WORKOUT_CREATED","workout":{"workoutKey":"67604889401b942184624cb8"}}"#,
            #"{"type":"WORKOUT_CREATED","username":"johndoe123","workout":{}}"#,
            #"{"type":"WORKOUT_CREATED","username":"johndoe123","workout":{"workoutKey":"../../v3/users"}}"#,
            #"{"username":"johndoe123"}"#,
            #"{"type":"SUUNTO_247_SLEEP_CREATED","username":"johndoe123"}"#,
            #"{"type":"SUUNTO_247_SLEEP_CREATED","username":"johndoe123","samples":{"a":1}}"#,
            #"{"type":"ROUTE_CREATED","username":""}"#,
        ] {
            do {
                let n = try adapter.notifications(in: Array(body.utf8))
                Issue.record("accepted \(body): \(n)")
            } catch {
                guard case .malformed(let why) = error else {
                    Issue.record("\(body): \(error)")
                    continue
                }
                #expect(!why.isEmpty)
            }
        }
    }

    // MARK: fetch

    static let fitFixture: [UInt8] = {
        let url = Bundle.module.url(forResource: "Fixtures/garmin-fenix5-run-hrv", withExtension: "fit")!
        return Array(try! Data(contentsOf: url))
    }()

    @Test func aWorkoutIsFetchedAsFitWithTheSubscriptionKey() async throws {
        let transport = ScriptedTransport { _ in
            InboundResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: Self.fitFixture)
        }
        let outcome = try await adapter.fetch(
            SuuntoAdapter.workoutTask("67604889401b942184624cb8"), connection: user(),
            context: context(transport: transport))
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.method == .get)
        #expect(sent.url.absoluteString == "http://vendor.test/v3/workouts/67604889401b942184624cb8/fit")
        #expect(sent.header("Authorization") == "Bearer access-1")
        #expect(sent.header("Ocp-Apim-Subscription-Key") == "sub-key-1")
        #expect(sent.header("Accept") == "application/octet-stream")
        #expect(outcome.records.map(\.key) == ["workout:67604889401b942184624cb8"])
        #expect(outcome.records[0].body == Self.fitFixture)
    }

    @Test func workoutFetchFailuresAreSortedForTheEngine() async {
        let task = SuuntoAdapter.workoutTask("67604889401b942184624cb8")
        func fetching(_ answer: InboundResponse, secrets: [String: Secret]? = nil) async -> (
            () async throws(VendorError) -> Void
        ) {
            let ctx = context(transport: ScriptedTransport { _ in answer }, secrets: secrets)
            return { () async throws(VendorError) in _ = try await adapter.fetch(task, connection: user(), context: ctx)
            }
        }
        // Not (yet) a FIT file: fetched again later rather than kept as broken.
        await expectError("unavailable", await fetching(.json(200, #"{"error":null,"payload":null}"#)))
        await expectError(
            "rejected", await fetching(.json(404, #"{"error":{"code":"404","description":"not found"}}"#)))
        await expectError("unauthorized", await fetching(.json(401, #"{"error":"invalid_token"}"#)))
        // The gateway refusing our subscription key is our problem, never the user's grant.
        await expectError(
            "unavailable",
            await fetching(
                .json(
                    401,
                    #"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#
                )))
        await expectError(
            "rateLimited",
            await fetching(
                .json(
                    403,
                    #"{"statusCode":403,"message":"Out of call volume quota. Quota will be replenished in 00:12:00."}"#,
                    headers: [("Retry-After", "720")])))
        await expectError("unavailable", await fetching(.json(503, "{}")))
        // No subscription key configured: nothing is sent at all.
        let transport = ScriptedTransport { _ in .json(200, "{}") }
        let ctx = makeContext(adapter, transport: transport, secrets: ["notification_secret": Secret("x")], now: now)
        await expectError("unavailable") { () async throws(VendorError) in
            _ = try await adapter.fetch(task, connection: user(), context: ctx)
        }
        #expect(transport.sent.withLock { $0.isEmpty })
        await expectError("malformed") { () async throws(VendorError) in
            _ = try await adapter.fetch(
                FetchTask(kind: "workout", key: "workout:x", parameters: .object(["key": .string("../x")])),
                connection: user(), context: context())
        }
    }

    @Test func rateLimitAnswersAreHonoured() async {
        // Suunto documents no rate-limit headers; a 429 with Retry-After pauses for what it says.
        #expect(adapter.rateLimitHeaders == nil)
        let ctx = context(
            transport: ScriptedTransport { _ in
                .json(
                    429, #"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 30 seconds."}"#,
                    headers: [("Retry-After", "30")])
            })
        do {
            _ = try await adapter.fetch(SuuntoAdapter.workoutTask("abc"), connection: user(), context: ctx)
            Issue.record("429 not reported")
        } catch {
            guard case .rateLimited(_, let wait) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(wait == .seconds(30))
        }
    }

    @Test func theWorkoutListingQueuesEachWorkoutAndTheNextPage() async throws {
        let since = Self.at("2026-10-25T00:00:00Z").millisecondsSinceEpoch
        let until = Self.at("2026-11-22T00:00:00Z").millisecondsSinceEpoch
        let start = Self.at("2026-11-01T07:00:00Z").millisecondsSinceEpoch
        let items = (0..<100).map {
            #"{"workoutKey":"w\#($0)","activityId":3,"startTime":\#(start + Int64($0) * 60_000),"totalTime":1800}"#
        }
        let transport = ScriptedTransport { request in
            let query = FormEncoding.decode(request.url.query ?? "")
            #expect(request.url.path == "/v3/workouts")
            #expect(request.header("Ocp-Apim-Subscription-Key") == "sub-key-1")
            #expect(query["since"] == String(since) && query["until"] == String(until))
            #expect(query["limit"] == "100" && query["filter-by-modification-time"] == "false")
            if query["offset"] == "0" {
                return .json(200, #"{"error":null,"metadata":{},"payload":[\#(items.joined(separator: ","))]}"#)
            }
            return .json(
                200,
                #"{"error":null,"metadata":{},"payload":[{"workoutKey":"last","startTime":\#(start)},{"workoutKey":"old","startTime":\#(since - 1)},{"workoutKey":"../x","startTime":\#(start)}]}"#
            )
        }
        let ctx = context(transport: transport)
        let first = try await adapter.fetch(
            SuuntoAdapter.listingTask(since: since, until: until), connection: user(), context: ctx)
        #expect(first.records.isEmpty)
        #expect(first.followUps.count == 101)
        #expect(first.followUps.first == SuuntoAdapter.workoutTask("w0"))
        #expect(first.followUps.last == SuuntoAdapter.listingTask(since: since, until: until, offset: 100))
        let second = try await adapter.fetch(try #require(first.followUps.last), connection: user(), context: ctx)
        #expect(second.followUps == [SuuntoAdapter.workoutTask("last")])
        let failing = context(transport: ScriptedTransport { _ in .json(200, #"{"error":null,"metadata":{}}"#) })
        await expectError("malformed") { () async throws(VendorError) in
            _ = try await adapter.fetch(
                SuuntoAdapter.listingTask(since: since, until: nil), connection: user(), context: failing)
        }
    }

    @Test func samplesAreFetchedAWeekAtATime() async throws {
        let from = Self.at("2026-11-12T00:00:00Z").millisecondsSinceEpoch
        let to = Self.at("2026-11-19T00:00:00Z").millisecondsSinceEpoch
        let array = "[" + Self.activityPush.split(separator: "[", maxSplits: 1)[1]
        let body = String(array.dropLast())
        let transport = ScriptedTransport { request in
            #expect(request.url.path == "/247samples/activity")
            #expect(FormEncoding.decode(request.url.query ?? "") == ["from": String(from), "to": String(to)])
            return .json(200, body)
        }
        let outcome = try await adapter.fetch(
            SuuntoAdapter.samplesTask("activity", from: from, to: to), connection: user(),
            context: context(transport: transport))
        #expect(outcome.records.map(\.key) == ["activity247:\(from)-\(to)"])
        // The fetched array maps exactly as the pushed notification does.
        let pushed = RawRecord(key: "activity247:push", body: Array(Self.activityPush.utf8))
        #expect(
            try adapter.map(outcome.records[0], connection: user(), now: now)
                == adapter.map(pushed, connection: user(), now: now))
        for answer in [InboundResponse(status: 204), .json(404, "{}"), .json(200, " [ ] ")] {
            let empty = try await adapter.fetch(
                SuuntoAdapter.samplesTask("sleep", from: from, to: to), connection: user(),
                context: context(transport: ScriptedTransport { _ in answer }))
            #expect(empty.records.isEmpty)
        }
        await expectError("malformed") { () async throws(VendorError) in
            _ = try await adapter.fetch(
                SuuntoAdapter.samplesTask("sleep", from: from, to: to), connection: user(),
                context: context(transport: ScriptedTransport { _ in .json(200, #"{"samples":[]}"#) }))
        }
        await expectError("malformed") { () async throws(VendorError) in
            _ = try await adapter.fetch(
                SuuntoAdapter.samplesTask("sleep", from: from, to: from + 30 * 86_400_000), connection: user(),
                context: context())
        }
    }

    @Test func backfillAndReconcileTasks() {
        let from = Self.at("2026-10-25T00:00:00Z")
        let to = Self.at("2026-11-22T00:00:00Z")
        let tasks = adapter.backfillTasks(from: from, to: to, connection: user())
        #expect(
            tasks.first
                == SuuntoAdapter.listingTask(since: from.millisecondsSinceEpoch, until: to.millisecondsSinceEpoch))
        let samples = tasks.dropFirst()
        #expect(samples.count == 8)  // 28 days: four weeks of activity and of sleep
        #expect(samples.allSatisfy { $0.kind == "samples247" })
        let windows = samples.compactMap { t -> Int64? in
            guard let a = t.parameters["from"]?.int, let b = t.parameters["to"]?.int else { return nil }
            return b - a
        }
        #expect(windows.allSatisfy { $0 <= 7 * 86_400_000 })
        #expect(samples.last?.parameters["to"]?.int == to.millisecondsSinceEpoch)
        #expect(adapter.backfillTasks(from: to, to: from, connection: user()).isEmpty)
        let reconcile = adapter.reconcileTasks(
            since: Timestamp.now.adding(milliseconds: -90 * 86_400_000), connection: user())
        #expect(reconcile.first?.kind == "workouts" && reconcile.first?.parameters["until"] == nil)
        // 24/7 samples at most 28 days back, however long the connection was quiet.
        let earliest = reconcile.compactMap { $0.kind == "samples247" ? $0.parameters["from"]?.int : nil }.min() ?? 0
        #expect(Timestamp.now.millisecondsSinceEpoch - earliest <= 28 * 86_400_000 + 60_000)
    }

    @Test func payloadURLsOffTheAllowedHostsAreRefused() throws {
        // Suunto's notifications carry no URLs (only keys, checked before they reach a path); the guard
        // still knows Suunto's one API host and nothing else.
        let ctx = context()
        #expect(throws: VendorError.self) { try ctx.checkPayloadURL("https://evil.example/v3/workouts/x/fit") }
        #expect(throws: VendorError.self) { try ctx.checkPayloadURL("http://cloudapi.suunto.com/v3/workouts/x/fit") }
        _ = try ctx.checkPayloadURL("https://cloudapi.suunto.com/v3/workouts/x/fit")
    }

    // MARK: mapping

    @Test func activitySamplesMapToReadingsInUTC() throws {
        let record = RawRecord(key: "activity247:k", body: Array(Self.activityPush.utf8))
        let samples = try adapter.map(record, connection: user(), now: now)
        let got = samples.map { "\($0.metric.name) \($0.start) \($0.value.number ?? -1) \($0.metric.unit.code)" }
        #expect(
            got == [
                "heart_rate 2026-11-19T05:00:00.000Z 58.0 /min",
                "spo2 2026-11-19T05:00:00.000Z 97.0 %",
                "hrv_rmssd 2026-11-19T05:00:00.000Z 42.0 ms",
                "heart_rate 2026-11-19T05:10:00.000Z 61.0 /min",
                "altitude 2026-11-19T05:10:00.000Z 152.5 m",
            ])
        // No record id: the same reading pushed and fetched later gets the same id.
        #expect(
            samples.allSatisfy { $0.source.recordID == nil && $0.source.vendor == "suunto" && $0.source.kind == .cloud }
        )
        #expect(samples.allSatisfy { $0.subject == "member-1" && $0.end == nil })
        // Streamed in small batches, the same samples come out in the same order.
        var source = try adapter.samples(of: record, connection: user(), now: now)
        var streamed = [Sample]()
        while true {
            let batch = try source.next(max: 2)
            if batch.isEmpty { break }
            #expect(batch.count <= 2)
            streamed += batch
        }
        #expect(streamed == samples)
    }

    @Test func sleepMapsToTimeInBedAndTheNightsLowestHeartRate() throws {
        let samples = try adapter.map(
            RawRecord(key: "sleep247:k", body: Array(Self.sleepPush.utf8)), connection: user(), now: now)
        #expect(samples.count == 3)
        let bed = samples.filter { $0.metric == .sleepStage }
        #expect(bed.map(\.start) == [Self.at("2026-11-18T21:10:00Z"), Self.at("2026-11-19T12:10:00Z")])
        #expect(bed.map(\.end) == [Self.at("2026-11-19T05:02:00Z"), Self.at("2026-11-19T12:40:00Z")])
        #expect(bed.allSatisfy { $0.value == .category("in_bed") && $0.quality == .vendorComputed })
        let resting = samples.filter { $0.metric == .restingHeartRate }
        #expect(resting.map(\.start) == [Self.at("2026-11-19T05:02:00Z")])
        #expect(resting.map(\.value) == [.number(47)])
    }

    @Test func unreadableSampleRecordsAreMalformed() {
        for body in [
            #"{"type":"SUUNTO_247_ACTIVITY_CREATED","username":"u","samples":[{"timestamp":"2026-11-19T08:00:00","entryData":{"HR":60}}]}"#,
            #"{"type":"SUUNTO_247_ACTIVITY_CREATED","username":"u"}"#,
            #"{"type":"SUUNTO_247_ACTIVITY_CREATED","username":"u","samples":"none"}"#,
            #"[{"timestamp":"2026-11-19T08:00:00Z","entryData":{"HR":60}},"#,
            "",
        ] {
            #expect(throws: VendorError.self, "\(body)") {
                try adapter.map(RawRecord(key: "activity247:k", body: Array(body.utf8)), connection: user(), now: now)
            }
        }
        #expect(throws: VendorError.self) {
            try adapter.map(RawRecord(key: "route:1", body: []), connection: user(), now: now)
        }
    }

    @Test func aWorkoutFitFileStreamsThroughTheDecoder() throws {
        let record = RawRecord(key: "workout:67604889401b942184624cb8", body: Self.fitFixture)
        let samples = try adapter.map(record, connection: user(), now: now)
        let heartRate = samples.filter { $0.metric == .heartRate }.sorted { $0.start < $1.start }
        // garmin-fenix5-run-hrv.fit: 21 records from 2017-06-11T14:34:09Z (61 bpm) to 14:35:06Z (112 bpm).
        #expect(heartRate.first?.start == Self.at("2017-06-11T14:34:09Z"))
        #expect(heartRate.first?.value == .number(61))
        #expect(heartRate.last?.start == Self.at("2017-06-11T14:35:06Z"))
        #expect(heartRate.last?.value == .number(112))
        #expect(
            samples.allSatisfy {
                $0.source.recordID == "67604889401b942184624cb8" && $0.source.vendor == "suunto"
                    && $0.subject == "member-1"
            })
        var source = try adapter.samples(of: record, connection: user(), now: now)
        #expect(try source.all(batch: 7) == samples)
    }

    @Test func aBrokenFitFileIsMalformedWithReasonAndOffset() throws {
        let truncated = RawRecord(key: "workout:abc", body: Array(Self.fitFixture.prefix(2000)))
        do {
            _ = try adapter.map(truncated, connection: user(), now: now)
            Issue.record("a truncated FIT file was accepted")
        } catch {
            guard case .malformed(let why) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(why.hasPrefix("workout abc: FIT file refused: "))
            #expect(why.contains(" at byte "))
        }
    }
}

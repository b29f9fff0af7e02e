import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateTestSupport
import PulseGateVendorGarmin
import PulseGateVendorKit
import Synchronization
import Testing

@Suite struct GarminAdapterTests {
    let adapter = try! GarminAdapter()

    static let user = "7f3b2c1e-9d4a-4e5b-8c6f-0a1b2c3d4e5f"
    static let clientHeader = [(name: "garmin-client-id", value: "test-client")]
    /// 2026-11-20T06:00:00Z.
    static let t0: Int64 = 1_795_154_400
    static let now = Timestamp(millisecondsSinceEpoch: (t0 + 30 * 86_400) * 1000)

    static func at(_ seconds: Int64) -> Timestamp { Timestamp(millisecondsSinceEpoch: seconds * 1000) }

    func garminConnection(token: String = "access-1") -> ConnectionContext {
        connection(subject: "member-1", vendorUserID: Self.user, token: token)
    }

    static func label(_ verdict: WebhookVerdict) -> String? {
        if case .rejected(_, let label) = verdict { return label }
        return nil
    }

    // MARK: manifest and OAuth

    @Test func manifestLoads() {
        let m = adapter.manifest
        #expect(m.id == "garmin")
        #expect(m.oauth.pkce)
        #expect(m.oauth.scopes.isEmpty)
        #expect(m.oauth.clientAuthentication == .body)
        #expect(m.oauth.refreshTokens == .mayRotate)
        #expect(m.urls["authorize"] == "https://connect.garmin.com/oauth2Confirm")
        #expect(m.urls["token"] == "https://diauth.garmin.com/di-oauth2-service/oauth/token")
        #expect(m.urls["api"] == "https://apis.garmin.com/wellness-api/rest")
        #expect(m.webhook.deadlineSeconds == 30)
        // A 10-hour activity at 1 s with every field is ~13 MB (the emulator's measures 362 B a sample).
        #expect(m.webhook.maxBodyBytes >= 2 * 36_000 * 362)
        #expect(m.allowedHosts == ["apis.garmin.com"])
        #expect(m.metrics.contains("ambient_temperature") && m.metrics.contains("hrv_rmssd"))
    }

    /// Vector A1 (RFC 7636 appendix B): the authorize URL carries the S256 challenge and no scope.
    @Test func authorizeURLHasPKCEAndNoScope() throws {
        let context = makeContext(adapter)
        let client = OAuthClient(settings: context.settings.oauthSettings(adapter.manifest))
        let pkce = PKCE(verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        #expect(pkce.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        let url = client.authorizeURL(state: "st-1", pkce: pkce)
        let items = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems)
        let query = Dictionary(uniqueKeysWithValues: items.map { ($0.name, $0.value ?? "") })
        #expect(query["code_challenge"] == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(query["code_challenge_method"] == "S256")
        #expect(query["response_type"] == "code" && query["client_id"] == "test-client")
        #expect(query["scope"] == nil)
        let exchange = client.codeExchangeRequest(code: "c0de", pkce: pkce)
        let form = FormEncoding.decode(String(decoding: exchange.body ?? [], as: UTF8.self))
        #expect(form["code_verifier"] == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        #expect(form["client_id"] == "test-client" && form["client_secret"] == "test-secret")
        #expect(exchange.header("Authorization") == nil)
    }

    @Test func tokenAnswers() throws {
        let context = makeContext(adapter)
        let client = OAuthClient(settings: context.settings.oauthSettings(adapter.manifest))
        let now = Self.now
        let grant = try adapter.readTokenResponse(
            .json(
                200,
                #"{"access_token":"eyJhbGciOi","token_type":"bearer","refresh_token":"eyJyZWZyZXNo","expires_in":86399,"scope":"","jti":"a1b2","refresh_token_expires_in":7775999}"#
            ), client: client, now: now, previousRefreshToken: nil)
        #expect(grant.accessToken.text == "eyJhbGciOi")
        #expect(grant.refreshToken?.text == "eyJyZWZyZXNo")
        #expect(grant.expiresAt == now.adding(milliseconds: 86_399_000))
        // A refresh without a new refresh token keeps the one we have.
        let kept = try adapter.readTokenResponse(
            .json(200, #"{"access_token":"new","expires_in":3600}"#), client: client, now: now,
            previousRefreshToken: Secret("old-refresh"))
        #expect(kept.refreshToken?.text == "old-refresh")
        #expect(throws: OAuthError.self) {
            try adapter.readTokenResponse(
                .json(400, #"{"error":"invalid_grant","error_description":"refresh token expired"}"#), client: client,
                now: now, previousRefreshToken: nil)
        }
        do {
            _ = try adapter.readTokenResponse(
                .json(400, #"{"error":"invalid_grant"}"#), client: client, now: now, previousRefreshToken: nil)
        } catch {
            guard case .grantRejected = error else { Issue.record("invalid_grant is \(error)"); return }
        }
        do {
            _ = try adapter.readTokenResponse(.json(503, "{}"), client: client, now: now, previousRefreshToken: nil)
        } catch {
            guard case .transient = error else { Issue.record("503 is \(error)"); return }
        }
    }

    static func linkTransport(permissions: String = #"["ACTIVITY_EXPORT","HEALTH_EXPORT"]"#, status: Int = 200)
        -> ScriptedTransport
    {
        ScriptedTransport { request in
            #expect(request.header("Authorization") == "Bearer link-token")
            switch request.url.path {
            case "/wellness-api/rest/user/id": return .json(200, #"{"userId":"\#(user)"}"#)
            case "/wellness-api/rest/user/permissions": return .json(status, #"{"permissions":\#(permissions)}"#)
            default: return .json(404, #"{"errorMessage":"Not Found"}"#)
            }
        }
    }

    func link(_ transport: ScriptedTransport, state: MemoryVendorState = MemoryVendorState()) async throws(VendorError)
        -> String
    {
        let grant = TokenGrant(
            accessToken: Secret("link-token"), refreshToken: nil, expiresAt: nil, scopes: nil, raw: .null)
        return try await adapter.didLink(
            grant: grant, callback: [:], context: makeContext(adapter, transport: transport, state: state))
    }

    @Test func linkReadsUserIDAndKeepsPermissions() async throws {
        let state = MemoryVendorState()
        let transport = Self.linkTransport(
            permissions: #"["ACTIVITY_EXPORT","HEALTH_EXPORT","HISTORICAL_DATA_EXPORT"]"#)
        #expect(try await link(transport, state: state) == Self.user)
        let kept = try await state.value("permissions:\(Self.user)")
        #expect(
            kept?["permissions"]
                == .array([.string("ACTIVITY_EXPORT"), .string("HEALTH_EXPORT"), .string("HISTORICAL_DATA_EXPORT")]))
        #expect(
            transport.sent.withLock { $0.map(\.url.path) } == [
                "/wellness-api/rest/user/id", "/wellness-api/rest/user/permissions",
            ])
    }

    @Test func linkWithoutDataPermissionsIsRefusedButAFailedReadIsNot() async throws {
        do {
            _ = try await link(Self.linkTransport(permissions: #"["WORKOUT_IMPORT"]"#))
            Issue.record("a link sharing no data was accepted")
        } catch {
            guard case .rejected(let why) = error else { Issue.record("\(error)"); return }
            #expect(why.contains("unticked"))
        }
        #expect(try await link(Self.linkTransport(status: 503)) == Self.user)
        let noID = ScriptedTransport { _ in .json(200, #"{"id":"x"}"#) }
        await #expect(throws: VendorError.self) { try await link(noID) }
    }

    @Test func revokeDeregistersTheUser() async throws {
        let state = MemoryVendorState()
        try await state.setValue("permissions:\(Self.user)", .object(["permissions": .array([])]))
        let transport = ScriptedTransport { _ in InboundResponse(status: 204) }
        try await adapter.revoke(
            connection: garminConnection(), context: makeContext(adapter, transport: transport, state: state))
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.method == .delete && sent.url.path == "/wellness-api/rest/user/registration")
        #expect(sent.header("Authorization") == "Bearer access-1")
        #expect(try await state.value("permissions:\(Self.user)") == nil)
        // Already gone at Garmin: fine. Garmin down: the engine retries.
        try await adapter.revoke(
            connection: garminConnection(),
            context: makeContext(adapter, transport: ScriptedTransport { _ in .json(404, "{}") }))
        await #expect(throws: VendorError.self) {
            try await adapter.revoke(
                connection: garminConnection(),
                context: makeContext(adapter, transport: ScriptedTransport { _ in .json(503, "{}") }))
        }
    }

    // MARK: verification (no signature: the garmin-client-id header)

    @Test func clientIDHeaderMustMatch() async {
        let context = makeContext(adapter)
        let body = #"{"dailies":[{"userId":"u","summaryId":"x"}]}"#
        #expect(await adapter.verify(webhook(body, headers: Self.clientHeader), context: context) == .authentic)
        #expect(
            await adapter.verify(webhook(body, headers: [("Garmin-Client-Id", "test-client")]), context: context)
                == .authentic)
        #expect(Self.label(await adapter.verify(webhook(body), context: context)) == "missing_client_id")
        for wrong in ["test-clienT", "test-client ", "test-clien", "", "other"] {
            #expect(
                Self.label(
                    await adapter.verify(webhook(body, headers: [("garmin-client-id", wrong)]), context: context))
                    == "bad_client_id", "\(wrong)")
        }
        // No handshake exists: every request goes to verification.
        #expect(await adapter.handshake(webhook(body, method: "GET"), context: context) == nil)
    }

    @Test func configuredURLKeyIsRequiredToo() async {
        let context = makeContext(adapter, secrets: ["url_key": Secret("k3y-only-garmin-knows")])
        let body = #"{"epochs":[]}"#
        #expect(
            await adapter.verify(
                webhook(body, headers: Self.clientHeader, query: ["key": "k3y-only-garmin-knows"]), context: context)
                == .authentic)
        #expect(
            Self.label(await adapter.verify(webhook(body, headers: Self.clientHeader), context: context))
                == "bad_url_key")
        #expect(
            Self.label(
                await adapter.verify(
                    webhook(body, headers: Self.clientHeader, query: ["key": "k3y-only-garmin-know"]), context: context)
            )
                == "bad_url_key")
        #expect(
            Self.label(await adapter.verify(webhook(body, query: ["key": "k3y-only-garmin-knows"]), context: context))
                == "missing_client_id")
    }

    // MARK: notifications

    static let dailyJSON =
        #"{"summaryId":"x3b5-6789","calendarDate":"2026-11-20","startTimeInSeconds":1795154400,"startTimeOffsetInSeconds":3600,"durationInSeconds":86400,"steps":9120,"restingHeartRateInBeatsPerMinute":52,"timeOffsetHeartRateSamples":{"15":61,"0":60,"30":63}}"#
    static let detailsJSON =
        #"{"summaryId":"21000000001-detail","activityId":21000000001,"summary":{"activityId":21000000001,"durationInSeconds":3,"startTimeInSeconds":1795154400,"activityType":"RUNNING","deviceName":"forerunner965"},"samples":[{"startTimeInSeconds":1795154400,"heartRate":120,"speedMetersPerSecond":2.5,"stepsPerMinute":160.0,"elevationInMeters":410.5,"airTemperatureCelcius":18.0,"latitudeInDegree":47.3769,"longitudeInDegree":8.5417,"totalDistanceInMeters":0.0,"powerInWatts":250},{"startTimeInSeconds":1795154401,"heartRate":121,"speedMetersPerSecond":2.6,"stepsPerMinute":161.0,"totalDistanceInMeters":2.6},{"startTimeInSeconds":1795154402,"heartRate":122,"totalDistanceInMeters":5.3}],"laps":[{"startTimeInSeconds":1795154400}]}"#

    static func withUser(_ json: String, _ user: String = user) -> String {
        "{\"userId\":\"\(user)\"," + json.dropFirst()
    }

    @Test func pushBodySplitsIntoRecordsWithTheExactBytes() throws {
        let daily = Self.withUser(Self.dailyJSON)
        let details = Self.withUser(Self.detailsJSON)
        let other = Self.withUser(Self.dailyJSON.replacingOccurrences(of: "x3b5-6789", with: "x9-1"), "other-user")
        let body = "{\"dailies\": [ \(daily) , \(other)],\n \"activityDetails\":[\(details)]}"
        let notes = try adapter.notifications(in: Array(body.utf8))
        #expect(notes.map(\.vendorUserID) == [Self.user, "other-user", Self.user])
        guard case .records(let first) = notes[0].action, case .records(let third) = notes[2].action else {
            Issue.record("\(notes)")
            return
        }
        #expect(first == [RawRecord(key: "dailies:x3b5-6789", body: Array(daily.utf8))])
        #expect(third == [RawRecord(key: "activityDetails:21000000001-detail", body: Array(details.utf8))])
        // Consecutive summaries of one user travel as one notification.
        let two = "{\"epochs\":[\(Self.withUser(#"{"summaryId":"e1"}"#)),\(Self.withUser(#"{"summaryId":"e2"}"#))]}"
        let merged = try adapter.notifications(in: Array(two.utf8))
        #expect(merged.count == 1)
        if case .records(let records) = merged[0].action { #expect(records.map(\.key) == ["epochs:e1", "epochs:e2"]) }
    }

    @Test func pingsFilesDeregistrationsAndPermissions() throws {
        let callback =
            "https://apis.garmin.com/wellness-api/rest/dailies?uploadStartTimeInSeconds=1&uploadEndTimeInSeconds=2&token=t0k"
        let fit = "https://apis.garmin.com/wellness-api/rest/activityFile?id=7&token=t0k"
        let body = """
            {"dailies":[{"userId":"\(Self.user)","callbackURL":"\(callback)"}],
            "activityFiles":[{"userId":"\(Self.user)","summaryId":"s1","activityId":21000000002,"fileType":"FIT","callbackURL":"\(fit)","startTimeInSeconds":1795154400,"manual":false},
              {"userId":"\(Self.user)","summaryId":"s2","activityId":21000000003,"fileType":"TCX","callbackURL":"\(fit)"}],
            "deregistrations":[{"userId":"\(Self.user)","userAccessToken":"legacy"}],
            "userPermissionsChange":[{"userId":"\(Self.user)","summaryId":"p1","permissions":["ACTIVITY_EXPORT"],"changeTimeInSeconds":1795154400}],
            "stressDetails":[{"userId":"\(Self.user)","summaryId":"st1"}],
            "somethingNew":[{"userId":"\(Self.user)"}]}
            """
        let actions = try adapter.notifications(in: Array(body.utf8)).map(\.action)
        #expect(actions.count == 7)
        guard case .fetch(let ping) = actions[0], case .fetch(let file) = actions[1],
            case .ignore(let tcx) = actions[2],
            case .deauthorized = actions[3], case .fetch(let permissions) = actions[4],
            case .ignore(let stress) = actions[5], case .ignore(let unknown) = actions[6]
        else {
            Issue.record("\(actions)")
            return
        }
        #expect(ping.kind == "ping" && ping.parameters["type"] == .string("dailies"))
        #expect(ping.parameters["url"] == .string(callback))
        #expect(file.kind == "activity_file" && file.key == "activity_file:21000000002")
        #expect(file.parameters["url"] == .string(fit))
        #expect(tcx.contains("TCX") && tcx.contains("only FIT"))
        #expect(permissions.kind == "permissions")
        #expect(permissions.parameters["announced"] == .array([.string("ACTIVITY_EXPORT")]))
        #expect(stress.contains("stress"))
        #expect(unknown.contains("somethingNew"))
        // The same ping twice is one job.
        let again = try adapter.notifications(in: Array(body.utf8))
        if case .fetch(let repeated) = again[0].action { #expect(repeated.key == ping.key) }
    }

    @Test func malformedBodiesSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("not json", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            (#"{"dailies":{"userId":"u"}}"#, "dailies is not a list"),
            (#"{"dailies":[{"summaryId":"x"}]}"#, "dailies[0] has no userId"),
            (#"{"dailies":[{"userId":"u","summaryId":"a"},42]}"#, "dailies[1] is not an object"),
            (#"{"dailies":[{"userId":"u"}]}"#, "dailies[0]: summary without summaryId"),
            (#"{"activityFiles":[{"userId":"u","fileType":"FIT"}]}"#, "without a callbackURL"),
            (
                #"{"activityDetails":[{"userId":"u","summaryId":"a","samples":[1,}]}"#,
                "not valid JSON (invalid JSON value at byte 63)"
            ),
        ]
        for (body, expected) in cases {
            do {
                _ = try adapter.notifications(in: Array(body.utf8))
                Issue.record("accepted: \(body)")
            } catch {
                guard case .malformed(let why) = error else {
                    Issue.record("\(error)")
                    continue
                }
                #expect(why.contains(expected), "\(body): \(why)")
            }
        }
        // An empty push is fine.
        #expect((try? adapter.notifications(in: Array("{}".utf8)))?.isEmpty == true)
    }

    // MARK: fetch

    @Test func pingCallbackIsFetchedWithTheUsersTokenAndSplit() async throws {
        let callback =
            "http://vendor.test/wellness-api/rest/dailies?uploadStartTimeInSeconds=1&uploadEndTimeInSeconds=2&token=t0k"
        let answer = "[\(Self.dailyJSON),\(Self.dailyJSON.replacingOccurrences(of: "x3b5-6789", with: "x3b5-7000"))]"
        let transport = ScriptedTransport { _ in .json(200, answer) }
        let task = try #require(
            {
                let note = try adapter.notifications(
                    in: Array(#"{"dailies":[{"userId":"u","callbackURL":"\#(callback)"}]}"#.utf8))
                if case .fetch(let task) = note[0].action { return task }
                return nil
            }())
        let outcome = try await adapter.fetch(
            task, connection: garminConnection(), context: makeContext(adapter, transport: transport))
        #expect(outcome.records.map(\.key) == ["dailies:x3b5-6789", "dailies:x3b5-7000"])
        #expect(outcome.records[0].body == Array(Self.dailyJSON.utf8))
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.url.absoluteString == callback, "the callback URL is used as given")
        #expect(sent.header("Authorization") == "Bearer access-1")
    }

    @Test func payloadURLsOffTheAllowedHostsAreRefused() async {
        let transport = ScriptedTransport { _ in .json(200, "[]") }
        let context = makeContext(adapter, transport: transport)
        for url in [
            "https://evil.example/wellness-api/rest/dailies?token=x", "http://apis.garmin.com/x",
            "https://user:pw@apis.garmin.com/x", "file:///etc/passwd",
        ] {
            for task in [
                FetchTask(
                    kind: "ping", key: "p", parameters: .object(["type": .string("dailies"), "url": .string(url)])),
                FetchTask(
                    kind: "activity_file", key: "f",
                    parameters: .object(["url": .string(url), "activity_id": .string("1")])),
            ] {
                do {
                    _ = try await adapter.fetch(task, connection: garminConnection(), context: context)
                    Issue.record("fetched \(url)")
                } catch {
                    guard case .forbiddenURL = error else {
                        Issue.record("\(url): \(error)")
                        continue
                    }
                }
            }
        }
        #expect(transport.sent.withLock { $0.isEmpty })
        // Garmin's own host is fine.
        let garmin = FetchTask(
            kind: "ping", key: "p",
            parameters: .object([
                "type": .string("dailies"), "url": .string("https://apis.garmin.com/wellness-api/rest/dailies?token=x"),
            ]))
        let outcome = try? await adapter.fetch(garmin, connection: garminConnection(), context: context)
        #expect(outcome?.records.isEmpty == true)
    }

    @Test func activityFileIsKeptAsItsBytes() async throws {
        let bytes: [UInt8] = [14, 16, 0x08, 0x08, 0, 0, 0, 0, 0x2E, 0x46, 0x49, 0x54]
        let transport = ScriptedTransport { _ in InboundResponse(status: 200, body: bytes) }
        let task = FetchTask(
            kind: "activity_file", key: "activity_file:42",
            parameters: .object([
                "url": .string("http://vendor.test/wellness-api/rest/activityFile?id=7"), "activity_id": .string("42"),
            ]))
        let outcome = try await adapter.fetch(
            task, connection: garminConnection(), context: makeContext(adapter, transport: transport))
        #expect(outcome.records == [RawRecord(key: "activityFile:42", body: bytes)])
        let empty = ScriptedTransport { _ in InboundResponse(status: 200) }
        await #expect(throws: VendorError.self) {
            _ = try await adapter.fetch(
                task, connection: garminConnection(), context: makeContext(adapter, transport: empty))
        }
    }

    @Test func backfillTasksCoverTheWindowInThirtyDayChunks() {
        let from = Self.at(Self.t0 - 45 * 86_400)
        let to = Self.at(Self.t0)
        let tasks = adapter.backfillTasks(from: from, to: to, connection: garminConnection())
        let types = [
            "activityDetails", "bloodPressures", "bodyComps", "dailies", "epochs", "hrv", "pulseOx", "respiration",
            "sleeps",
        ]
        #expect(tasks.count == 2 * types.count)
        #expect(Set(tasks.compactMap { $0.parameters["type"]?.string }) == Set(types))
        var covered = [(Int64, Int64)]()
        for task in tasks {
            let start = task.parameters["start"]!.int!
            let end = task.parameters["end"]!.int!
            #expect(end - start <= 30 * 86_400 && start < end)
            covered.append((start, end))
        }
        #expect(Set(covered.map(\.0)) == [Self.t0 - 45 * 86_400, Self.t0 - 30 * 86_400])
        #expect(Set(covered.map(\.1)) == [Self.t0 - 30 * 86_400, Self.t0])
        #expect(adapter.backfillTasks(from: to, to: to, connection: garminConnection()).isEmpty)
    }

    func backfill(status: Int, permissions: [String]) async throws(VendorError) -> [OutboundRequest] {
        let state = MemoryVendorState()
        try await state.setValue(
            "permissions:\(Self.user)", .object(["permissions": .array(permissions.map(JSONValue.string))]))
        let transport = ScriptedTransport { request in
            if request.url.path.hasSuffix("/user/permissions") { return .json(200, #"{"permissions":[]}"#) }
            return InboundResponse(status: status, body: Array(#"{"errorMessage":"x"}"#.utf8))
        }
        let task = GarminAdapter.backfillTask("pulseOx", start: Self.t0 - 86_400, end: Self.t0)
        let outcome = try await adapter.fetch(
            task, connection: garminConnection(), context: makeContext(adapter, transport: transport, state: state))
        #expect(outcome.records.isEmpty, "backfilled data arrives by push, never in this answer")
        return transport.sent.withLock { $0 }
    }

    @Test func backfillIsRequestedOnlyWithHistoricalPermission() async throws {
        let sent = try await backfill(status: 202, permissions: ["HEALTH_EXPORT", "HISTORICAL_DATA_EXPORT"])
        #expect(sent.count == 1)
        let url = try #require(sent.first?.url)
        #expect(url.path == "/wellness-api/rest/backfill/pulseOx")
        let query = URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems ?? []
        #expect(query.contains(URLQueryItem(name: "summaryStartTimeInSeconds", value: String(Self.t0 - 86_400))))
        #expect(query.contains(URLQueryItem(name: "summaryEndTimeInSeconds", value: String(Self.t0))))
        #expect(sent.first?.header("Authorization") == "Bearer access-1")
        #expect(try await backfill(status: 202, permissions: ["HEALTH_EXPORT"]).isEmpty)
        // Already requested, or a window Garmin does not serve: done, not retried.
        #expect(try await backfill(status: 409, permissions: ["HISTORICAL_DATA_EXPORT"]).count == 1)
        #expect(try await backfill(status: 400, permissions: ["HISTORICAL_DATA_EXPORT"]).count == 1)
        // Permission withdrawn meanwhile: the kept permissions are read again.
        #expect(try await backfill(status: 403, permissions: ["HISTORICAL_DATA_EXPORT"]).count == 2)
        do {
            _ = try await backfill(status: 503, permissions: ["HISTORICAL_DATA_EXPORT"])
            Issue.record("a 503 was taken as done")
        } catch {
            guard case .unavailable = error else { Issue.record("\(error)"); return }
        }
        let oversized = FetchTask(
            kind: "backfill", key: "b",
            parameters: .object(["type": .string("dailies"), "start": .int(0), "end": .int(31 * 86_400)]))
        await #expect(throws: VendorError.self) {
            _ = try await adapter.fetch(oversized, connection: garminConnection(), context: makeContext(adapter))
        }
    }

    /// No rate-limit headers are documented: a 429 with Retry-After is what the HTTP client honours.
    @Test func rateLimitAnswerIsWaitedFor() async throws {
        #expect(adapter.rateLimitHeaders == nil)
        let transport = ScriptedTransport { _ in
            .json(429, #"{"errorMessage":"Rate limit exceeded"}"#, headers: [("Retry-After", "60")])
        }
        let task = FetchTask(
            kind: "ping", key: "p",
            parameters: .object([
                "type": .string("dailies"), "url": .string("http://vendor.test/wellness-api/rest/dailies?token=x"),
            ]))
        do {
            _ = try await adapter.fetch(
                task, connection: garminConnection(), context: makeContext(adapter, transport: transport))
            Issue.record("a 429 was taken as an answer")
        } catch {
            guard case .rateLimited(_, let wait) = error else { Issue.record("\(error)"); return }
            #expect(wait >= .seconds(60))
        }
    }

    @Test func permissionChangeIsReadAndKept() async throws {
        let state = MemoryVendorState()
        let transport = ScriptedTransport { _ in .json(200, #"{"permissions":["ACTIVITY_EXPORT"]}"#) }
        _ = try await adapter.fetch(
            FetchTask(kind: "permissions", key: "permissions"), connection: garminConnection(),
            context: makeContext(adapter, transport: transport, state: state))
        #expect(
            try await state.value("permissions:\(Self.user)")?["permissions"] == .array([.string("ACTIVITY_EXPORT")]))
    }

    // MARK: mapping

    func mapped(_ type: String, _ json: String, key: String? = nil) throws -> [Sample] {
        try adapter.map(
            RawRecord(key: key ?? "\(type):k", body: Array(Self.withUser(json).utf8)), connection: garminConnection(),
            now: Self.now)
    }

    static func values(_ samples: [Sample], _ metric: Metric) -> [(Timestamp, Double)] {
        samples.filter { $0.metric == metric }.map { ($0.start, $0.value.number ?? .nan) }
    }

    @Test func dailiesGiveHeartRateFromTheDayStartAndRestingHeartRate() throws {
        let samples = try mapped("dailies", Self.dailyJSON)
        let hr = Self.values(samples, .heartRate)
        #expect(hr.map(\.0) == [Self.at(Self.t0), Self.at(Self.t0 + 15), Self.at(Self.t0 + 30)])
        #expect(hr.map(\.1) == [60, 61, 63])
        let resting = try #require(samples.first { $0.metric == .restingHeartRate })
        #expect(resting.value == .number(52) && resting.start == Self.at(Self.t0) && resting.quality == .vendorComputed)
        #expect(!samples.contains { $0.metric == .stepCount }, "daily totals repeat the epochs")
        #expect(samples.allSatisfy { $0.source.recordID == "x3b5-6789" && $0.source.vendor == "garmin" })
        #expect(samples.count == 4)
    }

    @Test func epochsAreIntervals() throws {
        let json =
            #"{"summaryId":"w1","activityType":"WALKING","activeKilocalories":24,"steps":812,"distanceInMeters":633.4,"durationInSeconds":900,"startTimeInSeconds":1795154400,"startTimeOffsetInSeconds":3600}"#
        let samples = try mapped("epochs", json)
        #expect(samples.count == 2)
        let steps = try #require(samples.first { $0.metric == .stepCount })
        #expect(steps.value == .number(812) && steps.start == Self.at(Self.t0) && steps.end == Self.at(Self.t0 + 900))
        let energy = try #require(samples.first { $0.metric == .activeEnergy })
        #expect(
            energy.value == .number(24) && energy.end == Self.at(Self.t0 + 900) && energy.quality == .vendorComputed)
        #expect(throws: VendorError.self) {
            try mapped("epochs", #"{"summaryId":"w1","startTimeInSeconds":1795154400}"#)
        }
    }

    @Test func sleepLevelsBecomeStages() throws {
        let json =
            #"{"summaryId":"s1","startTimeInSeconds":1795154400,"durationInSeconds":3600,"sleepLevelsMap":{"light":[{"startTimeInSeconds":1795154400,"endTimeInSeconds":1795156200}],"deep":[{"startTimeInSeconds":1795156200,"endTimeInSeconds":1795157400}],"rem":[{"startTimeInSeconds":1795157400,"endTimeInSeconds":1795157700}],"awake":[{"startTimeInSeconds":1795157700,"endTimeInSeconds":1795158000}],"unmeasurable":[{"startTimeInSeconds":1795158000,"endTimeInSeconds":1795158060}]},"timeOffsetSleepSpo2":{"0":95}}"#
        let stages = try mapped("sleeps", json)
        #expect(stages.map(\.value) == [.category("light"), .category("deep"), .category("rem"), .category("awake")])
        #expect(
            stages.map(\.start) == [
                Self.at(Self.t0), Self.at(Self.t0 + 1800), Self.at(Self.t0 + 3000), Self.at(Self.t0 + 3300),
            ])
        #expect(stages.last?.end == Self.at(Self.t0 + 3600))
        #expect(stages.allSatisfy { $0.metric == .sleepStage && $0.quality == .vendorComputed })
    }

    @Test func offsetSeriesAndMeasurements() throws {
        let hrv = try mapped(
            "hrv",
            #"{"summaryId":"h","startTimeInSeconds":1795154400,"lastNightAvg":44,"hrvValues":{"300":32,"0":41,"600":0}}"#
        )
        #expect(Self.values(hrv, .hrvRMSSD).map(\.1) == [41, 32])
        #expect(Self.values(hrv, .hrvRMSSD).map(\.0) == [Self.at(Self.t0), Self.at(Self.t0 + 300)])
        let spo2 = try mapped(
            "pulseox", #"{"summaryId":"p","startTimeInSeconds":1795154400,"timeOffsetSpo2Values":{"0":94,"60":97}}"#)
        #expect(Self.values(spo2, .spo2).map(\.1) == [94, 97] && spo2.allSatisfy { $0.metric.unit.code == "%" })
        let breaths = try mapped(
            "allDayRespiration",
            #"{"summaryId":"r","startTimeInSeconds":1795154400,"timeOffsetEpochToBreaths":{"0":14.63,"60":14.4,"120":-1}}"#
        )
        #expect(Self.values(breaths, .respiratoryRate).map(\.1) == [14.63, 14.4])
        let body = try mapped(
            "bodyComps",
            #"{"summaryId":"b","measurementTimeInSeconds":1795154400,"weightInGrams":72450,"bodyFatInPercent":18.4,"muscleMassInGrams":33000}"#
        )
        #expect(Self.values(body, .bodyWeight).map(\.1) == [72.45], "grams become kilograms")
        #expect(Self.values(body, .bodyFat).map(\.1) == [18.4])
        let pressure = try mapped(
            "bloodPressures",
            #"{"summaryId":"bp","measurementTimeInSeconds":1795154400,"systolic":121,"diastolic":79,"pulse":64,"sourceType":"MANUAL"}"#
        )
        #expect(Self.values(pressure, .bloodPressureSystolic).map(\.1) == [121])
        #expect(Self.values(pressure, .bloodPressureDiastolic).map(\.1) == [79])
        #expect(Self.values(pressure, .heartRate).map(\.1) == [64])
        #expect(pressure.allSatisfy { $0.start == Self.at(Self.t0) })
        #expect(throws: VendorError.self) { try mapped("bodyComps", #"{"summaryId":"b","weightInGrams":1}"#) }
    }

    @Test func activityDetailsStreamEverySampleInBatches() throws {
        let record = RawRecord(
            key: "activityDetails:21000000001-detail", body: Array(Self.withUser(Self.detailsJSON).utf8))
        let all = try adapter.map(record, connection: garminConnection(), now: Self.now)
        #expect(Self.values(all, .heartRate).map(\.1) == [120, 121, 122])
        #expect(
            Self.values(all, .heartRate).map(\.0) == [Self.at(Self.t0), Self.at(Self.t0 + 1), Self.at(Self.t0 + 2)])
        #expect(Self.values(all, .speed).map(\.1) == [2.5, 2.6])
        #expect(Self.values(all, .cadence).map(\.1) == [160, 161])
        #expect(Self.values(all, .power).map(\.1) == [250])
        #expect(Self.values(all, .altitude).map(\.1) == [410.5])
        #expect(Self.values(all, .ambientTemperature).map(\.1) == [18], "airTemperatureCelcius, Garmin's spelling")
        #expect(Self.values(all, .latitude).map(\.1) == [47.3769] && Self.values(all, .longitude).map(\.1) == [8.5417])
        let distance = all.filter { $0.metric == .distance }
        #expect(distance.map { $0.value.number! } == [2.6, 5.3 - 2.6])
        #expect(distance.map(\.start) == [Self.at(Self.t0), Self.at(Self.t0 + 1)])
        #expect(distance.map(\.end) == [Self.at(Self.t0 + 1), Self.at(Self.t0 + 2)])
        #expect(all.allSatisfy { $0.source.recordID == "21000000001" && $0.source.device?.model == "forerunner965" })
        #expect(all.count == 8 + 4 + 2)
        // Batches never exceed what was asked and, together, are exactly map's output.
        var source = try adapter.samples(of: record, connection: garminConnection(), now: Self.now)
        var streamed = [Sample]()
        while true {
            let batch = try source.next(max: 4)
            #expect(batch.count <= 4)
            if batch.isEmpty { break }
            streamed += batch
        }
        #expect(streamed == all)
    }

    @Test func longActivityStreamsWithoutATree() throws {
        // 36,000 one-second samples (a 10-hour activity): drained in batches of 5,000.
        var json = "{\"userId\":\"u\",\"summaryId\":\"9-detail\",\"activityId\":9,\"samples\":["
        for i in 0..<36_000 {
            if i > 0 { json += "," }
            json +=
                "{\"startTimeInSeconds\":\(Self.t0 + Int64(i)),\"heartRate\":\(100 + i % 50),\"totalDistanceInMeters\":\(Double(i) * 3)}"
        }
        json += "]}"
        var source = try adapter.samples(
            of: RawRecord(key: "activityDetails:9-detail", body: Array(json.utf8)), connection: garminConnection(),
            now: Self.now)
        var heartRates = 0
        var distance = 0.0
        var batches = 0
        while true {
            let batch = try source.next(max: 5000)
            if batch.isEmpty { break }
            batches += 1
            heartRates += batch.count { $0.metric == .heartRate }
            distance += batch.filter { $0.metric == .distance }.reduce(0) { $0 + $1.value.number! }
        }
        #expect(heartRates == 36_000)
        #expect(distance == 35_999 * 3)
        #expect(batches == (36_000 + 35_999 + 4999) / 5000)
    }

    @Test func brokenActivityDetailsAreMalformed() {
        for body in [#"{"userId":"u","samples":[{"startTimeInSeconds":1},"#, #"{"userId":"u","samples":{"a":1}}"#] {
            #expect(throws: VendorError.self) {
                try adapter.map(
                    RawRecord(key: "activityDetails:x", body: Array(body.utf8)), connection: garminConnection(),
                    now: Self.now)
            }
        }
        #expect(throws: VendorError.self) {
            try adapter.map(
                RawRecord(key: "nokey", body: Array("{}".utf8)), connection: garminConnection(), now: Self.now)
        }
    }

    // MARK: FIT files

    static func fixture(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "fit", subdirectory: "Fixtures"))
        return Array(try Data(contentsOf: url))
    }

    @Test func activityFileDecodesThroughPulseGateFIT() throws {
        let bytes = try Self.fixture("garmin-fenix5-run-hrv")
        let samples = try adapter.map(
            RawRecord(key: "activityFile:21000000002", body: bytes), connection: garminConnection(), now: Self.now)
        let hr = Self.values(samples, .heartRate)
        // The fixture's 21 records (fitdecode and Garmin's SDK agree): 14:34:09Z 61 bpm … 14:35:06Z 112 bpm.
        #expect(hr.count == 21)
        #expect(hr.first?.0 == Timestamp(rfc3339: "2017-06-11T14:34:09Z") && hr.first?.1 == 61)
        #expect(hr.last?.0 == Timestamp(rfc3339: "2017-06-11T14:35:06Z") && hr.last?.1 == 112)
        #expect(samples.allSatisfy { $0.source.recordID == "21000000002" && $0.source.vendor == "garmin" })
    }

    @Test func brokenFITFileIsMalformedWithReasonAndOffset() throws {
        let bytes = try Self.fixture("garmin-fenix5-run-hrv")
        for broken in [Array(bytes.prefix(3000)), [UInt8](repeating: 7, count: 40)] {
            do {
                _ = try adapter.map(
                    RawRecord(key: "activityFile:1", body: broken), connection: garminConnection(), now: Self.now)
                Issue.record("a broken FIT file mapped")
            } catch {
                guard case .malformed(let why) = error else { Issue.record("\(error)"); continue }
                #expect(why.contains("FIT file of activity 1") && why.contains("at byte"), "\(why)")
            }
        }
    }
}

import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit
import PulseGateVendorWahoo
import Synchronization
import Testing

@Suite struct WahooAdapterTests {
    let adapter = try! WahooAdapter()
    /// After every fixture's data, so the schema's future-time check never interferes.
    let now = Timestamp(rfc3339: "2026-11-22T00:00:00Z")!
    static let token = "portal-webhook-token"

    @Test func manifestLoads() {
        let m = adapter.manifest
        #expect(m.id == "wahoo")
        #expect(m.oauth.scopes == ["user_read", "workouts_read", "offline_data"])
        #expect(m.oauth.scopeSeparator == " ")
        #expect(m.oauth.pkce)
        #expect(m.oauth.clientAuthentication == .body)
        #expect(m.oauth.refreshTokens == .rotating)
        #expect(m.oauth.accessTokenLifetimeSeconds == 7200)
        #expect(m.urls["token"] == "https://api.wahooligan.com/oauth/token")
        #expect(m.urls["revoke"] == "https://api.wahooligan.com/v1/permissions")
        #expect(m.allowedHosts == ["cdn.wahooligan.com", "wahoo-cloud-web.s3.amazonaws.com"])
        #expect(m.rateLimits.map { [$0.requests, $0.seconds] } == [[200, 300], [1000, 3600], [5000, 86_400]])
    }

    // MARK: OAuth

    @Test func authorizeAndCodeExchangeUseFormCredentialsAndPKCE() throws {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        let pkce = PKCE(verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        let authorize = client.authorizeURL(state: "s", pkce: pkce).absoluteString
        #expect(authorize.hasPrefix("http://vendor.test/oauth/authorize?"))
        #expect(authorize.contains("scope=user_read+workouts_read+offline_data"))
        // RFC 7636 appendix B (vendor-vectors A1).
        #expect(authorize.contains("code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"))
        #expect(authorize.contains("code_challenge_method=S256"))
        let request = client.codeExchangeRequest(code: "c0de", pkce: pkce)
        let form = String(decoding: request.body ?? [], as: UTF8.self)
        #expect(request.header("Authorization") == nil)
        #expect(form.contains("client_id=test-client") && form.contains("client_secret=test-secret"))
        #expect(form.contains("code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
        let refresh = String(decoding: client.refreshRequest(refreshToken: Secret("r1")).body ?? [], as: UTF8.self)
        #expect(refresh.contains("grant_type=refresh_token") && refresh.contains("client_secret=test-secret"))
    }

    func tokenAnswer(_ body: String, status: Int = 200, previous: Secret? = nil) throws(OAuthError) -> TokenGrant {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        return try adapter.readTokenResponse(
            .json(status, body), client: client, now: now, previousRefreshToken: previous)
    }

    @Test func tokenExpiryReadsCreatedAtAndExpiresIn() throws {
        let nowSeconds = now.millisecondsSinceEpoch / 1000
        // Minted ten minutes before the answer arrived: it ends ten minutes earlier than expires_in says.
        let early = try tokenAnswer(
            #"{"access_token":"a1","token_type":"Bearer","expires_in":7200,"refresh_token":"r1","scope":"user_read workouts_read offline_data","created_at":\#(nowSeconds - 600)}"#
        )
        #expect(early.expiresAt == now.adding(milliseconds: 6600 * 1000))
        #expect(early.refreshToken == Secret("r1"))
        #expect(early.scopes == ["user_read", "workouts_read", "offline_data"])
        // Wahoo's clock ahead of ours: the relative lifetime is the earlier end.
        let ahead = try tokenAnswer(
            #"{"access_token":"a1","expires_in":7200,"refresh_token":"r1","created_at":\#(nowSeconds + 600)}"#)
        #expect(ahead.expiresAt == now.adding(milliseconds: 7200 * 1000))
        // A created_at that would make a fresh token expired already is ignored.
        let skewed = try tokenAnswer(
            #"{"access_token":"a1","expires_in":7200,"refresh_token":"r1","created_at":\#(nowSeconds - 90000)}"#)
        #expect(skewed.expiresAt == now.adding(milliseconds: 7200 * 1000))
        // Numbers as strings, like the rest of Wahoo's answers.
        let strings = try tokenAnswer(
            #"{"access_token":"a1","expires_in":"7200","refresh_token":"r1","created_at":"\#(nowSeconds - 60)"}"#)
        #expect(strings.expiresAt == now.adding(milliseconds: 7140 * 1000))
    }

    @Test func refreshAnswersRotateAndErrorsAreSorted() throws {
        let rotated = try tokenAnswer(
            #"{"access_token":"a2","expires_in":7200,"refresh_token":"r2","created_at":1700000000}"#,
            previous: Secret("r1"))
        #expect(rotated.refreshToken == Secret("r2"))
        let kept = try tokenAnswer(#"{"access_token":"a2","expires_in":7200}"#, previous: Secret("r1"))
        #expect(kept.refreshToken == Secret("r1"))
        let dead = #expect(throws: OAuthError.self) {
            try tokenAnswer(
                #"{"error":"invalid_grant","error_description":"The provided authorization grant is invalid"}"#,
                status: 400)
        }
        guard case .grantRejected = dead else {
            Issue.record("invalid_grant not read as a dead grant: \(String(describing: dead))")
            return
        }
        let client = #expect(throws: OAuthError.self) { try tokenAnswer(#"{"error":"invalid_client"}"#, status: 401) }
        guard case .clientRejected = client else {
            Issue.record("invalid_client not blamed on the app: \(String(describing: client))")
            return
        }
        let outage = #expect(throws: OAuthError.self) { try tokenAnswer("<html>Unavailable</html>", status: 503) }
        guard case .transient = outage else {
            Issue.record("a 503 not read as transient: \(String(describing: outage))")
            return
        }
    }

    @Test func didLinkReadsTheUserID() async throws {
        let transport = ScriptedTransport { _ in
            .json(
                200,
                #"{"id":60462,"height":"2.0","weight":"80.0","first":"Bob","last":"Smith","created_at":"2018-10-23T15:38:23.000Z"}"#
            )
        }
        let context = makeContext(adapter, transport: transport)
        let grant = TokenGrant(
            accessToken: Secret("a1"), refreshToken: Secret("r1"), expiresAt: nil,
            scopes: ["user_read", "workouts_read", "offline_data"])
        #expect(try await adapter.didLink(grant: grant, callback: [:], context: context) == "60462")
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.method == .get && sent.url.absoluteString == "http://vendor.test/v1/user")
        #expect(sent.header("Authorization") == "Bearer a1")

        // Without workouts_read nothing could ever be fetched: the link is refused before any call.
        let none = ScriptedTransport { _ in .json(200, #"{"id":1}"#) }
        let narrow = TokenGrant(
            accessToken: Secret("a1"), refreshToken: nil, expiresAt: nil, scopes: ["user_read"])
        await #expect(throws: VendorError.self) {
            try await adapter.didLink(grant: narrow, callback: [:], context: makeContext(adapter, transport: none))
        }
        #expect(none.sent.withLock { $0.isEmpty })
        let broken = makeContext(adapter, transport: ScriptedTransport { _ in .json(200, #"{"first":"Bob"}"#) })
        await #expect(throws: VendorError.self) {
            try await adapter.didLink(grant: grant, callback: [:], context: broken)
        }
    }

    @Test func revokeDeletesPermissions() async throws {
        let transport = ScriptedTransport { _ in .json(200, "{}") }
        try await adapter.revoke(
            connection: connection(token: "a1"), context: makeContext(adapter, transport: transport))
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.method == .delete && sent.url.absoluteString == "http://vendor.test/v1/permissions")
        #expect(sent.header("Authorization") == "Bearer a1")
        // A dead token or nothing to withdraw: access is gone either way.
        for status in [401, 404] {
            let gone = makeContext(adapter, transport: ScriptedTransport { _ in .json(status, "{}") })
            try await adapter.revoke(connection: connection(), context: gone)
        }
        let refused = makeContext(adapter, transport: ScriptedTransport { _ in .json(403, "{}") })
        await #expect(throws: VendorError.self) { try await adapter.revoke(connection: connection(), context: refused) }
    }

    // MARK: webhooks (vendor-vectors A9)

    /// The docs' "Sample Workout Summary Webhook Message", with the `<webhook_token>` placeholder filled in.
    static let documented = """
        {"event_type":"workout_summary","webhook_token":"\(token)","user":{"id":60462},"workout_summary":{"id":8297,\
        "ascent_accum":450.00,"cadence_avg":50.00,"calories_accum":1500.00,"distance_accum":24909.71,\
        "duration_active_accum":179,"duration_paused_accum":95,"duration_total_accum":275,"heart_rate_avg":124,\
        "power_bike_np_last":150,"power_bike_tss_last":304.90,"power_avg":94.59,"speed_avg":10.75,\
        "work_accum":104148000,"created_at":"2018-10-23T20:43:50.000Z","updated_at":"2018-10-23T20:43:50.000Z",\
        "file":{"url":"https://wahoo-cloud-web.s3.amazonaws.com/development/uploads/workout_file/file/EjA4DJCoIaG-f2fB2MLLLg/4_Mile_Segment_.fit"},\
        "workout":{"id":56519,"starts":"2015-08-12T09:00:00.000Z","minutes":12,"name":"Friday Fun",\
        "created_at":"2018-10-23T20:41:55.000Z","updated_at":"2018-10-23T20:41:55.000Z","plan_id":null,\
        "workout_token":"123","workout_type_id":40}}}
        """

    /// The shape of a delivered production message: numbers as strings, the CDN host, `started_at`,
    /// `time_zone`, `fitness_app_id`.
    static let production = """
        {"event_type":"workout_summary","webhook_token":"\(token)","user":{"id":1120489},"workout_summary":{\
        "id":252869305,"ascent_accum":"179.0","cadence_avg":"67.0","calories_accum":"438.0",\
        "distance_accum":"24323.54","duration_active_accum":"3557.0","duration_paused_accum":"121.0",\
        "duration_total_accum":"3678.0","heart_rate_avg":"153.0","power_bike_np_last":"154.0",\
        "power_bike_tss_last":"45.0","power_avg":"122.0","speed_avg":"6.84","work_accum":"435276.0",\
        "started_at":"2024-04-12T17:34:45.000Z","time_zone":"Europe/Helsinki","fitness_app_id":1,\
        "created_at":"2024-04-12T18:36:11.000Z","updated_at":"2024-04-12T18:36:11.000Z",\
        "file":{"url":"https://cdn.wahooligan.com/wahoo-cloud/production/uploads/workout_file/file/A8dm1z2TPq-mXCZ_5KrKtg/2024-04-12-173445-ELEMNT_BOLT_A6D5-177-0.fit"},\
        "workout":{"id":281788767,"starts":"2024-04-12T17:34:45.000Z","minutes":61,"name":"Cycling",\
        "created_at":"2024-04-12T18:36:11.000Z","updated_at":"2024-04-12T18:36:11.000Z","plan_id":null,\
        "workout_token":"ELEMNT BOLT A6D5:177","workout_type_id":0}}}
        """

    /// A workout entered by hand: a summary without a file.
    static let manual = """
        {"event_type":"workout_summary","webhook_token":"\(token)","user":{"id":"60462"},"workout_summary":{\
        "id":9001,"calories_accum":"350.0","distance_accum":"10000.0","duration_total_accum":"1800.0",\
        "duration_active_accum":"1800.0","heart_rate_avg":"140.0","power_avg":"0.0","ascent_accum":"0.0",\
        "manual":true,"file":null,"created_at":"2026-11-20T10:00:00.000Z","updated_at":"2026-11-20T10:00:00.000Z",\
        "workout":{"id":77001,"starts":"2026-11-20T08:30:00.000Z","minutes":30,"name":"Trainer",\
        "workout_type_id":12}}}
        """

    func configured(_ secrets: [String: Secret] = ["webhook_token": Secret(token)]) -> VendorContext {
        makeContext(adapter, secrets: secrets)
    }

    @Test func webhookTokenIsTheProof() async throws {
        #expect(await adapter.verify(webhook(Self.documented), context: configured()) == .authentic)
        #expect(await adapter.verify(webhook(Self.production), context: configured()) == .authentic)
        #expect(await adapter.handshake(webhook(Self.documented), context: configured()) == nil)

        let forged = Self.documented.replacingOccurrences(of: Self.token, with: "guessed-token")
        #expect(
            await adapter.verify(webhook(forged), context: configured())
                == .rejected(reason: "webhook_token does not match", label: "bad_signature"))
        // The right token with anything appended is still the wrong token.
        let longer = Self.documented.replacingOccurrences(of: Self.token, with: Self.token + "x")
        guard case .rejected(_, "bad_signature") = await adapter.verify(webhook(longer), context: configured()) else {
            Issue.record("a longer token was accepted")
            return
        }
        let missing = Self.documented.replacingOccurrences(of: "\"webhook_token\":\"\(Self.token)\",", with: "")
        guard case .rejected(_, "missing_signature") = await adapter.verify(webhook(missing), context: configured())
        else {
            Issue.record("a message without webhook_token was accepted")
            return
        }
        guard
            case .rejected(_, "malformed") = await adapter.verify(
                webhook("webhook_token=\(Self.token)"), context: configured())
        else {
            Issue.record("a non-JSON body was accepted")
            return
        }
        // A deployment without a configured token accepts nothing.
        guard case .rejected(_, "no_key") = await adapter.verify(webhook(Self.documented), context: configured([:]))
        else {
            Issue.record("verified without a configured token")
            return
        }
        // During a rotation the previous token still verifies (Wahoo retries for up to 72 hours).
        let rotating = configured([
            "webhook_token": Secret("new-token"), "previous_webhook_token": Secret(Self.token),
        ])
        #expect(await adapter.verify(webhook(Self.documented), context: rotating) == .authentic)
        let rotated = configured(["webhook_token": Secret("new-token")])
        guard case .rejected(_, "bad_signature") = await adapter.verify(webhook(Self.documented), context: rotated)
        else {
            Issue.record("the replaced token still verifies after the rotation")
            return
        }
    }

    /// Wahoo sends no timestamp, so there is no stale-message check: a replay is one summary revision
    /// delivered again and is absorbed by its dedupe key, whatever the bytes look like.
    @Test func dedupeKeyIsTheSummaryRevision() {
        let key = adapter.dedupeKey(webhook(Self.documented))
        #expect(key == "workout_summary:8297:2018-10-23T20:43:50.000Z")
        let respaced = Self.documented.replacingOccurrences(of: "\"user\":", with: "\"user\": ")
        #expect(adapter.dedupeKey(webhook(respaced)) == key)
        let edited = Self.documented.replacingOccurrences(
            of: "\"updated_at\":\"2018-10-23T20:43:50.000Z\"", with: "\"updated_at\":\"2018-10-24T07:00:00.000Z\"")
        #expect(adapter.dedupeKey(webhook(edited)) == "workout_summary:8297:2018-10-24T07:00:00.000Z")
        #expect(adapter.dedupeKey(webhook("not json")) == webhook("not json").bodyDigest)
    }

    @Test func summariesWithAFileBecomeDownloads() throws {
        let documented = try adapter.notifications(in: Array(Self.documented.utf8))
        #expect(
            documented == [
                VendorNotification(
                    vendorUserID: "60462",
                    action: .fetch(
                        FetchTask(
                            kind: "file", key: "workout:56519@2018-10-23T20:43:50.000Z",
                            parameters: .object([
                                "workout_id": .string("56519"), "summary_id": .string("8297"),
                                "updated_at": .string("2018-10-23T20:43:50.000Z"),
                                "url": .string(
                                    "https://wahoo-cloud-web.s3.amazonaws.com/development/uploads/workout_file/file/EjA4DJCoIaG-f2fB2MLLLg/4_Mile_Segment_.fit"
                                ),
                            ]))))
            ])
        let production = try adapter.notifications(in: Array(Self.production.utf8))
        guard case .fetch(let task) = production.first?.action else {
            Issue.record("production message not fetched")
            return
        }
        #expect(production.first?.vendorUserID == "1120489")
        #expect(task.key == "workout:281788767@2024-04-12T18:36:11.000Z")
        #expect(task.parameters["url"]?.string?.hasPrefix("https://cdn.wahooligan.com/wahoo-cloud/production/") == true)
    }

    @Test func summariesWithoutAFileArriveAsRecords() throws {
        let notes = try adapter.notifications(in: Array(Self.manual.utf8))
        guard case .records(let records) = notes.first?.action, let record = records.first else {
            Issue.record("summary-only message not kept as a record")
            return
        }
        #expect(notes.first?.vendorUserID == "60462")
        #expect(record.key == "summary:77001")
        let kept = try JSONValue.parse(record.body)
        #expect(kept["workout"]?["starts"]?.string == "2026-11-20T08:30:00.000Z")
        #expect(kept["workout_summary"]?["id"]?.int == 9001)
        #expect(kept["workout_summary"]?["workout"] == nil)

        let samples = try adapter.map(record, connection: connection(subject: "member-9"), now: now)
        let start = Timestamp(rfc3339: "2026-11-20T08:30:00Z")!
        let end = start.adding(milliseconds: 1_800_000)
        #expect(samples.count == 2)
        let distance = try #require(samples.first { $0.metric == .distance })
        #expect(distance.value == .number(10_000) && distance.start == start && distance.end == end)
        #expect(distance.quality == .vendorComputed && distance.source.recordID == "77001")
        let energy = try #require(samples.first { $0.metric == .activeEnergy })
        #expect(energy.value == .number(350) && energy.end == end && energy.subject == "member-9")
        // Averages (heart rate 140, power 0) have no honest place: nothing else is emitted.
        #expect(!samples.contains { $0.metric == .heartRate || $0.metric == .power })
    }

    @Test func otherEventsAreIgnoredAndBrokenOnesRefused() throws {
        let other = #"{"event_type":"plan_updated","webhook_token":"t","user":{"id":60462}}"#
        guard case .ignore = try adapter.notifications(in: Array(other.utf8)).first?.action else {
            Issue.record("an unknown event was not ignored")
            return
        }
        let broken = [
            "not json",
            #"{"webhook_token":"t","user":{"id":1},"workout_summary":{"id":1}}"#,
            #"{"event_type":"workout_summary","workout_summary":{"id":1,"workout":{"id":2}}}"#,
            #"{"event_type":"workout_summary","user":{"id":1}}"#,
            #"{"event_type":"workout_summary","user":{"id":1},"workout_summary":{"workout":{"id":2}}}"#,
            #"{"event_type":"workout_summary","user":{"id":1},"workout_summary":{"id":3}}"#,
            #"{"event_type":"workout_summary","user":{"id":1},"workout_summary":{"id":3,"workout":{"id":"../x"}}}"#,
            #"{"event_type":"workout_summary","user":{"id":"a/b"},"workout_summary":{"id":3,"workout":{"id":2}}}"#,
        ]
        for body in broken {
            #expect(throws: VendorError.self, "\(body)") { try adapter.notifications(in: Array(body.utf8)) }
        }
    }

    // MARK: fetch

    static func fixture() throws -> [UInt8] {
        let url = try #require(
            Bundle.module.url(
                forResource: "wahoo-elemnt-bolt-no-app-id", withExtension: "fit", subdirectory: "Fixtures"))
        return Array(try Data(contentsOf: url))
    }

    @Test func fileIsDownloadedFromTheCDNWithoutTheToken() async throws {
        let fit = try Self.fixture()
        let transport = ScriptedTransport { _ in
            InboundResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: fit)
        }
        let context = makeContext(adapter, transport: transport)
        let task = try #require(
            WahooAdapter.fileTask(
                workoutID: "281788767",
                summary: try JSONValue.parse(Array(Self.production.utf8))["workout_summary"]!))
        let outcome = try await adapter.fetch(task, connection: connection(token: "a1"), context: context)
        #expect(outcome.records == [RawRecord(key: "workout:281788767", body: fit)])
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.url.host == "cdn.wahooligan.com" && sent.method == .get)
        #expect(sent.header("Authorization") == nil, "the user's token went to the CDN")

        // Gone from the CDN (a replaced or deleted file): refused for good, not retried.
        let gone = makeContext(adapter, transport: ScriptedTransport { _ in .json(403, "<Error/>") })
        await #expect(throws: VendorError.self) {
            try await adapter.fetch(task, connection: connection(), context: gone)
        }
    }

    @Test func fileURLsOffWahoosHostsAreRefused() async throws {
        let transport = ScriptedTransport { _ in InboundResponse(status: 200, body: [1, 2, 3]) }
        let context = makeContext(adapter, transport: transport)
        for url in [
            "https://evil.example/wahoo-cloud/production/x.fit", "http://cdn.wahooligan.com/x.fit",
            "https://cdn.wahooligan.com.evil.example/x.fit", "https://user:pw@cdn.wahooligan.com/x.fit",
            "https://s3.amazonaws.com/other-bucket/x.fit", "file:///etc/passwd",
        ] {
            let task = FetchTask(
                kind: "file", key: "workout:1",
                parameters: .object(["workout_id": .string("1"), "url": .string(url)]))
            let error = await #expect(throws: VendorError.self, "\(url)") {
                try await adapter.fetch(task, connection: connection(), context: context)
            }
            guard case .forbiddenURL = error else {
                Issue.record("\(url): \(String(describing: error))")
                continue
            }
        }
        #expect(transport.sent.withLock { $0.isEmpty })
    }

    @Test func summaryFetchFollowsTheFileOrKeepsTheSummary() async throws {
        let workout = JSONValue.object(["id": .int(56519), "starts": .string("2015-08-12T09:00:00.000Z")])
        let task = WahooAdapter.summaryTask(workoutID: "56519", workout: workout)
        let withFile = ScriptedTransport { _ in
            .json(
                200,
                #"{"id":8297,"distance_accum":24909.71,"updated_at":"2018-10-23T20:43:50.000Z","file":{"url":"https://cdn.wahooligan.com/x.fit"}}"#
            )
        }
        let followed = try await adapter.fetch(
            task, connection: connection(token: "a1"), context: makeContext(adapter, transport: withFile))
        #expect(followed.records.isEmpty)
        #expect(followed.followUps.map(\.key) == ["workout:56519@2018-10-23T20:43:50.000Z"])
        let sent = try #require(withFile.sent.withLock { $0.first })
        #expect(sent.url.absoluteString == "http://vendor.test/v1/workouts/56519/workout_summary")
        #expect(sent.header("Authorization") == "Bearer a1")

        // Wrapped in {"workout_summary": …} and without a file: kept with the listed workout's start.
        let noFile = ScriptedTransport { _ in
            .json(200, #"{"workout_summary":{"id":8297,"distance_accum":"500.0","duration_total_accum":"100.0"}}"#)
        }
        let kept = try await adapter.fetch(
            task, connection: connection(), context: makeContext(adapter, transport: noFile))
        let record = try #require(kept.records.first)
        #expect(record.key == "summary:56519")
        let samples = try adapter.map(record, connection: connection(), now: now)
        #expect(samples.map(\.metric) == [.distance])
        #expect(samples.first?.start == Timestamp(rfc3339: "2015-08-12T09:00:00Z"))

        // No summary yet.
        let none = ScriptedTransport { _ in .json(404, #"{"error":"Not Found"}"#) }
        let empty = try await adapter.fetch(
            task, connection: connection(), context: makeContext(adapter, transport: none))
        #expect(empty.records.isEmpty && empty.followUps.isEmpty)
    }

    static func listing(_ workouts: [String], total: Int, page: Int = 1) -> String {
        #"{"workouts":[\#(workouts.joined(separator: ","))],"total":\#(total),"page":\#(page),"per_page":50,"order":"descending","sort":"starts"}"#
    }

    @Test func listingPagesBackUntilTheWindowStarts() async throws {
        let after = Timestamp(rfc3339: "2026-11-01T00:00:00Z")!.millisecondsSinceEpoch
        let before = Timestamp(rfc3339: "2026-11-21T00:00:00Z")!.millisecondsSinceEpoch
        let page1 = Self.listing(
            [
                // Started after the window's end: skipped.
                #"{"id":10,"starts":"2026-11-21T06:00:00.000Z","workout_summary":null}"#,
                // The listing carries the summary with its file: straight to the download.
                #"{"id":11,"starts":"2026-11-20T06:00:00.000Z","workout_summary":{"id":111,"updated_at":"2026-11-20T08:00:00.000Z","file":{"url":"https://cdn.wahooligan.com/11.fit"}}}"#,
                // A summary without a file: kept as it is.
                #"{"id":12,"starts":"2026-11-19T06:00:00.000Z","workout_summary":{"id":112,"distance_accum":"1000.0","duration_total_accum":"600.0","file":null}}"#,
                // No summary in the listing: fetched on its own.
                #"{"id":13,"starts":"2026-11-18T06:00:00.000Z","workout_summary":null}"#,
            ], total: 120)
        let transport = ScriptedTransport { _ in .json(200, page1) }
        let context = makeContext(adapter, transport: transport)
        let outcome = try await adapter.fetch(
            WahooAdapter.listTask(after: after, before: before), connection: connection(), context: context)
        #expect(
            outcome.followUps.map(\.key) == [
                "workout:11@2026-11-20T08:00:00.000Z", "summary:13", "workouts:\(after)-\(before):p2",
            ])
        #expect(outcome.records.map(\.key) == ["summary:12"])
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.url.absoluteString == "http://vendor.test/v1/workouts?page=1&per_page=50")

        // Page 2 reaches a workout older than the window: no page 3.
        let page2 = Self.listing(
            [
                #"{"id":14,"starts":"2026-11-02T06:00:00.000Z","workout_summary":null}"#,
                #"{"id":15,"starts":"2026-10-30T06:00:00.000Z","workout_summary":null}"#,
            ], total: 120, page: 2)
        let second = try await adapter.fetch(
            WahooAdapter.listTask(after: after, before: before, page: 2), connection: connection(),
            context: makeContext(adapter, transport: ScriptedTransport { _ in .json(200, page2) }))
        #expect(second.followUps.map(\.key) == ["summary:14"])
        // The last page by total ends paging too.
        let last = try await adapter.fetch(
            WahooAdapter.listTask(after: after, before: before, page: 3), connection: connection(),
            context: makeContext(
                adapter,
                transport: ScriptedTransport { _ in
                    .json(200, Self.listing([#"{"id":16,"starts":"2026-11-03T06:00:00.000Z"}"#], total: 101, page: 3))
                }))
        #expect(last.followUps.map(\.key) == ["summary:16"])
        await #expect(throws: VendorError.self) {
            try await adapter.fetch(
                WahooAdapter.listTask(after: after, before: before), connection: connection(),
                context: makeContext(adapter, transport: ScriptedTransport { _ in .json(200, #"{"total":3}"#) }))
        }
    }

    @Test func backfillAndReconcileListWorkouts() {
        let from = Timestamp(rfc3339: "2026-10-01T00:00:00Z")!
        let to = Timestamp(rfc3339: "2026-11-01T00:00:00Z")!
        #expect(
            adapter.backfillTasks(from: from, to: to, connection: connection())
                == [WahooAdapter.listTask(after: from.millisecondsSinceEpoch, before: to.millisecondsSinceEpoch)])
        #expect(adapter.backfillTasks(from: to, to: from, connection: connection()).isEmpty)
        // Rides are often uploaded hours after they started: the poll reaches two days further back.
        #expect(
            adapter.reconcileTasks(since: to, connection: connection())
                == [WahooAdapter.listTask(after: to.millisecondsSinceEpoch - 48 * 3_600_000, before: nil)])
    }

    // MARK: FIT mapping

    @Test func fitFileStreamsTheSamplesMapReturns() throws {
        let record = RawRecord(key: "workout:281788767", body: try Self.fixture())
        let member = connection(subject: "member-7")
        let mapped = try adapter.map(record, connection: member, now: now)
        var source = try adapter.samples(of: record, connection: member, now: now)
        var streamed = [Sample]()
        while true {
            let batch = try source.next(max: 10)
            #expect(batch.count <= 10)
            if batch.isEmpty { break }
            streamed += batch
        }
        #expect(streamed == mapped)
        #expect(!mapped.isEmpty, "the FIT fixture mapped to nothing")
        #expect(mapped.allSatisfy { $0.subject == "member-7" && $0.source.vendor == "wahoo" })
        #expect(mapped.allSatisfy { $0.source.kind == .cloud && $0.source.recordID == "281788767" })
        // What two independent decoders read from this ELEMNT BOLT file: the first record at
        // 2017-08-21T08:18:00Z with 160 W and 48 rpm, no heart rate.
        let first = Timestamp(rfc3339: "2017-08-21T08:18:00Z")!
        let power = mapped.filter { $0.metric == .power }.sorted { $0.start < $1.start }
        #expect(power.first?.start == first && power.first?.value == .number(160))
        let cadence = mapped.filter { $0.metric == .cadence }.sorted { $0.start < $1.start }
        #expect(cadence.first?.start == first && cadence.first?.value == .number(48))
        #expect(!mapped.contains { $0.metric == .heartRate })
    }

    @Test func brokenFITFilesAreMalformedWithTheirReason() throws {
        var fit = try Self.fixture()
        fit[fit.count - 1] ^= 0xFF  // the file CRC
        for (label, body, reason) in [
            ("bad CRC", fit, "badFileCRC"), ("truncated", Array(fit.prefix(2000)), "truncated"),
            ("empty", [UInt8](), "empty"),
            (
                "not FIT",
                Array(#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code></Error>"#.utf8),
                "badHeader"
            ),
        ] {
            let error = #expect(throws: VendorError.self, "\(label)") {
                var source = try adapter.samples(
                    of: RawRecord(key: "workout:5", body: body), connection: connection(), now: now)
                _ = try source.all()
            }
            guard case .malformed(let message) = error, message.contains("workout 5"), message.contains(reason) else {
                Issue.record("\(label): \(String(describing: error))")
                continue
            }
        }
        #expect(throws: VendorError.self) {
            try adapter.map(RawRecord(key: "route:5", body: []), connection: connection(), now: now)
        }
    }

    @Test func summaryMappingReadsStringsAndSkipsWhatWasNotMeasured() throws {
        func map(_ summary: String, workout: String = #"{"id":1,"starts":"2026-11-20T08:00:00.000Z","minutes":45}"#)
            throws -> [Sample]
        {
            let body = #"{"workout":\#(workout),"workout_summary":\#(summary)}"#
            return try adapter.map(
                RawRecord(key: "summary:1", body: Array(body.utf8)), connection: connection(), now: now)
        }
        // Zeros stand for "not measured"; without a duration the minutes of the workout place it.
        let minutes = try map(#"{"id":2,"distance_accum":"0.0","calories_accum":"420"}"#)
        #expect(minutes.map(\.metric) == [.activeEnergy])
        #expect(minutes.first?.end == Timestamp(rfc3339: "2026-11-20T08:45:00Z"))
        #expect(try map(#"{"id":2,"distance_accum":null,"calories_accum":"n/a"}"#).isEmpty)
        #expect(
            try map(#"{"id":2,"distance_accum":"100.0"}"#, workout: #"{"id":1,"starts":"2026-11-20T08:00:00.000Z"}"#)
                .isEmpty)
        // Only started_at (production) places it when the workout is missing.
        let started = try map(
            #"{"id":2,"distance_accum":"100.0","duration_total_accum":60,"started_at":"2026-11-20T09:00:00.000Z"}"#,
            workout: "null")
        #expect(started.first?.start == Timestamp(rfc3339: "2026-11-20T09:00:00Z"))
        #expect(throws: VendorError.self) { try map(#"{"id":2,"distance_accum":"100.0"}"#, workout: "null") }
        #expect(throws: VendorError.self) {
            try adapter.map(RawRecord(key: "summary:1", body: Array("{".utf8)), connection: connection(), now: now)
        }
    }

    // MARK: rate limits (vendor-vectors A8)

    @Test func rateLimitHeadersPauseUntilTheReset() throws {
        let reader = try #require(adapter.rateLimitHeaders)
        func answer(_ limit: String, _ remaining: String, _ reset: String?, status: Int = 200) -> InboundResponse {
            var headers = [("X-RateLimit-Limit", limit), ("X-RateLimit-Remaining", remaining)]
            if let reset { headers.append(("X-RateLimit-Reset", reset)) }
            return .json(status, "{}", headers: headers.map { (name: $0.0, value: $0.1) })
        }
        #expect(reader(answer("5000, 1000, 200", "4999, 999, 199", "0"), now) == nil)
        #expect(reader(answer("5000, 1000, 200", "4800, 800, 0", "300", status: 429), now) == .seconds(300))
        #expect(reader(answer("250, 100, 25", "0, 40, 3", "5400"), now) == .seconds(5400))
        // Spent without a reset value: the window's length.
        #expect(reader(answer("5000, 1000, 200", "4800, 0, 12", nil), now) == .seconds(3600))
        #expect(reader(InboundResponse(status: 200), now) == nil)
    }
}

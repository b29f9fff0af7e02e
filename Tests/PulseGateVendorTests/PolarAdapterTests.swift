import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit
import PulseGateVendorPolar
import Synchronization
import Testing

@Suite struct PolarAdapterTests {
    let adapter = try! PolarAdapter()
    /// After every fixture's data, so the schema's future-time check never interferes.
    let now = Timestamp(rfc3339: "2026-11-22T00:00:00Z")!

    @Test func manifestLoads() {
        #expect(adapter.manifest.id == "polar")
        #expect(adapter.manifest.oauth.scopes == ["accesslink.read_all"])
        #expect(adapter.manifest.oauth.pkce == false)
        #expect(adapter.manifest.oauth.clientAuthentication == .basic)
        #expect(adapter.manifest.oauth.refreshTokens == VendorManifest.OAuth.RefreshTokens.none)
        #expect(adapter.manifest.urls["api"] == "https://www.polaraccesslink.com/v3")
        #expect(adapter.manifest.allowedHosts == ["www.polaraccesslink.com"])
    }

    @Test func tokenExchangeUsesBasicAuthAndNoPKCE() throws {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        let request = client.codeExchangeRequest(code: "c0de", pkce: nil)
        #expect(request.header("Authorization") == OAuthClient.basicAuthorization("test-client", Secret("test-secret")))
        #expect(!String(decoding: request.body ?? [], as: UTF8.self).contains("client_secret"))
        let authorize = client.authorizeURL(state: "s", pkce: nil).absoluteString
        #expect(authorize.hasPrefix("http://vendor.test/oauth2/authorization?"))
        #expect(authorize.contains("scope=accesslink.read_all"))
    }

    // MARK: signature (vendor-vectors B4)

    static let event =
        #"{"event":"EXERCISE","user_id":475,"entity_id":"aQlC83","timestamp":"2018-05-15T14:22:24Z","url":"https://www.polaraccesslink.com/v3/exercises/aQlC83"}"#
    static let signature = "0ee5545baba7b32d8b0e210ff77be60d12108ac039f3c145804720b026f01a45"

    @Test func signatureVectorVerifiesWithTheStoredKey() async throws {
        let state = MemoryVendorState()
        try await state.setSecret("signature_secret_key", Secret("test-secret"))
        let context = makeContext(adapter, state: state)
        #expect(
            await adapter.verify(
                webhook(Self.event, headers: [("Polar-Webhook-Signature", Self.signature)]), context: context)
                == .authentic)
        #expect(
            await adapter.verify(
                webhook(Self.event, headers: [("polar-webhook-signature", Self.signature.uppercased())]),
                context: context) == .authentic)
        // The same JSON re-serialized with a space: other bytes, so the signature must fail.
        let spaced = Self.event.replacingOccurrences(of: "\"user_id\":", with: "\"user_id\": ")
        #expect(
            await adapter.verify(
                webhook(spaced, headers: [("Polar-Webhook-Signature", Self.signature)]), context: context)
                == .rejected(reason: "Polar-Webhook-Signature does not match", label: "bad_signature"))
        guard case .rejected(_, "missing_signature") = await adapter.verify(webhook(Self.event), context: context)
        else {
            Issue.record("unsigned notification accepted")
            return
        }
    }

    @Test func wrongOrMissingKeyIsRefused() async throws {
        let signed = webhook(Self.event, headers: [("Polar-Webhook-Signature", Self.signature)])
        let wrong = MemoryVendorState()
        try await wrong.setSecret("signature_secret_key", Secret("other-secret"))
        guard
            case .rejected(_, "bad_signature") = await adapter.verify(
                signed, context: makeContext(adapter, state: wrong))
        else {
            Issue.record("signature accepted with the wrong key")
            return
        }
        guard case .rejected(_, "no_key") = await adapter.verify(signed, context: makeContext(adapter)) else {
            Issue.record("verified without any key")
            return
        }
        // A key configured by the operator (webhook created by hand) verifies too, next to a stale stored one.
        let configured = makeContext(adapter, secrets: ["signature_secret_key": Secret("test-secret")], state: wrong)
        #expect(await adapter.verify(signed, context: configured) == .authentic)
    }

    @Test func pingIsAnsweredWithoutASignature() async throws {
        let context = makeContext(adapter)
        let ping = webhook(#"{"timestamp":"2026-11-20T07:00:00.000Z","event":"PING"}"#)
        #expect(await adapter.handshake(ping, context: context) == WebhookAnswer(status: 200))
        #expect(await adapter.handshake(webhook(Self.event), context: context) == nil)
        #expect(await adapter.handshake(webhook("not json"), context: context) == nil)
        #expect(try adapter.notifications(in: Array(#"{"event":"PING"}"#.utf8)).isEmpty)
    }

    // MARK: notifications

    @Test func notificationsBecomeFetchTasks() throws {
        let exercise = try adapter.notifications(in: Array(Self.event.utf8))
        #expect(
            exercise == [
                VendorNotification(
                    vendorUserID: "475",
                    action: .fetch(
                        FetchTask(
                            kind: "exercise", key: "exercise:aQlC83",
                            parameters: .object([
                                "id": .string("aQlC83"),
                                "url": .string("https://www.polaraccesslink.com/v3/exercises/aQlC83"),
                            ]))))
            ])
        let sleep =
            #"{"event":"SLEEP","user_id":475,"date":"2026-11-20","timestamp":"2026-11-20T07:30:00Z","url":"https://www.polaraccesslink.com/v3/users/sleep/2026-11-20"}"#
        #expect(
            try adapter.notifications(in: Array(sleep.utf8)).first?.action
                == .fetch(PolarAdapter.sleepTask("2026-11-20")))
        // Day events named only by their URL still find their date.
        let heartRate =
            #"{"event":"CONTINUOUS_HEART_RATE","user_id":475,"timestamp":"2026-11-20T07:30:00Z","url":"https://www.polaraccesslink.com/v3/users/continuous-heart-rate/2026-11-19"}"#
        #expect(
            try adapter.notifications(in: Array(heartRate.utf8)).first?.action
                == .fetch(
                    FetchTask(
                        kind: "heartrate", key: "heartrate:2026-11-19",
                        parameters: .object(["date": .string("2026-11-19")]))))
        let summary = #"{"event":"ACTIVITY_SUMMARY","user_id":475,"date":"2026-11-20"}"#
        guard case .ignore = try adapter.notifications(in: Array(summary.utf8)).first?.action else {
            Issue.record("ACTIVITY_SUMMARY not ignored")
            return
        }
        #expect(throws: VendorError.self) {
            try adapter.notifications(in: Array(#"{"event":"EXERCISE","entity_id":"x"}"#.utf8))
        }
        #expect(throws: VendorError.self) {
            try adapter.notifications(in: Array(#"{"event":"SLEEP","user_id":475}"#.utf8))
        }
        #expect(throws: VendorError.self) { try adapter.notifications(in: Array("<xml/>".utf8)) }
        // An id that would escape the URL path is refused.
        let traversal = #"{"event":"EXERCISE","user_id":475,"entity_id":"../users/9"}"#
        #expect(throws: VendorError.self) { try adapter.notifications(in: Array(traversal.utf8)) }
    }

    // MARK: OAuth and registration

    @Test func tokenResponseCarriesTheUserAndRegistration409IsFine() async throws {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        let answer = InboundResponse.json(
            200,
            #"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"bearer","expires_in":315359999,"x_user_id":10000000}"#
        )
        let issued = try #require(Timestamp(rfc3339: "2026-11-20T00:00:00Z"))
        let grant = try adapter.readTokenResponse(answer, client: client, now: issued, previousRefreshToken: nil)
        #expect(grant.refreshToken == nil)
        #expect(grant.expiresAt == issued.adding(milliseconds: 315_359_999_000))
        let transport = ScriptedTransport { _ in .json(409, #"{"error":"user already registered"}"#) }
        let context = makeContext(adapter, transport: transport)
        #expect(try await adapter.didLink(grant: grant, callback: [:], context: context) == "10000000")
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.method == .post)
        #expect(sent.url.absoluteString == "http://vendor.test/v3/users")
        #expect(sent.header("Authorization") == "Bearer 2YotnFZFEjr1zCsicMWpAA")
        #expect(sent.header("Content-Type") == "application/json")
        #expect(try JSONValue.parse(sent.body ?? []) == .object(["member-id": .string("10000000")]))
    }

    @Test func registrationFailuresAndMissingUserRefuseTheLink() async throws {
        let grant = TokenGrant(
            accessToken: Secret("a"), refreshToken: nil, expiresAt: nil, scopes: nil,
            raw: .object(["x_user_id": .int(475)]))
        let refusing = makeContext(adapter, transport: ScriptedTransport { _ in .json(403, "{}") })
        await #expect(throws: VendorError.self) {
            _ = try await adapter.didLink(grant: grant, callback: [:], context: refusing)
        }
        let ok = makeContext(adapter, transport: ScriptedTransport { _ in .json(200, #"{"polar-user-id":475}"#) })
        #expect(try await adapter.didLink(grant: grant, callback: [:], context: ok) == "475")
        let anonymous = TokenGrant(
            accessToken: Secret("a"), refreshToken: nil, expiresAt: nil, scopes: nil, raw: .object([:]))
        await #expect(throws: VendorError.self) {
            _ = try await adapter.didLink(grant: anonymous, callback: [:], context: ok)
        }
    }

    @Test func revokeDeregistersTheUser() async throws {
        let transport = ScriptedTransport { _ in InboundResponse(status: 204) }
        try await adapter.revoke(
            connection: connection(vendorUserID: "475"), context: makeContext(adapter, transport: transport))
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.method == .delete)
        #expect(sent.url.absoluteString == "http://vendor.test/v3/users/475")
        #expect(sent.header("Authorization") == "Bearer access-1")
        // Already deregistered: done.
        let gone = makeContext(adapter, transport: ScriptedTransport { _ in .json(404, "{}") })
        try await adapter.revoke(connection: connection(vendorUserID: "475"), context: gone)
        let refused = makeContext(adapter, transport: ScriptedTransport { _ in .json(403, "{}") })
        await #expect(throws: VendorError.self) {
            try await adapter.revoke(connection: connection(vendorUserID: "475"), context: refused)
        }
    }

    // MARK: exercise

    /// Shaped like `GET /v3/exercises/{id}?samples=true`: local start 08:00 at UTC+2, a dropout in
    /// every series, a 0 bpm glitch, km/h speed, cumulative distance, RR intervals, an unmapped type (7).
    static let exercise = #"""
        {"id":"aQlC83","upload_time":"2026-11-20T07:40:02Z","polar_user":"https://www.polaraccesslink.com/v3/users/475",
         "device":"Polar Vantage V3","device_id":"1111AAAA","start_time":"2026-11-20T08:00:00","start_time_utc_offset":120,
         "duration":"PT5S","calories":3,"distance":12.0,"heart_rate":{"average":122,"maximum":125},"sport":"RUNNING",
         "has_route":false,"detailed_sport_info":"RUNNING",
         "samples":[
          {"recording-rate":1,"sample-type":"0","data":"120,121,null,0,125"},
          {"recording-rate":1,"sample-type":"1","data":"10.8,null,36.0,18.0,9.0"},
          {"recording-rate":1,"sample-type":"2","data":"85,86,87,88,89"},
          {"recording-rate":1,"sample-type":"3","data":"12.5,12.6,null,-3.5,12.9"},
          {"recording-rate":1,"sample-type":"4","data":"200,210,null,230,240"},
          {"recording-rate":1,"sample-type":"10","data":"0.0,3.0,null,9.5,12.0"},
          {"recording-rate":null,"sample-type":"11","data":"800,810,null,790"},
          {"recording-rate":1,"sample-type":"7","data":"1013,1013,1013,1013,1013"}]}
        """#

    @Test func exerciseFetchAndMapping() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.header("Authorization") == "Bearer access-1")
            return .json(200, Self.exercise)
        }
        let context = makeContext(adapter, transport: transport)
        let outcome = try await adapter.fetch(
            PolarAdapter.exerciseTask("aQlC83"), connection: connection(), context: context)
        let sent = try #require(transport.sent.withLock { $0.first })
        #expect(sent.url.absoluteString == "http://vendor.test/v3/exercises/aQlC83?samples=true")
        #expect(outcome.records.map(\.key) == ["exercise:aQlC83"])
        #expect(outcome.cursor?["utc_offset_minutes"] == .int(120))

        let samples = try adapter.map(outcome.records[0], connection: connection(), now: now)
        func series(_ metric: Metric) -> [Sample] { samples.filter { $0.metric == metric } }
        func at(_ text: String) -> Timestamp { Timestamp(rfc3339: text)! }
        // 08:00 local at UTC+2 is 06:00Z; the null emits nothing and the 0 bpm glitch is refused.
        #expect(series(.heartRate).map(\.value.number) == [120, 121, 125])
        #expect(
            series(.heartRate).map(\.start) == [
                at("2026-11-20T06:00:00Z"), at("2026-11-20T06:00:01Z"), at("2026-11-20T06:00:04Z"),
            ])
        // km/h → m/s.
        let speeds = series(.speed).compactMap(\.value.number)
        #expect(speeds.count == 4)
        #expect(zip(speeds, [3, 10, 5, 2.5]).allSatisfy { abs($0 - $1) < 1e-9 })
        #expect(series(.speed).map(\.start)[1] == at("2026-11-20T06:00:02Z"))
        #expect(series(.cadence).count == 5)
        #expect(series(.altitude).map(\.value.number) == [12.5, 12.6, -3.5, 12.9])
        #expect(series(.power).map(\.value.number) == [200, 210, 230, 240])
        // Cumulative distance → what was covered between points; the null point is bridged.
        let distance = series(.distance)
        #expect(distance.map(\.value.number) == [3, 6.5, 2.5])
        #expect(distance[1].start == at("2026-11-20T06:00:01Z"))
        #expect(distance[1].end == at("2026-11-20T06:00:03Z"))
        // RR: each beat where the intervals add up; the null ends the series.
        let rr = series(.rrInterval)
        #expect(rr.map(\.value.number) == [800, 810])
        #expect(rr.map(\.start) == [at("2026-11-20T06:00:00.800Z"), at("2026-11-20T06:00:01.610Z")])
        let mapped = 3 + 4 + 5 + 4 + 4 + 3 + 2  // hr, speed, cadence, altitude, power, distance, rr
        #expect(samples.count == mapped)
        #expect(samples.allSatisfy { $0.source.vendor == "polar" && $0.source.recordID == "aQlC83" })
        #expect(samples.first?.source.device == SourceRef.Device(model: "Polar Vantage V3", serial: "1111AAAA"))
        #expect(try adapter.map(outcome.records[0], connection: connection(), now: now).map(\.id) == samples.map(\.id))
    }

    @Test func exerciseTimesUseTheirOffset() throws {
        // West of UTC: local 08:00 at UTC−5 is 13:00Z; a numeric sample type reads too.
        let west = #"""
            {"id":"w1","start_time":"2026-11-20T08:00:00","start_time_utc_offset":-300,
             "samples":[{"recording-rate":5,"sample-type":0,"data":"90,91"}]}
            """#
        let samples = try adapter.map(
            RawRecord(key: "exercise:w1", body: Array(west.utf8)), connection: connection(), now: now)
        #expect(
            samples.map(\.start) == [
                Timestamp(rfc3339: "2026-11-20T13:00:00Z")!, Timestamp(rfc3339: "2026-11-20T13:00:05Z")!,
            ])
        // A wall-clock time without its offset is refused rather than guessed.
        let unzoned = #"{"id":"u1","start_time":"2026-11-20T08:00:00","samples":[]}"#
        #expect(throws: VendorError.self) {
            try adapter.map(
                RawRecord(key: "exercise:u1", body: Array(unzoned.utf8)), connection: connection(), now: now)
        }
    }

    @Test func exerciseKeysSpelledWithHyphensAreRead() async throws {
        // AccessLink's OpenAPI specification spells exercise keys with hyphens (`start-time`,
        // `start-time-utc-offset`, `device-id`); Polar's newer examples use underscores. Both are read,
        // in the exercise and in its sample series.
        let hyphenated = #"""
            {"id":"h1","device":"Polar Vantage V2","device-id":"2222BBBB","start-time":"2026-11-20T08:00:00",
             "start-time-utc-offset":60,"samples":[{"recording_rate":2,"sample_type":"0","data":"100,101"},
             {"recording-rate":2,"sample-type":"1","data":"36.0,18.0"}]}
            """#
        let transport = ScriptedTransport { _ in .json(200, hyphenated) }
        let outcome = try await adapter.fetch(
            PolarAdapter.exerciseTask("h1"), connection: connection(),
            context: makeContext(adapter, transport: transport))
        #expect(outcome.cursor?["utc_offset_minutes"] == .int(60))
        let samples = try adapter.map(outcome.records[0], connection: connection(), now: now)
        let heartRate = samples.filter { $0.metric == .heartRate }
        #expect(heartRate.map(\.value.number) == [100, 101])
        #expect(
            heartRate.map(\.start) == [
                Timestamp(rfc3339: "2026-11-20T07:00:00Z")!, Timestamp(rfc3339: "2026-11-20T07:00:02Z")!,
            ])
        #expect(samples.filter { $0.metric == .speed }.compactMap(\.value.number) == [10, 5])
        #expect(samples.first?.source.device == SourceRef.Device(model: "Polar Vantage V2", serial: "2222BBBB"))
    }

    @Test func payloadURLOutsideTheAllowedHostsIsRefused() async throws {
        let transport = ScriptedTransport { _ in .json(200, Self.exercise) }
        let context = makeContext(adapter, transport: transport)
        let forged = PolarAdapter.exerciseTask("aQlC83", url: "https://169.254.169.254/latest/meta-data")
        do {
            _ = try await adapter.fetch(forged, connection: connection(), context: context)
            Issue.record("forbidden URL fetched")
        } catch {
            guard case .forbiddenURL = error else {
                Issue.record("expected forbiddenURL, got \(error)")
                return
            }
        }
        #expect(transport.sent.withLock { $0.isEmpty })
        // A URL on a configured host is fetched as given, with samples asked for.
        let allowed = PolarAdapter.exerciseTask("aQlC83", url: "http://vendor.test/v3/exercises/aQlC83")
        _ = try await adapter.fetch(allowed, connection: connection(), context: context)
        #expect(
            transport.sent.withLock { $0.last?.url.absoluteString }
                == "http://vendor.test/v3/exercises/aQlC83?samples=true")
    }

    // MARK: continuous heart rate and sleep

    static let heartRateDay = #"""
        {"polar_user":"https://www.polaraccesslink.com/v3/users/475","date":"2026-11-20",
         "heart_rate_samples":[{"heart_rate":63,"sample_time":"00:02:08"},{"heart_rate":0,"sample_time":"00:07:08"},
                               {"heart_rate":78,"sample_time":"12:15:42"}]}
        """#
    static let sleepNight = #"""
        {"polar_user":"https://www.polaraccesslink.com/v3/users/475","date":"2026-11-20",
         "sleep_start_time":"2026-11-19T23:10:00+01:00","sleep_end_time":"2026-11-20T07:05:00+01:00",
         "device_id":"1111AAAA","light_sleep":14000,"deep_sleep":6000,"rem_sleep":5000,"sleep_score":82,
         "hypnogram":{"00:30":4,"23:20":2,"01:30":1,"23:10":0,"02:00":5,"23:50":3,"02:30":2},
         "heart_rate_samples":{"23:15":62,"00:15":58}}
        """#

    @Test func heartRateDayTakesItsOffsetFromThatNightsSleep() async throws {
        let transport = ScriptedTransport { request in
            switch request.url.path {
            case "/v3/users/continuous-heart-rate/2026-11-20": .json(200, Self.heartRateDay)
            case "/v3/users/sleep/2026-11-20": .json(200, Self.sleepNight)
            default: .json(404, "{}")
            }
        }
        let context = makeContext(adapter, transport: transport)
        let outcome = try await adapter.fetch(
            PolarAdapter.heartRateTask("2026-11-20"), connection: connection(), context: context)
        #expect(outcome.records.map(\.key) == ["heartrate:2026-11-20", "sleep:2026-11-20"])
        #expect(
            outcome.cursor == .object(["utc_offset_minutes": .int(60), "utc_offset_date": .string("2026-11-20")]))

        let hr = try adapter.map(outcome.records[0], connection: connection(), now: now)
        // Local midnight at UTC+1 is 23:00Z the day before; the 0 bpm reading is refused.
        #expect(hr.map(\.value.number) == [63, 78])
        #expect(
            hr.map(\.start) == [
                Timestamp(rfc3339: "2026-11-19T23:02:08Z")!, Timestamp(rfc3339: "2026-11-20T11:15:42Z")!,
            ])
        #expect(hr.allSatisfy { $0.source.recordID == "continuous-heart-rate/2026-11-20" })

        let stages = try adapter.map(outcome.records[1], connection: connection(), now: now)
        #expect(stages.allSatisfy { $0.metric == .sleepStage && $0.quality == .vendorComputed })
        let expected: [(String, String, String)] = [
            ("awake", "2026-11-19T22:10:00Z", "2026-11-19T22:20:00Z"),
            ("light", "2026-11-19T22:20:00Z", "2026-11-19T23:30:00Z"),  // codes 2 and 3 merge
            ("deep", "2026-11-19T23:30:00Z", "2026-11-20T00:30:00Z"),  // after midnight local
            ("rem", "2026-11-20T00:30:00Z", "2026-11-20T01:00:00Z"),  // ended by an unrecognised stage
            ("light", "2026-11-20T01:30:00Z", "2026-11-20T06:05:00Z"),  // the last lasts until sleep_end_time
        ]
        #expect(stages.count == expected.count)
        for (sample, (stage, start, end)) in zip(stages, expected) {
            #expect(sample.value == .category(stage))
            #expect(sample.start == Timestamp(rfc3339: start))
            #expect(sample.end == Timestamp(rfc3339: end))
        }
    }

    @Test func heartRateDayWithoutSleepUsesTheRecentOffsetOrStaysUnmapped() async throws {
        let transport = ScriptedTransport { request in
            request.url.path.contains("continuous-heart-rate")
                ? .json(200, Self.heartRateDay) : InboundResponse(status: 204)
        }
        let context = makeContext(adapter, transport: transport)
        var known = connection()
        known.cursor = .object(["utc_offset_minutes": .int(-300), "utc_offset_date": .string("2026-11-18")])
        let recent = try await adapter.fetch(
            PolarAdapter.heartRateTask("2026-11-20"), connection: known, context: context)
        #expect(recent.records.map(\.key) == ["heartrate:2026-11-20"])
        #expect(recent.cursor == nil)
        let mapped = try adapter.map(recent.records[0], connection: known, now: now)
        #expect(mapped.first?.start == Timestamp(rfc3339: "2026-11-20T05:02:08Z"))

        let unknown = try await adapter.fetch(
            PolarAdapter.heartRateTask("2026-11-20"), connection: connection(), context: context)
        #expect(unknown.records.count == 1)
        #expect(try adapter.map(unknown.records[0], connection: connection(), now: now).isEmpty)

        let nothing = ScriptedTransport { _ in .json(404, #"{"error":"no data"}"#) }
        let empty = try await adapter.fetch(
            PolarAdapter.heartRateTask("2026-11-20"), connection: connection(),
            context: makeContext(adapter, transport: nothing))
        #expect(empty.records.isEmpty)
        #expect(nothing.sent.withLock { $0.count } == 1)
    }

    // MARK: listing, backfill, subscription, rate limits

    @Test func listingFollowsUpExercisesInsideTheWindow() async throws {
        let list = #"""
            [{"id":"e1","start_time":"2026-11-10T07:00:00","start_time_utc_offset":60},
             {"id":"e2","start_time":"2026-11-18T19:30:00","start_time_utc_offset":120},
             {"id":"e3","start_time":"2026-10-01T07:00:00","start_time_utc_offset":120}]
            """#
        let transport = ScriptedTransport { _ in .json(200, list) }
        let from = Timestamp(rfc3339: "2026-11-01T00:00:00Z")!
        let to = Timestamp(rfc3339: "2026-11-20T00:00:00Z")!
        let tasks = adapter.backfillTasks(from: from, to: to, connection: connection())
        #expect(tasks.first?.kind == "exercises")
        #expect(tasks.dropFirst().map(\.key).first == "heartrate:2026-11-01")
        #expect(tasks.dropFirst().map(\.key).last == "heartrate:2026-11-20")
        #expect(tasks.count == 1 + 20)
        let outcome = try await adapter.fetch(
            tasks[0], connection: connection(), context: makeContext(adapter, transport: transport))
        #expect(outcome.followUps == [PolarAdapter.exerciseTask("e1"), PolarAdapter.exerciseTask("e2")])
        #expect(outcome.cursor == .object(["utc_offset_minutes": .int(120), "utc_offset_date": .string("2026-11-18")]))
        // A long window is cut to Polar's horizon.
        let long = adapter.backfillTasks(
            from: Timestamp(rfc3339: "2026-01-01T00:00:00Z")!, to: to, connection: connection())
        #expect(long.count == 1 + 31)
    }

    @Test func webhookIsCreatedOnceAndItsKeyKept() async throws {
        let created =
            #"{"data":{"id":"abdf33","events":["EXERCISE","SLEEP","CONTINUOUS_HEART_RATE"],"url":"https://pulsegate.test/v1/webhooks/polar","signature_secret_key":"abe1f3ae-fd33-11e8-8eb2-f2801f1b9fd1"}}"#
        let transport = ScriptedTransport { request in
            request.method == .get ? .json(200, #"{"data":[]}"#) : .json(201, created)
        }
        let state = MemoryVendorState()
        let context = makeContext(adapter, transport: transport, state: state)
        try await adapter.maintainSubscriptions(context: context)
        let sent = transport.sent.withLock { $0 }
        #expect(sent.map(\.method) == [.get, .post])
        #expect(
            sent.allSatisfy {
                $0.header("Authorization") == OAuthClient.basicAuthorization("test-client", Secret("test-secret"))
            })
        #expect(sent[1].url.absoluteString == "http://vendor.test/v3/webhooks")
        let body = try JSONValue.parse(sent[1].body ?? [])
        #expect(body["url"] == .string("https://pulsegate.test/v1/webhooks/polar"))
        #expect(body["events"] == .array([.string("EXERCISE"), .string("SLEEP"), .string("CONTINUOUS_HEART_RATE")]))
        #expect(try await state.secret("signature_secret_key")?.text == "abe1f3ae-fd33-11e8-8eb2-f2801f1b9fd1")
        #expect(try await state.value("webhook_id") == .string("abdf33"))

        // Next time the webhook is listed: nothing is created.
        let listed = ScriptedTransport { _ in
            .json(
                200,
                #"{"data":[{"id":"abdf33","events":["EXERCISE"],"url":"https://pulsegate.test/v1/webhooks/polar"}]}"#)
        }
        try await adapter.maintainSubscriptions(context: makeContext(adapter, transport: listed, state: state))
        #expect(listed.sent.withLock { $0.map(\.method) } == [.get])
    }

    @Test func rateLimitHeadersPauseUntilTheSpentWindowResets() throws {
        let reader = try #require(adapter.rateLimitHeaders)
        func answer(_ usage: String, _ limit: String, _ reset: String?) -> InboundResponse {
            var headers = [("RateLimit-Usage", usage), ("RateLimit-Limit", limit)]
            if let reset { headers.append(("RateLimit-Reset", reset)) }
            return .json(200, "[]", headers: headers.map { (name: $0.0, value: $0.1) })
        }
        #expect(reader(answer("520, 1200", "520, 5100", "312, 40000"), now) == .seconds(312))
        #expect(reader(answer("10, 5100", "520, 5100", "312, 40000"), now) == .seconds(40000))
        #expect(reader(answer("520, 1200", "520, 5100", nil), now) == .seconds(900))
        #expect(reader(answer("10, 100", "520, 5100", "312, 40000"), now) == nil)
        #expect(reader(InboundResponse(status: 200), now) == nil)
    }
}

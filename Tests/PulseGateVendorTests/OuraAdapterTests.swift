import Crypto
import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateTestSupport
import PulseGateVendorKit
import PulseGateVendorOura
import Synchronization
import Testing

@Suite struct OuraAdapterTests {
    let adapter = try! OuraAdapter()

    static func at(_ text: String) -> Timestamp { Timestamp(rfc3339: text)! }

    @Test func manifestLoads() {
        let manifest = adapter.manifest
        #expect(manifest.id == "oura")
        #expect(manifest.oauth.scopeSeparator == " ")
        #expect(manifest.oauth.pkce == false)
        #expect(manifest.oauth.clientAuthentication == .body)
        #expect(manifest.oauth.refreshTokens == .rotating)
        #expect(manifest.rateLimits == [RateLimitRule(scope: .app, requests: 5000, seconds: 300)])
        #expect(manifest.urls["authorize"] == "https://cloud.ouraring.com/oauth/authorize")
        #expect(manifest.urls["token"] == "https://api.ouraring.com/oauth/token")
        #expect(manifest.urls["revoke"] == "https://api.ouraring.com/oauth/revoke")
        #expect(manifest.metrics.contains("hrv_rmssd") && manifest.metrics.contains("sleep_stage"))
    }

    // MARK: webhook signature (vendor-vectors B3)

    static let b3Body =
        #"{"event_type":"create","data_type":"daily_sleep","object_id":"8f9a5221-639e-4a85-81cb-4065ef23f979","event_time":"2024-01-01T08:00:00+00:00","user_id":"user-123"}"#
    static let b3Signature = "9827C4908B9859E005BB861CCFE69B55B8E842580A0AF48E2A323D51C911D13D"
    static let b3Time = Timestamp(millisecondsSinceEpoch: 1_704_096_000_000)

    func verdict(
        _ body: String, signature: String?, timestamp: String?, secret: String = "test-secret",
        receivedAt: Timestamp = Self.b3Time.adding(milliseconds: 12_000)
    ) async -> WebhookVerdict {
        var headers = [(name: String, value: String)]()
        if let signature { headers.append(("X-Oura-Signature", signature)) }
        if let timestamp { headers.append(("x-oura-timestamp", timestamp)) }
        let context = makeContext(adapter, clientSecret: secret)
        return await adapter.verify(webhook(body, headers: headers, at: receivedAt), context: context)
    }

    static func label(_ verdict: WebhookVerdict) -> String? {
        if case .rejected(_, let label) = verdict { return label }
        return nil
    }

    @Test func signatureVectorVerifiesInEitherCase() async {
        #expect(await verdict(Self.b3Body, signature: Self.b3Signature, timestamp: "1704096000") == .authentic)
        #expect(
            await verdict(Self.b3Body, signature: Self.b3Signature.lowercased(), timestamp: "1704096000")
                == .authentic)
    }

    @Test func signatureRefusesOtherBytesSecretsAndTimes() async {
        // The same JSON re-serialized with a space: other bytes, so another MAC.
        let spaced = Self.b3Body.replacingOccurrences(of: "\"event_type\":", with: "\"event_type\": ")
        #expect(
            Self.label(await verdict(spaced, signature: Self.b3Signature, timestamp: "1704096000"))
                == "bad_signature")
        #expect(
            Self.label(
                await verdict(Self.b3Body, signature: Self.b3Signature, timestamp: "1704096000", secret: "other"))
                == "bad_signature")
        // The timestamp is part of the signed message.
        #expect(
            Self.label(await verdict(Self.b3Body, signature: Self.b3Signature, timestamp: "1704096001"))
                == "bad_signature")
        let late = Self.b3Time.adding(milliseconds: 301_000)
        #expect(
            Self.label(
                await verdict(Self.b3Body, signature: Self.b3Signature, timestamp: "1704096000", receivedAt: late))
                == "stale")
        let early = Self.b3Time.adding(milliseconds: -301_000)
        #expect(
            Self.label(
                await verdict(Self.b3Body, signature: Self.b3Signature, timestamp: "1704096000", receivedAt: early))
                == "stale")
        #expect(
            Self.label(await verdict(Self.b3Body, signature: nil, timestamp: "1704096000")) == "missing_signature")
        #expect(
            Self.label(await verdict(Self.b3Body, signature: Self.b3Signature, timestamp: nil))
                == "missing_signature")
        #expect(Self.label(await verdict(Self.b3Body, signature: "zz", timestamp: "1704096000")) == "bad_signature")
    }

    /// The header's format is not pinned down by Oura: whatever text arrives is signed as is, and read as
    /// epoch seconds, epoch milliseconds or RFC 3339 for the freshness check.
    @Test func signatureTimestampFormats() async {
        func sign(_ stamp: String) -> String {
            let mac = HMAC<SHA256>.authenticationCode(
                for: Array((stamp + Self.b3Body).utf8), using: SymmetricKey(data: Array("test-secret".utf8)))
            return mac.map { String(format: "%02X", $0) }.joined()
        }
        for stamp in ["2024-01-01T08:00:00+00:00", "1704096000000", "2024-01-01T08:00:00Z"] {
            #expect(await verdict(Self.b3Body, signature: sign(stamp), timestamp: stamp) == .authentic)
        }
        let later = Self.b3Time.adding(milliseconds: 3_600_000)
        #expect(
            Self.label(
                await verdict(
                    Self.b3Body, signature: sign("2024-01-01T08:00:00+00:00"), timestamp: "2024-01-01T08:00:00+00:00",
                    receivedAt: later)) == "stale")
        #expect(
            Self.label(await verdict(Self.b3Body, signature: sign("yesterday"), timestamp: "yesterday"))
                == "malformed_timestamp")
    }

    // MARK: verification handshake (vendor-vectors A15)

    @Test func handshakeEchoesChallengeOnlyWithOurToken() async throws {
        let context = makeContext(adapter, secrets: ["verification_token": Secret("s3cret-shared-with-oura")])
        let query = ["verification_token": "s3cret-shared-with-oura", "challenge": "Zm9vYmFy-4711"]
        let answer = try #require(await adapter.handshake(webhook("", method: "GET", query: query), context: context))
        #expect(answer.status == 200)
        #expect(answer.contentType == "application/json")
        #expect(try JSONValue.parse(answer.body) == .object(["challenge": .string("Zm9vYmFy-4711")]))
        var wrong = query
        wrong["verification_token"] = "s3cret-shared-with-ourA"
        #expect(await adapter.handshake(webhook("", method: "GET", query: wrong), context: context)?.status == 401)
        var missing = query
        missing["verification_token"] = nil
        #expect(await adapter.handshake(webhook("", method: "GET", query: missing), context: context)?.status == 401)
        #expect(
            await adapter.handshake(
                webhook("", method: "GET", query: ["verification_token": "s3cret-shared-with-oura"]), context: context)?
                .status == 400)
        // No token configured: nothing can match.
        #expect(
            await adapter.handshake(webhook("", method: "GET", query: query), context: makeContext(adapter))?.status
                == 401)
        // A notification is not a handshake.
        #expect(await adapter.handshake(webhook(Self.b3Body), context: context) == nil)
    }

    // MARK: notifications

    static func event(
        _ eventType: String, _ dataType: String, objectID: String = "9a8d4b2c-1f03-4c2e-9d7a-55e2b6c1f0aa"
    )
        -> [UInt8]
    {
        Array(
            #"{"event_type":"\#(eventType)","data_type":"\#(dataType)","object_id":"\#(objectID)","event_time":"2026-11-20T07:31:02+00:00","user_id":"oura-user-77"}"#
                .utf8)
    }

    @Test func notificationsFetchMappedDocumentsAndTombstoneDeletes() throws {
        let id = "9a8d4b2c-1f03-4c2e-9d7a-55e2b6c1f0aa"
        #expect(
            try adapter.notifications(in: Self.event("update", "sleep")) == [
                VendorNotification(
                    vendorUserID: "oura-user-77",
                    action: .fetch(
                        FetchTask(
                            kind: "document", key: "sleep:\(id)",
                            parameters: .object(["data_type": .string("sleep"), "id": .string(id)]))))
            ])
        #expect(
            try adapter.notifications(in: Self.event("create", "daily_activity")).first?.action
                == .fetch(OuraAdapter.documentTask("daily_activity", id)))
        #expect(
            try adapter.notifications(in: Self.event("delete", "workout")).first?.action == .deleted(recordID: id))
        // Data types pulsegate does not map (B3 is a daily_sleep event) are ignored, whatever the event.
        guard case .ignore = try adapter.notifications(in: Array(Self.b3Body.utf8)).first?.action else {
            Issue.record("daily_sleep not ignored"); return
        }
        guard case .ignore = try adapter.notifications(in: Self.event("delete", "daily_readiness")).first?.action
        else { Issue.record("daily_readiness delete not ignored"); return }
        #expect(throws: VendorError.self) {
            try adapter.notifications(in: Array(#"{"event_type":"create","data_type":"sleep","object_id":"x"}"#.utf8))
        }
        // An id that would leave the URL path is refused before any fetch is queued.
        #expect(throws: VendorError.self) {
            try adapter.notifications(in: Self.event("create", "sleep", objectID: "../../oauth/revoke"))
        }
        #expect(throws: VendorError.self) { try adapter.notifications(in: Array("not json".utf8)) }
    }

    // MARK: mapping

    static let heartratePage = #"""
        {"data":[
          {"bpm":61,"source":"awake","timestamp":"2026-11-20T08:00:12+02:00"},
          {"bpm":58,"source":"rest","timestamp":"2026-11-20T06:05:12+00:00"},
          {"bpm":49,"source":"sleep","timestamp":"2026-11-20T06:10:12+00:00"},
          {"bpm":0,"source":"awake","timestamp":"2026-11-20T06:15:12+00:00"},
          {"bpm":142,"source":"workout","timestamp_unix":1795155612000}
        ],"next_token":null}
        """#

    static func heartrateRecord(_ page: String, key: String = "heartrate:1-2") throws -> RawRecord {
        let rows = try JSONValue.parse(Array(page.utf8))["data"]!
        return RawRecord(key: key, body: JSONValue.object(["data_type": .string("heartrate"), "data": rows]).bytes)
    }

    @Test func heartrateRowsMapInUTCWithoutSleepRows() throws {
        let now = Self.at("2026-11-20T12:00:00Z")
        let samples = try adapter.map(try Self.heartrateRecord(Self.heartratePage), connection: connection(), now: now)
        // The sleep row belongs to the sleep document; the 0 bpm dropout is refused by the schema.
        #expect(samples.map(\.value.number) == [61, 58, 142])
        #expect(samples.allSatisfy { $0.metric == .heartRate })
        #expect(samples[0].start == Self.at("2026-11-20T06:00:12Z"))
        #expect(samples[2].start == Timestamp(millisecondsSinceEpoch: 1_795_155_612_000))
        #expect(
            samples.allSatisfy { $0.source.recordID == nil && $0.source.vendor == "oura" && $0.subject == "member-1" })
        // The same row fetched in another (overlapping) range is the same sample.
        let again = try adapter.map(
            try Self.heartrateRecord(Self.heartratePage, key: "heartrate:0-9"), connection: connection(), now: now)
        #expect(again.map(\.id) == samples.map(\.id))
    }

    /// A night (shortened) as Oura's sleep route returns it: local times with their offset.
    static let sleepDocument = #"""
        {"id":"2-5daccc095220cc5493a4e9c2b681ca941e","type":"long_sleep","day":"2026-11-20",
         "bedtime_start":"2026-11-19T23:07:30+01:00","bedtime_end":"2026-11-19T23:54:30+01:00",
         "sleep_phase_5_min":"4422113322","time_in_bed":2820,"average_hrv":49,"lowest_heart_rate":52,
         "average_heart_rate":57.125,"low_battery_alert":false,"period":0,
         "heart_rate":{"interval":300.0,"items":[62,null,58,0,55],"timestamp":"2026-11-19T23:07:30.000+01:00"},
         "hrv":{"interval":300.0,"items":[null,41,0,57],"timestamp":"2026-11-19T23:07:30.000+01:00"},
         "readiness":{"contributors":{},"score":80}}
        """#

    static func document(_ dataType: String, _ text: String, fetchedAt: String = "2026-11-20T12:00:00.000Z")
        throws -> RawRecord
    {
        let document = try JSONValue.parse(Array(text.utf8))
        let body = JSONValue.object([
            "data_type": .string(dataType), "fetched_at": .string(fetchedAt), "document": document,
        ])
        return RawRecord(key: "\(dataType):\(document["id"]?.string ?? "?")", body: body.bytes)
    }

    @Test func sleepMapsStagesSeriesAndRestingHeartRate() throws {
        let now = Self.at("2026-11-20T12:00:00Z")
        let samples = try adapter.map(
            try Self.document("sleep", Self.sleepDocument), connection: connection(), now: now)
        let stages = samples.filter { $0.metric == .sleepStage }
        #expect(stages.map(\.value) == ["awake", "light", "deep", "rem", "light"].map { Sample.Value.category($0) })
        #expect(
            stages.map(\.start)
                == ["22:07:30", "22:17:30", "22:27:30", "22:37:30", "22:47:30"].map {
                    Self.at("2026-11-19T\($0)Z")
                })
        // Runs end where the next begins; the last 5-minute slot is cut at bedtime_end.
        #expect(
            stages.map(\.end)
                == ["22:17:30", "22:27:30", "22:37:30", "22:47:30", "22:54:30"].map {
                    Self.at("2026-11-19T\($0)Z")
                })
        #expect(stages.allSatisfy { $0.quality == .vendorComputed })

        let heartRate = samples.filter { $0.metric == .heartRate }
        #expect(heartRate.map(\.value.number) == [62, 58, 55])
        #expect(heartRate.map(\.start) == ["22:07:30", "22:17:30", "22:27:30"].map { Self.at("2026-11-19T\($0)Z") })

        let hrv = samples.filter { $0.metric == .hrvRMSSD }
        #expect(hrv.map(\.value.number) == [41, 57])
        #expect(hrv.map(\.start) == ["22:12:30", "22:22:30"].map { Self.at("2026-11-19T\($0)Z") })

        let resting = samples.filter { $0.metric == .restingHeartRate }
        #expect(resting.map(\.value.number) == [52])
        #expect(resting.first?.start == Self.at("2026-11-19T22:54:30Z"))
        #expect(samples.allSatisfy { $0.source.recordID == "2-5daccc095220cc5493a4e9c2b681ca941e" })
        #expect(samples.count == 11)  // 5 stages, 3 heart rates, 2 RMSSD, 1 resting
    }

    @Test func rejectedAndDeletedSleepsMapLess() throws {
        let now = Self.at("2026-11-20T12:00:00Z")
        let rest = Self.sleepDocument.replacingOccurrences(of: "\"long_sleep\"", with: "\"rest\"")
        let restSamples = try adapter.map(try Self.document("sleep", rest), connection: connection(), now: now)
        #expect(Set(restSamples.map(\.metric.name)) == ["heart_rate", "hrv_rmssd"])
        let nap = Self.sleepDocument.replacingOccurrences(of: "\"long_sleep\"", with: "\"sleep\"")
        let napSamples = try adapter.map(try Self.document("sleep", nap), connection: connection(), now: now)
        #expect(!napSamples.contains { $0.metric == .restingHeartRate })
        #expect(napSamples.contains { $0.metric == .sleepStage })
        let deleted = Self.sleepDocument.replacingOccurrences(of: "\"long_sleep\"", with: "\"deleted\"")
        #expect(try adapter.map(try Self.document("sleep", deleted), connection: connection(), now: now).isEmpty)
        let broken = Self.sleepDocument.replacingOccurrences(of: "2026-11-19T23:54:30+01:00", with: "23:54")
        #expect(throws: VendorError.self) {
            try adapter.map(try Self.document("sleep", broken), connection: connection(), now: now)
        }
    }

    /// Oura's activity day: 24 hours from 4 a.m. local time (here UTC−5).
    static let dailyActivity = #"""
        {"id":"c1b5e7d2-61aa-4f0b-8b7e-0d4b7f3e2a19","day":"2026-11-18","score":84,"steps":9241,
         "active_calories":512,"total_calories":2478,"equivalent_walking_distance":8120,"class_5_min":"0011122334",
         "met":{"interval":60.0,"items":[0.9,1.1,3.2],"timestamp":"2026-11-18T04:00:00.000-05:00"},
         "timestamp":"2026-11-18T04:00:00-05:00"}
        """#

    @Test func dailyActivityMapsTheWholeDayOnceItIsOver() throws {
        let now = Self.at("2026-11-20T12:00:00Z")
        let record = try Self.document("daily_activity", Self.dailyActivity, fetchedAt: "2026-11-19T09:00:00.000Z")
        let samples = try adapter.map(record, connection: connection(), now: now)
        #expect(samples.map(\.metric) == [.stepCount, .activeEnergy])
        #expect(samples.map(\.value.number) == [9241, 512])
        #expect(samples.allSatisfy { $0.start == Self.at("2026-11-18T09:00:00Z") })
        #expect(samples.allSatisfy { $0.end == Self.at("2026-11-19T09:00:00Z") })
        #expect(samples.allSatisfy { $0.quality == .vendorComputed })
        // Read a second before the day ended: partial totals, nothing mapped — also on a later replay.
        let early = try Self.document("daily_activity", Self.dailyActivity, fetchedAt: "2026-11-19T08:59:59.000Z")
        #expect(try adapter.map(early, connection: connection(), now: now).isEmpty)
    }

    @Test func workoutMapsItsDistance() throws {
        let workout =
            #"{"id":"w-5512","activity":"walking","calories":210.5,"day":"2026-11-19","distance":4210.4,"intensity":"moderate","source":"autodetected","start_datetime":"2026-11-19T17:10:00+01:00","end_datetime":"2026-11-19T17:52:00+01:00"}"#
        let samples = try adapter.map(
            try Self.document("workout", workout), connection: connection(), now: Self.at("2026-11-20T12:00:00Z"))
        #expect(samples.map(\.metric) == [.distance])
        #expect(samples.first?.value.number == 4210.4)
        #expect(samples.first?.start == Self.at("2026-11-19T16:10:00Z"))
        #expect(samples.first?.end == Self.at("2026-11-19T16:52:00Z"))
    }

    // MARK: fetch

    @Test func documentFetchOfARunningDayAsksForYesterdayAndHeartRate() async throws {
        let today =
            #"{"id":"d-20","day":"2026-11-20","steps":4100,"active_calories":190,"timestamp":"2026-11-20T04:00:00-05:00"}"#
        let transport = ScriptedTransport { request in
            #expect(request.url.path == "/v2/usercollection/daily_activity/d-20")
            #expect(request.header("Authorization") == "Bearer access-1")
            return .json(200, today)
        }
        let now = Self.at("2026-11-20T12:02:10Z")
        let context = makeContext(adapter, transport: transport, now: now)
        let outcome = try await adapter.fetch(
            OuraAdapter.documentTask("daily_activity", "d-20"), connection: connection(), context: context)
        #expect(outcome.records.map(\.key) == ["daily_activity:d-20"])
        #expect(try adapter.map(outcome.records[0], connection: connection(), now: now).isEmpty)
        // No heart rate fetched yet: the last day, up to now floored to 5 minutes.
        let to = Self.at("2026-11-20T12:00:00Z").millisecondsSinceEpoch
        #expect(
            outcome.followUps == [
                OuraAdapter.heartrateTask(start: to - 86_400_000, end: to),
                OuraAdapter.listTask("daily_activity", startDate: "2026-11-19", endDate: "2026-11-20"),
            ])

        // With a cursor, the catch-up starts an hour before the last range's end.
        var seen = connection()
        seen.cursor = .object(["heartrate_until": .string("2026-11-20T09:30:00.000Z")])
        let again = try await adapter.fetch(
            OuraAdapter.documentTask("daily_activity", "d-20"), connection: seen, context: context)
        #expect(
            again.followUps.first
                == OuraAdapter.heartrateTask(start: Self.at("2026-11-20T08:30:00Z").millisecondsSinceEpoch, end: to))
    }

    @Test func deletedSleepDocumentBecomesATombstone() async throws {
        let transport = ScriptedTransport { _ in
            .json(
                200,
                #"{"id":"s-1","type":"deleted","bedtime_start":"2026-11-19T23:00:00+01:00","bedtime_end":"2026-11-20T07:00:00+01:00"}"#
            )
        }
        let outcome = try await adapter.fetch(
            OuraAdapter.documentTask("sleep", "s-1"), connection: connection(),
            context: makeContext(adapter, transport: transport))
        #expect(outcome.records.isEmpty)
        #expect(outcome.deletedRecordIDs == ["s-1"])
    }

    @Test func heartratePagesFollowNextTokenThenAdvanceTheCursor() async throws {
        let start = Self.at("2026-11-19T00:00:00Z").millisecondsSinceEpoch
        let end = start + 86_400_000
        let transport = ScriptedTransport { request in
            let query = FormEncoding.decode(request.url.query ?? "")
            #expect(request.url.path == "/v2/usercollection/heartrate")
            #expect(query["start_datetime"] == "2026-11-19T00:00:00Z")
            #expect(query["end_datetime"] == "2026-11-20T00:00:00Z")
            if query["next_token"] == "tok-2" {
                return .json(
                    200,
                    #"{"data":[{"bpm":70,"source":"awake","timestamp":"2026-11-19T18:00:00+00:00"}],"next_token":null}"#
                )
            }
            return .json(
                200,
                Self.heartratePage.replacingOccurrences(of: "\"next_token\":null", with: "\"next_token\":\"tok-2\""))
        }
        let context = makeContext(adapter, transport: transport, now: Self.at("2026-11-20T12:00:00Z"))
        let first = try await adapter.fetch(
            OuraAdapter.heartrateTask(start: start, end: end), connection: connection(), context: context)
        #expect(first.records.count == 1)
        #expect(first.cursor == nil)
        let next = try #require(first.followUps.first)
        #expect(first.followUps.count == 1)
        #expect(next.kind == "heartrate")
        #expect(next.key == "heartrate:\(start)-\(end):p2")
        #expect(next.parameters["next_token"] == .string("tok-2"))
        let second = try await adapter.fetch(next, connection: connection(), context: context)
        #expect(second.followUps.isEmpty)
        #expect(second.records.map(\.key) == ["heartrate:\(start)-\(end):p2"])
        #expect(second.cursor?["heartrate_until"] == .string("2026-11-20T00:00:00.000Z"))
        // An older range finishing later does not move the cursor back.
        var ahead = connection()
        ahead.cursor = .object(["heartrate_until": .string("2026-11-20T06:00:00.000Z")])
        #expect(try await adapter.fetch(next, connection: ahead, context: context).cursor == nil)
    }

    @Test func listingsPageAndKeepEachDocument() async throws {
        let transport = ScriptedTransport { request in
            let query = FormEncoding.decode(request.url.query ?? "")
            #expect(request.url.path == "/v2/usercollection/sleep")
            #expect(query["start_date"] == "2026-10-01" && query["end_date"] == "2026-10-31")
            if query["next_token"] == nil {
                return .json(200, #"{"data":[\#(Self.sleepDocument)],"next_token":"n2"}"#)
            }
            return .json(
                200,
                #"{"data":[{"id":"s-del","type":"deleted","bedtime_start":"2026-10-02T23:00:00+01:00","bedtime_end":"2026-10-03T07:00:00+01:00"}],"next_token":null}"#
            )
        }
        let context = makeContext(adapter, transport: transport, now: Self.at("2026-11-20T12:00:00Z"))
        let first = try await adapter.fetch(
            OuraAdapter.listTask("sleep", startDate: "2026-10-01", endDate: "2026-10-31"), connection: connection(),
            context: context)
        #expect(first.records.map(\.key) == ["sleep:2-5daccc095220cc5493a4e9c2b681ca941e"])
        #expect(try adapter.map(first.records[0], connection: connection(), now: context.now).count == 11)
        let next = try #require(first.followUps.first)
        #expect(next.key == "list:sleep:2026-10-01..2026-10-31:p2")
        let second = try await adapter.fetch(next, connection: connection(), context: context)
        #expect(second.records.isEmpty && second.followUps.isEmpty)
        #expect(second.deletedRecordIDs == ["s-del"])
    }

    @Test func backfillSplitsHeartRateIntoDaysAndListsEveryCollection() throws {
        let from = Self.at("2026-10-21T10:00:00Z")
        let to = Self.at("2026-11-20T10:00:00Z")
        let tasks = adapter.backfillTasks(from: from, to: to, connection: connection())
        let heartrate = tasks.filter { $0.kind == "heartrate" }
        #expect(heartrate.count == 30)
        var cursor = from.millisecondsSinceEpoch
        for task in heartrate {
            let start = try #require(task.parameters["start"]?.int)
            let end = try #require(task.parameters["end"]?.int)
            #expect(start == cursor && end > start && end - start <= 86_400_000)
            cursor = end
        }
        #expect(cursor == to.millisecondsSinceEpoch)
        let lists = tasks.filter { $0.kind == "list" }
        #expect(Set(lists.compactMap { $0.parameters["data_type"]?.string }) == ["sleep", "daily_activity", "workout"])
        // Widened by a day each side for the user's offset; 32 days make two listings per collection.
        let sleep = lists.filter { $0.parameters["data_type"] == .string("sleep") }
        #expect(sleep.map { $0.parameters["start_date"]?.string } == ["2026-10-20", "2026-11-19"])
        #expect(sleep.map { $0.parameters["end_date"]?.string } == ["2026-11-19", "2026-11-21"])
        // Scopes the user did not grant are not asked for.
        var dailyOnly = connection()
        dailyOnly.scopes = ["daily"]
        let limited = adapter.backfillTasks(from: from, to: to, connection: dailyOnly)
        #expect(!limited.contains { $0.kind == "heartrate" || $0.parameters["data_type"] == .string("workout") })
        #expect(!limited.isEmpty)
    }

    @Test func reconcileReachesBackAtMostThirtyDays() throws {
        let tasks = adapter.reconcileTasks(since: Timestamp(millisecondsSinceEpoch: 0), connection: connection())
        let starts = tasks.filter { $0.kind == "heartrate" }.compactMap { $0.parameters["start"]?.int }
        let earliest = try #require(starts.min())
        let expected = Timestamp.now.millisecondsSinceEpoch - 30 * 86_400_000
        #expect(abs(earliest - expected) < 60_000)
    }

    // MARK: link and unlink

    @Test func linkReadsThePersonalInfoID() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.url.path == "/v2/usercollection/personal_info")
            #expect(request.header("Authorization") == "Bearer fresh-token")
            return .json(200, #"{"id":"oura-user-77","age":31,"weight":61.5,"height":1.7,"biological_sex":"female"}"#)
        }
        let grant = TokenGrant(
            accessToken: Secret("fresh-token"), refreshToken: Secret("r"), expiresAt: nil, scopes: nil)
        let id = try await adapter.didLink(
            grant: grant, callback: [:], context: makeContext(adapter, transport: transport))
        #expect(id == "oura-user-77")
    }

    @Test func revokeSendsTheTokenInTheQuery() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.method == .post)
            #expect(request.url.path == "/oauth/revoke")
            #expect(FormEncoding.decode(request.url.query ?? "")["access_token"] == "access-1")
            return .json(401, #"{"detail":"invalid token"}"#)
        }
        try await adapter.revoke(connection: connection(), context: makeContext(adapter, transport: transport))
        #expect(transport.sent.withLock { $0.count } == 1)
    }

    // MARK: subscriptions

    @Test func subscriptionsRenewOnlyNearExpiryAndCreateMissingOnes() async throws {
        let callback = "https://pulsegate.test/v1/webhooks/oura"
        let existing = #"""
            [{"id":"a1f3","callback_url":"\#(callback)","event_type":"create","data_type":"sleep","expiration_time":"2026-11-23T12:00:00+00:00"},
             {"id":"b2e4","callback_url":"\#(callback)","event_type":"update","data_type":"sleep","expiration_time":"2027-01-19T12:00:00+00:00"},
             {"id":"c3d5","callback_url":"https://staging.example/v1/webhooks/oura","event_type":"create","data_type":"daily_activity","expiration_time":"2026-11-21T12:00:00+00:00"}]
            """#
        let transport = ScriptedTransport { request in
            #expect(request.header("x-client-id") == "test-client")
            #expect(request.header("x-client-secret") == "test-secret")
            switch (request.method, request.url.path) {
            case (.get, "/v2/webhook/subscription"):
                return .json(200, existing)
            case (.put, "/v2/webhook/subscription/renew/a1f3"):
                return .json(
                    200,
                    #"{"id":"a1f3","callback_url":"\#(callback)","event_type":"create","data_type":"sleep","expiration_time":"2027-02-18T12:00:00+00:00"}"#
                )
            case (.post, "/v2/webhook/subscription"):
                let body = try! JSONValue.parse(request.body ?? [])
                #expect(body["callback_url"] == .string(callback))
                #expect(body["verification_token"] == .string("vt-9"))
                let pair = "\(body["data_type"]?.string ?? "?")/\(body["event_type"]?.string ?? "?")"
                if pair == "workout/delete" { return .json(409, #"{"detail":"exists"}"#) }
                return .json(
                    201,
                    #"{"id":"new-\#(pair.replacingOccurrences(of: "/", with: "-"))","callback_url":"\#(callback)","event_type":"\#(body["event_type"]?.string ?? "")","data_type":"\#(body["data_type"]?.string ?? "")","expiration_time":"2027-02-18T12:00:00+00:00"}"#
                )
            default:
                Issue.record("unexpected \(request.method) \(request.url.path)")
                return .json(500, "{}")
            }
        }
        let state = MemoryVendorState()
        let context = makeContext(
            adapter, transport: transport, secrets: ["verification_token": Secret("vt-9")], state: state,
            now: Self.at("2026-11-20T12:00:00Z"))
        try await adapter.maintainSubscriptions(context: context)

        let sent = transport.sent.withLock { $0 }
        #expect(sent.filter { $0.method == .put }.map(\.url.path) == ["/v2/webhook/subscription/renew/a1f3"])
        // Everything but our sleep/create and sleep/update is created; the staging callback's
        // daily_activity/create is not ours and does not count.
        let created = sent.filter { $0.method == .post }.compactMap { request -> String? in
            guard let body = try? JSONValue.parse(request.body ?? []) else { return nil }
            return "\(body["data_type"]?.string ?? "?")/\(body["event_type"]?.string ?? "?")"
        }
        #expect(created.count == 7)
        #expect(
            Set(created) == [
                "sleep/delete", "daily_activity/create", "daily_activity/update", "daily_activity/delete",
                "workout/create", "workout/update", "workout/delete",
            ])
        let kept = try #require(try await state.value("subscriptions"))
        #expect(kept["sleep/create"]?["expiration_time"] == .string("2027-02-18T12:00:00+00:00"))
        #expect(kept["sleep/update"]?["id"] == .string("b2e4"))
        #expect(kept["daily_activity/create"]?["id"] == .string("new-daily_activity-create"))
        #expect(kept["workout/delete"] == nil)
    }

    @Test func subscriptionsNeedAVerificationToken() async throws {
        let transport = ScriptedTransport { _ in .json(200, "[]") }
        try await adapter.maintainSubscriptions(context: makeContext(adapter, transport: transport))
        #expect(transport.sent.withLock { $0.isEmpty })
    }

    // MARK: rate limits

    @Test func rateLimitResetIsHonouredWithoutRetryAfter() throws {
        let reader = try #require(adapter.rateLimitHeaders)
        let now = Self.at("2026-11-20T12:00:00Z")
        let reset = String(now.millisecondsSinceEpoch / 1000 + 90)
        #expect(reader(.json(429, "{}", headers: [("X-RateLimit-Reset", reset)]), now) == .seconds(90))
        #expect(reader(.json(429, "{}", headers: [("X-RateLimit-Reset", reset), ("Retry-After", "5")]), now) == nil)
        #expect(reader(.json(200, "{}", headers: [("X-RateLimit-Reset", reset)]), now) == nil)
    }
}

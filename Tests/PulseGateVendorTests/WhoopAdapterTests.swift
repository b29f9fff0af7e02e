import Crypto
import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateTestSupport
import PulseGateVendorKit
import PulseGateVendorWhoop
import Synchronization
import Testing

@Suite struct WhoopAdapterTests {
    let adapter = try! WhoopAdapter()

    static func at(_ text: String) -> Timestamp { Timestamp(rfc3339: text)! }

    @Test func manifestLoads() {
        let manifest = adapter.manifest
        #expect(manifest.id == "whoop")
        #expect(manifest.displayName == "WHOOP")
        #expect(manifest.urls["authorize"] == "https://api.prod.whoop.com/oauth/oauth2/auth")
        #expect(manifest.urls["token"] == "https://api.prod.whoop.com/oauth/oauth2/token")
        #expect(manifest.urls["api"] == "https://api.prod.whoop.com/developer")
        #expect(manifest.oauth.scopes.contains("offline"))
        #expect(manifest.oauth.scopeSeparator == " ")
        #expect(manifest.oauth.pkce == false)
        #expect(manifest.oauth.clientAuthentication == .body)
        #expect(manifest.oauth.refreshTokens == .rotating)
        #expect(manifest.oauth.accessTokenLifetimeSeconds == 3600)
        #expect(
            manifest.rateLimits == [
                RateLimitRule(scope: .app, requests: 100, seconds: 60),
                RateLimitRule(scope: .app, requests: 10_000, seconds: 86_400),
            ])
        #expect(!manifest.metrics.contains("heart_rate"), "WHOOP serves no heart-rate series")
    }

    /// WHOOP's token answers are RFC 6749: the default reader keeps the rotated refresh token and the
    /// hour's lifetime (vendor-vectors A11).
    @Test func tokenAnswersAreRFC6749() throws {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        let now = Self.at("2026-11-20T12:00:00Z")
        let answer = InboundResponse.json(
            200,
            #"{"access_token":"the-value-of-the-new-access-token","expires_in":3600,"refresh_token":"the-value-of-the-new-refresh-token","scope":"offline read:sleep","token_type":"bearer"}"#
        )
        let grant = try adapter.readTokenResponse(
            answer, client: client, now: now, previousRefreshToken: Secret("old-refresh"))
        #expect(grant.accessToken.text == "the-value-of-the-new-access-token")
        #expect(grant.refreshToken?.text == "the-value-of-the-new-refresh-token")
        #expect(grant.expiresAt == now.adding(milliseconds: 3_600_000))
        #expect(grant.scopes == ["offline", "read:sleep"])
        // A refused refresh token ends the grant; a refused client never blames the user.
        #expect(throws: OAuthError.self) {
            try adapter.readTokenResponse(
                .json(400, #"{"error":"invalid_grant","error_description":"refresh token expired"}"#), client: client,
                now: now, previousRefreshToken: nil)
        }
        do {
            _ = try adapter.readTokenResponse(
                .json(401, #"{"error":"invalid_client"}"#), client: client, now: now, previousRefreshToken: nil)
            Issue.record("invalid_client accepted")
        } catch {
            guard case .clientRejected = error else { Issue.record("\(error)"); return }
        }
        // The client's credentials go in the form body, without PKCE.
        let refresh = client.refreshRequest(refreshToken: Secret("r-1"))
        let form = FormEncoding.decode(String(decoding: refresh.body ?? [], as: UTF8.self))
        #expect(form["grant_type"] == "refresh_token" && form["refresh_token"] == "r-1")
        #expect(form["client_id"] == "test-client" && form["client_secret"] == "test-secret")
        #expect(refresh.header("Authorization") == nil)
    }

    // MARK: webhook signature (vendor-vectors B2)

    static let b2Body =
        #"{"user_id":10129,"id":10235,"type":"workout.updated","trace_id":"d3709ee7-104e-4f70-a928-2932964b017b"}"#
    static let b2Signature = "7tbyl5bqf4mUAO4dLq5J5lxjZ/Da/76/RK645/MqImY="
    static let b2Stamp = "1748241241000"
    static let b2Time = Timestamp(millisecondsSinceEpoch: 1_748_241_241_000)

    func verdict(
        _ body: String, signature: String?, timestamp: String?, secret: String = "test-secret",
        receivedAt: Timestamp = Self.b2Time.adding(milliseconds: 4_000)
    ) async -> WebhookVerdict {
        var headers = [(name: String, value: String)]()
        if let signature { headers.append(("X-WHOOP-Signature", signature)) }
        if let timestamp { headers.append(("x-whoop-signature-timestamp", timestamp)) }
        let context = makeContext(adapter, clientSecret: secret)
        return await adapter.verify(webhook(body, headers: headers, at: receivedAt), context: context)
    }

    static func label(_ verdict: WebhookVerdict) -> String? {
        if case .rejected(_, let label) = verdict { return label }
        return nil
    }

    static func sign(_ stamp: String, _ body: String, secret: String = "test-secret") -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array((stamp + body).utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Data(mac).base64EncodedString()
    }

    @Test func signatureVectorVerifies() async {
        #expect(Self.sign(Self.b2Stamp, Self.b2Body) == Self.b2Signature)
        #expect(await verdict(Self.b2Body, signature: Self.b2Signature, timestamp: Self.b2Stamp) == .authentic)
    }

    @Test func signatureRefusesOtherBytesSecretsAndTimes() async {
        // B8: the same JSON re-serialized with spaces is other bytes, so another MAC.
        let spaced = Self.b2Body.replacingOccurrences(of: ",", with: ", ")
        #expect(
            Self.label(await verdict(spaced, signature: Self.b2Signature, timestamp: Self.b2Stamp)) == "bad_signature")
        #expect(
            Self.label(
                await verdict(Self.b2Body, signature: Self.b2Signature, timestamp: Self.b2Stamp, secret: "other"))
                == "bad_signature")
        // B8: the timestamp in seconds is another message; signed in seconds it is 1970 in milliseconds.
        #expect(
            Self.label(await verdict(Self.b2Body, signature: Self.b2Signature, timestamp: "1748241241"))
                == "bad_signature")
        #expect(
            Self.label(
                await verdict(
                    Self.b2Body, signature: Self.sign("1748241241", Self.b2Body), timestamp: "1748241241")) == "stale")
        let late = Self.b2Time.adding(milliseconds: 301_000)
        #expect(
            Self.label(
                await verdict(Self.b2Body, signature: Self.b2Signature, timestamp: Self.b2Stamp, receivedAt: late))
                == "stale")
        let early = Self.b2Time.adding(milliseconds: -301_000)
        #expect(
            Self.label(
                await verdict(Self.b2Body, signature: Self.b2Signature, timestamp: Self.b2Stamp, receivedAt: early))
                == "stale")
        let edge = Self.b2Time.adding(milliseconds: 300_000)
        #expect(
            await verdict(Self.b2Body, signature: Self.b2Signature, timestamp: Self.b2Stamp, receivedAt: edge)
                == .authentic)
        #expect(Self.label(await verdict(Self.b2Body, signature: nil, timestamp: Self.b2Stamp)) == "missing_signature")
        #expect(
            Self.label(await verdict(Self.b2Body, signature: Self.b2Signature, timestamp: nil)) == "missing_signature")
        #expect(
            Self.label(await verdict(Self.b2Body, signature: "not base64!", timestamp: Self.b2Stamp)) == "bad_signature"
        )
        // Hex of the right MAC is not WHOOP's encoding.
        let hex = Data(base64Encoded: Self.b2Signature)!.map { String(format: "%02x", $0) }.joined()
        #expect(Self.label(await verdict(Self.b2Body, signature: hex, timestamp: Self.b2Stamp)) == "bad_signature")
        #expect(
            Self.label(
                await verdict(
                    Self.b2Body, signature: Self.sign("2025-05-26T06:34:01Z", Self.b2Body),
                    timestamp: "2025-05-26T06:34:01Z")) == "malformed_timestamp")
    }

    @Test func thereIsNoHandshake() async {
        let context = makeContext(adapter)
        #expect(await adapter.handshake(webhook("", method: "GET", query: ["challenge": "x"]), context: context) == nil)
        #expect(await adapter.handshake(webhook(Self.b2Body), context: context) == nil)
        #expect(adapter.acceptedStatus == 200)
    }

    // MARK: notifications

    static let sleepID = "ecfc6a15-4661-442f-a9a4-f160dd7afae8"
    static let workoutID = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"

    static func event(_ type: String, id: String = sleepID, trace: String = "e369c784-5100-49e8-8098-75d35c47b31b")
        -> [UInt8]
    {
        Array(#"{"user_id":10129,"id":"\#(id)","type":"\#(type)","trace_id":"\#(trace)"}"#.utf8)
    }

    @Test func updatesFetchTheRecordAndDeletionsTombstoneIt() throws {
        #expect(
            try adapter.notifications(in: Self.event("sleep.updated")) == [
                VendorNotification(
                    vendorUserID: "10129",
                    action: .fetch(
                        FetchTask(
                            kind: "sleep", key: "sleep:\(Self.sleepID)",
                            parameters: .object(["id": .string(Self.sleepID)]))))
            ])
        #expect(
            try adapter.notifications(in: Self.event("workout.updated", id: Self.workoutID)).first?.action
                == .fetch(WhoopAdapter.recordTask("workout", Self.workoutID)))
        // v2: a recovery is named by its sleep's UUID.
        #expect(
            try adapter.notifications(in: Self.event("recovery.updated")).first?.action
                == .fetch(
                    FetchTask(
                        kind: "recovery", key: "recovery:\(Self.sleepID)",
                        parameters: .object(["sleep_id": .string(Self.sleepID)]))))
        for type in ["sleep.deleted", "recovery.deleted"] {
            #expect(try adapter.notifications(in: Self.event(type)).first?.action == .deleted(recordID: Self.sleepID))
        }
        #expect(
            try adapter.notifications(in: Self.event("workout.deleted", id: Self.workoutID)).first?.action
                == .deleted(recordID: Self.workoutID))
        // Types pulsegate does not know are ignored, not failed.
        guard case .ignore = try adapter.notifications(in: Self.event("cycle.updated")).first?.action else {
            Issue.record("cycle.updated not ignored"); return
        }
    }

    @Test func malformedNotificationsAreRefusedClearly() {
        func reason(_ body: String) -> String? {
            do {
                _ = try adapter.notifications(in: Array(body.utf8))
                return nil
            } catch {
                guard case .malformed(let why) = error else { return "\(error)" }
                return why
            }
        }
        // The v1 model (integer ids, vector B2's body) cannot be fetched from v2 endpoints.
        #expect(reason(Self.b2Body)?.contains("v1 model") == true)
        #expect(reason("not json") != nil)
        #expect(reason(#"{"id":"\#(Self.sleepID)","type":"sleep.updated","trace_id":"t"}"#) != nil)
        #expect(reason(#"{"user_id":"ten","id":"\#(Self.sleepID)","type":"sleep.updated"}"#) != nil)
        #expect(reason(#"{"user_id":10129,"id":"\#(Self.sleepID)","trace_id":"t"}"#) != nil)
        #expect(reason(#"{"user_id":10129,"type":"sleep.updated","trace_id":"t"}"#) != nil)
        // An id that would leave the URL path (or is a URL) never reaches a request.
        #expect(reason(String(decoding: Self.event("sleep.updated", id: "../../v2/user/access"), as: UTF8.self)) != nil)
        #expect(
            reason(
                String(
                    decoding: Self.event("workout.updated", id: "https://evil.example/v2/activity/workout/1"),
                    as: UTF8.self)) != nil)
    }

    @Test func dedupeKeepsRetriesOneAndLaterUpdatesApart() {
        let first = webhook(String(decoding: Self.event("sleep.updated"), as: UTF8.self))
        let retry = webhook(String(decoding: Self.event("sleep.updated"), as: UTF8.self))
        let later = webhook(
            String(decoding: Self.event("sleep.updated", trace: "f1a2b3c4-0000-4000-8000-000000000001"), as: UTF8.self))
        let sameTraceRecovery = webhook(String(decoding: Self.event("recovery.updated"), as: UTF8.self))
        #expect(adapter.dedupeKey(first) == adapter.dedupeKey(retry))
        #expect(adapter.dedupeKey(first) != adapter.dedupeKey(later))
        #expect(adapter.dedupeKey(first) != adapter.dedupeKey(sameTraceRecovery))
        // The same event re-serialized is still the same event.
        let spaced = webhook(
            #"{"trace_id": "e369c784-5100-49e8-8098-75d35c47b31b", "type": "sleep.updated", "id": "\#(Self.sleepID)", "user_id": 10129}"#
        )
        #expect(adapter.dedupeKey(spaced) == adapter.dedupeKey(first))
        // Without a usable trace id the body's digest decides.
        let odd = webhook(#"{"user_id":10129,"id":"\#(Self.sleepID)","type":"sleep.updated"}"#)
        #expect(adapter.dedupeKey(odd) == odd.bodyDigest)
    }

    // MARK: mapping (payloads shaped like WHOOP's v2 API reference examples)

    static let sleepDocument = #"""
        {"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","cycle_id":93845,"v1_id":93845,"user_id":10129,
         "created_at":"2022-04-24T11:25:44.774Z","updated_at":"2022-04-24T14:25:44.774Z",
         "start":"2022-04-24T02:25:44.774Z","end":"2022-04-24T10:25:44.774Z","timezone_offset":"-05:00",
         "nap":false,"score_state":"SCORED",
         "score":{"stage_summary":{"total_in_bed_time_milli":30272735,"total_awake_time_milli":1403507,
           "total_no_data_time_milli":0,"total_light_sleep_time_milli":14905851,
           "total_slow_wave_sleep_time_milli":6630370,"total_rem_sleep_time_milli":5879573,
           "sleep_cycle_count":3,"disturbance_count":12},
          "sleep_needed":{"baseline_milli":27395716,"need_from_sleep_debt_milli":352230,
           "need_from_recent_strain_milli":208595,"need_from_recent_nap_milli":-12312},
          "respiratory_rate":16.11328125,"sleep_performance_percentage":98.0,
          "sleep_consistency_percentage":90.0,"sleep_efficiency_percentage":91.69533848}}
        """#

    static let recoveryDocument = #"""
        {"cycle_id":93845,"sleep_id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","user_id":10129,
         "created_at":"2022-04-24T11:25:44.774Z","updated_at":"2022-04-24T14:25:44.774Z","score_state":"SCORED",
         "score":{"user_calibrating":false,"recovery_score":44.0,"resting_heart_rate":64.0,
          "hrv_rmssd_milli":31.813562,"spo2_percentage":95.6875,"skin_temp_celsius":33.7}}
        """#

    static let workoutDocument = #"""
        {"id":"1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9","v1_id":1043,"user_id":9012,
         "created_at":"2022-04-24T11:25:44.774Z","updated_at":"2022-04-24T14:25:44.774Z",
         "start":"2022-04-24T02:25:44.774Z","end":"2022-04-24T10:25:44.774Z","timezone_offset":"-05:00",
         "sport_name":"running","score_state":"SCORED",
         "score":{"strain":8.2463,"average_heart_rate":123,"max_heart_rate":146,"kilojoule":1569.34033203125,
          "percent_recorded":100.0,"distance_meter":1772.77035916,"altitude_gain_meter":46.64384460449,
          "altitude_change_meter":-0.781372010707855,
          "zone_durations":{"zone_zero_milli":300000,"zone_one_milli":600000,"zone_two_milli":900000,
           "zone_three_milli":900000,"zone_four_milli":600000,"zone_five_milli":300000}},"sport_id":1}
        """#

    static func json(_ text: String) -> JSONValue { try! JSONValue.parse(Array(text.utf8)) }

    static func record(_ type: String, _ text: String, sleep: String? = nil) -> RawRecord {
        var body: [String: JSONValue] = ["type": .string(type), type: json(text)]
        if let sleep { body["sleep"] = json(sleep) }
        return RawRecord(key: "\(type):x", body: JSONValue.object(body).bytes)
    }

    let now = Self.at("2026-11-20T12:00:00Z")

    @Test func scoredSleepMapsItsBoundsAndRespiratoryRateOnly() throws {
        let samples = try adapter.map(Self.record("sleep", Self.sleepDocument), connection: connection(), now: now)
        #expect(samples.map(\.metric) == [.sleepStage, .respiratoryRate])
        let stage = samples[0]
        #expect(stage.value == .category("in_bed"))
        #expect(stage.start == Self.at("2022-04-24T02:25:44.774Z"))
        #expect(stage.end == Self.at("2022-04-24T10:25:44.774Z"))
        #expect(samples[1].value.number == 16.11328125)
        #expect(samples[1].start == Self.at("2022-04-24T10:25:44.774Z") && samples[1].end == nil)
        #expect(samples.allSatisfy { $0.quality == .vendorComputed && $0.source.recordID == Self.sleepID })
        #expect(samples.allSatisfy { $0.source.vendor == "whoop" && $0.source.device?.manufacturer == "WHOOP" })
        // Stage totals have no timeline: no light/deep/rem interval is invented from them.
        #expect(
            !samples.contains { s in ["light", "deep", "rem", "awake"].contains { s.value == .category($0) } })
    }

    @Test func onlyScoredRecordsMap() throws {
        for state in ["PENDING_SCORE", "UNSCORABLE"] {
            let pending = Self.sleepDocument.replacingOccurrences(of: "\"SCORED\"", with: "\"\(state)\"")
            #expect(try adapter.map(Self.record("sleep", pending), connection: connection(), now: now).isEmpty)
            let workout = Self.workoutDocument.replacingOccurrences(of: "\"SCORED\"", with: "\"\(state)\"")
            #expect(try adapter.map(Self.record("workout", workout), connection: connection(), now: now).isEmpty)
            let recovery = Self.recoveryDocument.replacingOccurrences(of: "\"SCORED\"", with: "\"\(state)\"")
            #expect(
                try adapter.map(
                    Self.record("recovery", recovery, sleep: Self.sleepDocument), connection: connection(), now: now
                ).isEmpty)
        }
        // SCORED without a score object is not a score either.
        let bare =
            #"{"id":"\#(Self.sleepID)","start":"2022-04-24T02:25:44.774Z","end":"2022-04-24T10:25:44.774Z","score_state":"SCORED"}"#
        #expect(try adapter.map(Self.record("sleep", bare), connection: connection(), now: now).isEmpty)
    }

    @Test func recoveryMapsAtTheEndOfItsSleepUnderTheSleepsID() throws {
        let samples = try adapter.map(
            Self.record("recovery", Self.recoveryDocument, sleep: Self.sleepDocument), connection: connection(),
            now: now)
        #expect(samples.map(\.metric) == [.restingHeartRate, .hrvRMSSD, .spo2, .skinTemperature])
        #expect(samples.map(\.value.number) == [64.0, 31.813562, 95.6875, 33.7])
        #expect(samples.map(\.metric.unit.code) == ["/min", "ms", "%", "Cel"])
        #expect(samples.allSatisfy { $0.start == Self.at("2022-04-24T10:25:44.774Z") && $0.end == nil })
        #expect(samples.allSatisfy { $0.source.recordID == Self.sleepID && $0.quality == .vendorComputed })
        // A strap before 4.0 has no SpO2 or skin temperature; a 0 ms RMSSD is no measurement.
        let older = Self.recoveryDocument.replacingOccurrences(
            of: #","spo2_percentage":95.6875,"skin_temp_celsius":33.7"#, with: ""
        )
        .replacingOccurrences(of: "31.813562", with: "0")
        let fewer = try adapter.map(
            Self.record("recovery", older, sleep: Self.sleepDocument), connection: connection(), now: now)
        #expect(fewer.map(\.metric) == [.restingHeartRate])
        // A recovery must come with its own sleep.
        let otherSleep = Self.sleepDocument.replacingOccurrences(of: Self.sleepID, with: Self.workoutID)
        #expect(throws: VendorError.self) {
            try adapter.map(
                Self.record("recovery", Self.recoveryDocument, sleep: otherSleep), connection: connection(), now: now)
        }
    }

    /// WHOOP writes UTC; an instant written with an offset is read as the instant it names.
    @Test func timesAreInstantsWhateverTheirOffset() throws {
        let shifted = Self.sleepDocument
            .replacingOccurrences(of: "2022-04-24T02:25:44.774Z", with: "2022-04-23T21:25:44.774-05:00")
            .replacingOccurrences(of: "2022-04-24T10:25:44.774Z", with: "2022-04-24T05:25:44.774-05:00")
        let samples = try adapter.map(Self.record("sleep", shifted), connection: connection(), now: now)
        let original = try adapter.map(Self.record("sleep", Self.sleepDocument), connection: connection(), now: now)
        #expect(samples.map(\.start) == original.map(\.start))
        #expect(samples.map(\.id) == original.map(\.id))
    }

    @Test func workoutMapsItsDistanceOnly() throws {
        let samples = try adapter.map(Self.record("workout", Self.workoutDocument), connection: connection(), now: now)
        #expect(samples.map(\.metric) == [.distance])
        #expect(samples[0].value.number == 1772.77035916 && samples[0].metric.unit.code == "m")
        #expect(samples[0].start == Self.at("2022-04-24T02:25:44.774Z"))
        #expect(samples[0].end == Self.at("2022-04-24T10:25:44.774Z"))
        #expect(samples[0].source.recordID == Self.workoutID)
        // Average and max heart rate are never turned into heart-rate samples.
        #expect(!samples.contains { $0.metric == .heartRate })
        let indoor = Self.workoutDocument.replacingOccurrences(of: #""distance_meter":1772.77035916,"#, with: "")
        #expect(try adapter.map(Self.record("workout", indoor), connection: connection(), now: now).isEmpty)
    }

    @Test func unreadableRecordsAreMalformed() {
        #expect(throws: VendorError.self) {
            try adapter.map(RawRecord(key: "x", body: Array("{}".utf8)), connection: connection(), now: now)
        }
        #expect(throws: VendorError.self) {
            try adapter.map(Self.record("recovery", Self.recoveryDocument), connection: connection(), now: now)
        }
        let noEnd = Self.sleepDocument.replacingOccurrences(of: #""end":"2022-04-24T10:25:44.774Z","#, with: "")
        #expect(throws: VendorError.self) {
            try adapter.map(Self.record("sleep", noEnd), connection: connection(), now: now)
        }
    }

    // MARK: fetch

    @Test func recordFetchReadsOneDocumentAndAbsorbsA404() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.method == .get)
            #expect(request.header("Authorization") == "Bearer access-1")
            if request.url.path == "/developer/v2/activity/workout/\(Self.workoutID)" {
                return .json(200, Self.workoutDocument)
            }
            return .json(404, "")
        }
        let context = makeContext(adapter, transport: transport)
        let outcome = try await adapter.fetch(
            WhoopAdapter.recordTask("workout", Self.workoutID), connection: connection(), context: context)
        #expect(outcome.records.map(\.key) == ["workout:\(Self.workoutID)"])
        #expect(try adapter.map(outcome.records[0], connection: connection(), now: now).map(\.metric) == [.distance])
        let gone = try await adapter.fetch(
            WhoopAdapter.recordTask("sleep", Self.sleepID), connection: connection(), context: context)
        #expect(gone.records.isEmpty && gone.deletedRecordIDs.isEmpty)
        #expect(transport.sent.withLock { $0.map(\.url.path) }.last == "/developer/v2/activity/sleep/\(Self.sleepID)")
    }

    @Test func recoveryIsReachedThroughItsSleepsCycle() async throws {
        let transport = ScriptedTransport { request in
            switch request.url.path {
            case "/developer/v2/activity/sleep/\(Self.sleepID)": return .json(200, Self.sleepDocument)
            case "/developer/v2/cycle/93845/recovery": return .json(200, Self.recoveryDocument)
            default:
                Issue.record("unexpected \(request.url.path)")
                return .json(404, "")
            }
        }
        let context = makeContext(adapter, transport: transport)
        let outcome = try await adapter.fetch(
            WhoopAdapter.recoveryTask(sleepID: Self.sleepID), connection: connection(), context: context)
        #expect(transport.sent.withLock { $0.count } == 2)
        #expect(outcome.records.map(\.key) == ["recovery:\(Self.sleepID)"])
        let samples = try adapter.map(outcome.records[0], connection: connection(), now: now)
        #expect(samples.count == 4 && samples.allSatisfy { $0.source.recordID == Self.sleepID })

        // With the sleep at hand (a listing), only the recovery is read.
        let listed = try await adapter.fetch(
            WhoopAdapter.recoveryTask(sleepID: Self.sleepID, sleep: Self.json(Self.sleepDocument)),
            connection: connection(), context: context)
        #expect(transport.sent.withLock { $0.count } == 3)
        #expect(listed.records == outcome.records)
    }

    @Test func aCyclesRecoveryOfAnotherSleepOrNoneIsNothing() async throws {
        let nap = Self.sleepDocument.replacingOccurrences(of: Self.sleepID, with: Self.workoutID)
        let transport = ScriptedTransport { request in
            if request.url.path.hasSuffix("/recovery") { return .json(200, Self.recoveryDocument) }
            return .json(404, "")
        }
        let context = makeContext(adapter, transport: transport)
        let other = try await adapter.fetch(
            WhoopAdapter.recoveryTask(sleepID: Self.workoutID, sleep: Self.json(nap)), connection: connection(),
            context: context)
        #expect(other.records.isEmpty)
        // The sleep is gone: nothing to read a recovery for.
        let gone = try await adapter.fetch(
            WhoopAdapter.recoveryTask(sleepID: Self.sleepID), connection: connection(), context: context)
        #expect(gone.records.isEmpty)
        await #expect(throws: VendorError.self) {
            try await adapter.fetch(
                FetchTask(kind: "recovery", key: "r", parameters: .object(["sleep_id": .string("93845")])),
                connection: connection(), context: context)
        }
    }

    @Test func listingsPageWithNextTokenAndAskForEachNightsRecovery() async throws {
        let start = Self.at("2026-10-21T10:00:00Z").millisecondsSinceEpoch
        let end = Self.at("2026-11-20T10:00:00Z").millisecondsSinceEpoch
        let napID = "00000000-1111-4222-8333-444444444444"
        let nap = Self.sleepDocument.replacingOccurrences(of: Self.sleepID, with: napID)
            .replacingOccurrences(of: #""nap":false"#, with: #""nap":true"#)
        let transport = ScriptedTransport { request in
            let query = FormEncoding.decode(request.url.query ?? "")
            #expect(request.url.path == "/developer/v2/activity/sleep")
            #expect(query["start"] == "2026-10-21T10:00:00.000Z" && query["end"] == "2026-11-20T10:00:00.000Z")
            #expect(query["limit"] == "25")
            if query["nextToken"] == "MTIzOjEyMzEyMw" {
                return .json(200, #"{"records":[\#(nap)]}"#)
            }
            #expect(query["nextToken"] == nil)
            return .json(200, #"{"records":[\#(Self.sleepDocument)],"next_token":"MTIzOjEyMzEyMw"}"#)
        }
        let context = makeContext(adapter, transport: transport)
        let first = try await adapter.fetch(
            WhoopAdapter.listTask("sleep", start: start, end: end), connection: connection(), context: context)
        #expect(first.records.map(\.key) == ["sleep:\(Self.sleepID)"])
        #expect(first.followUps.count == 2)
        #expect(
            first.followUps[0] == WhoopAdapter.recoveryTask(sleepID: Self.sleepID, sleep: Self.json(Self.sleepDocument))
        )
        let next = first.followUps[1]
        #expect(next.kind == "list" && next.key == "list:sleep:\(start)-\(end):p2")
        #expect(next.parameters["next_token"] == .string("MTIzOjEyMzEyMw"))
        let second = try await adapter.fetch(next, connection: connection(), context: context)
        #expect(second.records.map(\.key) == ["sleep:\(napID)"])
        #expect(second.followUps.isEmpty, "a nap has no recovery of its own; the last page has no next_token")

        // Without read:recovery the sleeps come alone.
        var noRecovery = connection()
        noRecovery.scopes = ["offline", "read:sleep"]
        let limited = try await adapter.fetch(
            WhoopAdapter.listTask("sleep", start: start, end: end), connection: noRecovery, context: context)
        #expect(limited.followUps.map(\.kind) == ["list"])
    }

    @Test func aListingWithoutRecordsIsMalformed() async {
        let context = makeContext(adapter, transport: ScriptedTransport { _ in .json(200, #"{"data":[]}"#) })
        await #expect(throws: VendorError.self) {
            try await adapter.fetch(
                WhoopAdapter.listTask("workout", start: 0, end: 1), connection: connection(), context: context)
        }
        await #expect(throws: VendorError.self) {
            try await adapter.fetch(
                WhoopAdapter.listTask("cycle", start: 0, end: 1), connection: connection(), context: context)
        }
    }

    @Test func backfillAndReconcileListSleepsAndWorkouts() throws {
        let from = Self.at("2026-10-21T10:00:00Z")
        let to = Self.at("2026-11-20T10:00:00Z")
        let tasks = adapter.backfillTasks(from: from, to: to, connection: connection())
        #expect(
            tasks == [
                WhoopAdapter.listTask("sleep", start: from.millisecondsSinceEpoch, end: to.millisecondsSinceEpoch),
                WhoopAdapter.listTask("workout", start: from.millisecondsSinceEpoch, end: to.millisecondsSinceEpoch),
            ])
        var sleepOnly = connection()
        sleepOnly.scopes = ["offline", "read:profile", "read:sleep", "read:recovery"]
        #expect(
            adapter.backfillTasks(from: from, to: to, connection: sleepOnly).map(\.key).allSatisfy {
                $0.hasPrefix("list:sleep:")
            })
        #expect(adapter.backfillTasks(from: to, to: from, connection: connection()).isEmpty)

        let reconcile = adapter.reconcileTasks(since: Timestamp(millisecondsSinceEpoch: 0), connection: connection())
        let starts = reconcile.compactMap { $0.parameters["start"]?.int }
        let earliest = try #require(starts.min())
        #expect(abs(earliest - (Timestamp.now.millisecondsSinceEpoch - 30 * 86_400_000)) < 60_000)
        let recent = Timestamp.now.adding(milliseconds: -7_200_000)
        let since = adapter.reconcileTasks(since: recent, connection: connection())
        #expect(since.allSatisfy { $0.parameters["start"]?.int == recent.millisecondsSinceEpoch - 3_600_000 })
    }

    // MARK: link and unlink

    @Test func linkReadsTheUserIDFromTheBasicProfile() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.url.path == "/developer/v2/user/profile/basic")
            #expect(request.header("Authorization") == "Bearer fresh-token")
            return .json(
                200, #"{"user_id":10129,"email":"jsmith123@whoop.com","first_name":"John","last_name":"Smith"}"#)
        }
        let grant = TokenGrant(
            accessToken: Secret("fresh-token"), refreshToken: Secret("r"), expiresAt: nil,
            scopes: ["offline", "read:profile"])
        let id = try await adapter.didLink(
            grant: grant, callback: [:], context: makeContext(adapter, transport: transport))
        #expect(id == "10129")
    }

    @Test func linkWithoutOfflineAccessIsRefused() async {
        let transport = ScriptedTransport { _ in .json(200, #"{"user_id":10129}"#) }
        let grant = TokenGrant(accessToken: Secret("t"), refreshToken: nil, expiresAt: nil, scopes: ["read:sleep"])
        do {
            _ = try await adapter.didLink(
                grant: grant, callback: [:], context: makeContext(adapter, transport: transport))
            Issue.record("a link without a refresh token was accepted")
        } catch {
            guard case .rejected = error else { Issue.record("\(error)"); return }
        }
        #expect(transport.sent.withLock { $0.isEmpty })
    }

    @Test func revokeDeletesTheUsersAccess() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.method == .delete)
            #expect(request.url.path == "/developer/v2/user/access")
            #expect(request.header("Authorization") == "Bearer access-1")
            return InboundResponse(status: 204, headers: [], body: [])
        }
        try await adapter.revoke(connection: connection(), context: makeContext(adapter, transport: transport))
        #expect(transport.sent.withLock { $0.count } == 1)
        // A token WHOOP no longer takes cannot revoke anything: reported as refused, not as done.
        let refused = makeContext(adapter, transport: ScriptedTransport { _ in .json(401, "{}") })
        do {
            try await adapter.revoke(connection: connection(), context: refused)
            Issue.record("a 401 counted as revoked")
        } catch {
            guard case .rejected = error else { Issue.record("\(error)"); return }
        }
    }

    // MARK: payload URLs

    /// WHOOP notifications carry ids, never URLs; the allowed hosts still fence any payload URL.
    @Test func payloadURLsOffTheAllowedHostsAreRefused() throws {
        let context = makeContext(adapter)
        #expect(throws: VendorError.self) { try context.checkPayloadURL("https://evil.example/developer/v2/recovery") }
        #expect(throws: VendorError.self) { try context.checkPayloadURL("http://api.prod.whoop.com/developer") }
        #expect(
            try context.checkPayloadURL("https://api.prod.whoop.com/developer/v2/activity/sleep").host
                == "api.prod.whoop.com")
    }

    // MARK: rate limits

    @Test func rateLimitHeadersPauseUntilTheReset() throws {
        let reader = try #require(adapter.rateLimitHeaders)
        let limit = ("X-RateLimit-Limit", "100, 100;window=60, 10000;window=86400")
        func answer(_ status: Int, remaining: String?, reset: String?) -> InboundResponse {
            var headers = [limit]
            if let remaining { headers.append(("X-RateLimit-Remaining", remaining)) }
            if let reset { headers.append(("X-RateLimit-Reset", reset)) }
            return .json(status, "{}", headers: headers)
        }
        // WHOOP's documented example: 98 left, nothing to do.
        #expect(reader(answer(200, remaining: "98", reset: "3"), now) == nil)
        #expect(reader(answer(200, remaining: "0", reset: "3"), now) == .seconds(3))
        #expect(reader(answer(200, remaining: "0", reset: "0"), now) == .seconds(1))
        #expect(reader(answer(429, remaining: "0", reset: "42"), now) == .seconds(42))
        #expect(reader(answer(429, remaining: nil, reset: "17"), now) == .seconds(17))
        // The daily window: at most a day.
        #expect(reader(answer(429, remaining: "0", reset: "999999"), now) == .seconds(86_400))
        #expect(reader(answer(429, remaining: "0", reset: nil), now) == nil)
        #expect(reader(answer(200, remaining: nil, reset: nil), now) == nil)
    }
}

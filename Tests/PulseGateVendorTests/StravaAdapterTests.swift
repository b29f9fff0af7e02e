import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit
import PulseGateVendorStrava
import Testing

@Suite struct StravaAdapterTests {
    let adapter = try! StravaAdapter()

    @Test func manifestLoads() {
        #expect(adapter.manifest.id == "strava")
        #expect(adapter.manifest.oauth.scopeSeparator == ",")
        #expect(adapter.manifest.oauth.pkce == false)
        #expect(adapter.manifest.webhook.deadlineSeconds == 2)
    }

    /// vendor-vectors A6: the subscription validation GET is echoed as JSON with the literal key.
    @Test func handshakeEchoesChallengeOnlyWithOurVerifyToken() async throws {
        let context = makeContext(adapter, secrets: ["verify_token": Secret("STRAVA")])
        let query = [
            "hub.verify_token": "STRAVA", "hub.challenge": "15f7d1a91c1f40f8a748fd134752feb3", "hub.mode": "subscribe",
        ]
        let answer = try #require(await adapter.handshake(webhook("", method: "GET", query: query), context: context))
        #expect(answer.status == 200)
        #expect(
            try JSONValue.parse(answer.body) == .object(["hub.challenge": .string("15f7d1a91c1f40f8a748fd134752feb3")]))
        var wrong = query
        wrong["hub.verify_token"] = "guess"
        #expect(await adapter.handshake(webhook("", method: "GET", query: wrong), context: context)?.status == 403)
        #expect(await adapter.handshake(webhook("{}"), context: context) == nil)
    }

    static let event =
        #"{"aspect_type":"update","event_time":1516126040,"object_id":1360128428,"object_type":"activity","owner_id":134815,"subscription_id":120475,"updates":{"title":"Messy"}}"#

    /// vendor-vectors B6 (the disputed signature): verified when present, over the raw body.
    @Test func signatureHeaderIsVerifiedWhenPresent() async {
        let now = Timestamp(millisecondsSinceEpoch: 1_516_126_041_000)
        let context = makeContext(adapter, now: now)
        let good = "t=1516126041,v1=287df32df4647b7bc679063743c9fbb2ab20c59920b0fc43fb30ffc3d84e7525"
        #expect(
            await adapter.verify(
                webhook(Self.event, headers: [("X-Strava-Signature", good)], at: now), context: context)
                == .authentic)
        // Re-serialized with a space: the same JSON, other bytes — must fail.
        let spaced = Self.event.replacingOccurrences(of: "\"aspect_type\":", with: "\"aspect_type\": ")
        guard
            case .rejected = await adapter.verify(
                webhook(spaced, headers: [("X-Strava-Signature", good)], at: now), context: context)
        else { Issue.record("re-serialized body verified"); return }
        let later = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + 301_000)
        guard
            case .rejected(_, "stale") = await adapter.verify(
                webhook(Self.event, headers: [("X-Strava-Signature", good)], at: later), context: context)
        else { Issue.record("stale signature accepted"); return }
    }

    @Test func unsignedEventMustNameOurSubscription() async throws {
        let state = MemoryVendorState()
        let context = makeContext(adapter, state: state)
        #expect(await adapter.verify(webhook(Self.event), context: context) == .authentic)
        try await state.setValue("subscription_id", .string("999"))
        guard case .rejected(_, "wrong_subscription") = await adapter.verify(webhook(Self.event), context: context)
        else {
            Issue.record("foreign subscription accepted"); return
        }
        guard case .rejected = await adapter.verify(webhook("not json"), context: context) else {
            Issue.record("garbage accepted"); return
        }
    }

    @Test func eventsBecomeNotifications() throws {
        let create = Self.event.replacingOccurrences(of: "\"update\"", with: "\"create\"")
        #expect(
            try adapter.notifications(in: Array(create.utf8)) == [
                VendorNotification(
                    vendorUserID: "134815",
                    action: .fetch(
                        FetchTask(
                            kind: "activity", key: "activity:1360128428",
                            parameters: .object(["id": .string("1360128428")]))))
            ])
        let delete = Self.event.replacingOccurrences(of: "\"update\"", with: "\"delete\"")
        #expect(try adapter.notifications(in: Array(delete.utf8)).first?.action == .deleted(recordID: "1360128428"))
        // Deauthorization: Strava's documented form (a string "false") and the athlete-delete variant.
        let deauth =
            #"{"aspect_type":"update","event_time":1516126040,"object_id":134815,"object_type":"athlete","owner_id":134815,"subscription_id":120475,"updates":{"authorized":"false"}}"#
        #expect(try adapter.notifications(in: Array(deauth.utf8)).first?.action == .deauthorized)
        let athleteDelete = deauth.replacingOccurrences(of: "\"update\"", with: "\"delete\"")
        #expect(try adapter.notifications(in: Array(athleteDelete.utf8)).first?.action == .deauthorized)
        #expect(throws: VendorError.self) { try adapter.notifications(in: Array(#"{"object_type":"activity"}"#.utf8)) }
    }

    @Test func tokenErrorsInStravaShapeAreClassified() throws {
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(adapter.manifest))
        let dead = InboundResponse.json(
            400,
            #"{"message":"Bad Request","errors":[{"resource":"RefreshToken","field":"refresh_token","code":"invalid"}]}"#
        )
        #expect(throws: OAuthError.self) {
            try adapter.readTokenResponse(dead, client: client, now: .now, previousRefreshToken: nil)
        }
        do {
            _ = try adapter.readTokenResponse(dead, client: client, now: .now, previousRefreshToken: nil)
        } catch {
            guard case .grantRejected = error else { Issue.record("expected grantRejected, got \(error)"); return }
        }
        let app = InboundResponse.json(
            401,
            #"{"message":"Bad Request","errors":[{"resource":"Application","field":"client_secret","code":"invalid"}]}"#
        )
        do {
            _ = try adapter.readTokenResponse(app, client: client, now: .now, previousRefreshToken: nil)
            Issue.record("accepted")
        } catch {
            guard case .clientRejected = error else { Issue.record("expected clientRejected, got \(error)"); return }
        }
        let ok = InboundResponse.json(
            200,
            #"{"token_type":"Bearer","expires_at":1568775134,"expires_in":21600,"refresh_token":"r2","access_token":"a2","athlete":{"id":134815}}"#
        )
        let grant = try adapter.readTokenResponse(ok, client: client, now: .now, previousRefreshToken: Secret("r1"))
        #expect(grant.refreshToken?.text == "r2")
        #expect(grant.expiresAt == Timestamp(millisecondsSinceEpoch: 1_568_775_134_000))
    }

    @Test func linkRequiresActivityScopeAndReadsAthleteID() async throws {
        let context = makeContext(adapter)
        let grant = TokenGrant(
            accessToken: Secret("a"), refreshToken: Secret("r"), expiresAt: nil, scopes: nil,
            raw: .object(["athlete": .object(["id": .int(134815)])]))
        #expect(
            try await adapter.didLink(grant: grant, callback: ["scope": "read,activity:read_all"], context: context)
                == "134815")
        await #expect(throws: VendorError.self) {
            _ = try await adapter.didLink(grant: grant, callback: ["scope": "read"], context: context)
        }
    }

    @Test func activityFetchAndMapping() async throws {
        let activity = #"{"id":42,"start_date":"2026-11-20T07:00:00Z","device_name":"Garmin Edge 540","type":"Ride"}"#
        let streams = #"""
            {"time":{"data":[0,1,2],"series_type":"distance","original_size":3,"resolution":"high"},
             "heartrate":{"data":[120,121,0]},"watts":{"data":[200,null,210]},"cadence":{"data":[85,86,87]},
             "velocity_smooth":{"data":[8.5,8.6,8.7]},"distance":{"data":[0.0,8.6,17.3]},
             "altitude":{"data":[12.5,12.6,12.7]},"latlng":{"data":[[52.5,13.4],[52.50001,13.40001],[52.50002,13.40002]]},
             "temp":{"data":[21,21,22]}}
            """#
        let transport = ScriptedTransport { request in
            #expect(request.header("Authorization") == "Bearer access-1")
            if request.url.path.hasSuffix("/streams") {
                #expect(request.url.query?.contains("key_by_type=true") == true)
                return .json(200, streams)
            }
            return .json(200, activity)
        }
        let context = makeContext(adapter, transport: transport)
        let outcome = try await adapter.fetch(
            StravaAdapter.activityTask("42"), connection: connection(), context: context)
        #expect(outcome.records.map(\.key) == ["activity:42"])
        let samples = try adapter.map(outcome.records[0], connection: connection(), now: .now)
        let hr = samples.filter { $0.metric == .heartRate }
        // 0 bpm is a dropout the schema refuses: skipped, not fatal.
        #expect(hr.map(\.value.number) == [120, 121])
        #expect(hr[1].start == Timestamp(rfc3339: "2026-11-20T07:00:01Z"))
        #expect(samples.filter { $0.metric == .power }.count == 2)
        let distance = samples.filter { $0.metric == .distance }
        #expect(distance.count == 2)
        #expect(abs((distance[1].value.number ?? 0) - 8.7) < 1e-9)
        #expect(distance[1].end == Timestamp(rfc3339: "2026-11-20T07:00:02Z"))
        #expect(samples.allSatisfy { $0.source.vendor == "strava" && $0.source.recordID == "42" })
        #expect(samples.first?.source.device?.model == "Garmin Edge 540")
        // Deterministic: mapping the same record again gives the same ids.
        #expect(try adapter.map(outcome.records[0], connection: connection(), now: .now).map(\.id) == samples.map(\.id))
    }

    @Test func rateLimitHeadersPauseUntilTheWindowResets() throws {
        let reader = try #require(adapter.rateLimitHeaders)
        let now = try #require(Timestamp(rfc3339: "2026-11-20T07:05:00Z"))
        let spent = InboundResponse.json(
            200, "[]", headers: [("X-ReadRateLimit-Limit", "100,1000"), ("X-ReadRateLimit-Usage", "100,314")])
        #expect(reader(spent, now) == .seconds(600))
        let fine = InboundResponse.json(
            200, "[]", headers: [("X-RateLimit-Limit", "600,30000"), ("X-RateLimit-Usage", "314,27536")])
        #expect(reader(fine, now) == nil)
    }
}

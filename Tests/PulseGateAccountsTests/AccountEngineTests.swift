import Foundation
import GRDB
import Logging
import PulseGateAccounts
import PulseGateCore
import PulseGateOAuth
import PulseGateStore
import PulseGateTestSupport
import PulseGateVendorKit
import PulseGateVendorStrava
import Synchronization
import Testing

/// A small Strava as the engine sees it through HTTP: it issues tokens, rotates refresh tokens (the
/// previous one stays valid until the new access token is used), and serves one activity.
final class FakeStrava: Sendable {
    struct State {
        var refresh = "r0"
        var previousRefresh: String?
        var access = "a0"
        var generation = 0
        var tokenRequests = 0
        var revoked: [String] = []
        /// What the next token request does: "ok", "lose-answer" (rotate, then no answer),
        /// "invalid_grant", "invalid_client", "500".
        var nextToken = "ok"
        var deauthorizeFails = false
    }
    let state = Mutex(State())

    func handle(_ r: OutboundRequest) throws -> InboundResponse {
        let path = r.url.path
        if path.hasSuffix("/oauth/token") {
            let form = FormEncoding.decode(String(decoding: r.body ?? [], as: UTF8.self))
            return try state.withLock { s throws -> InboundResponse in
                s.tokenRequests += 1
                switch s.nextToken {
                case "invalid_grant":
                    return .json(
                        400,
                        #"{"message":"Bad Request","errors":[{"resource":"RefreshToken","field":"refresh_token","code":"invalid"}]}"#
                    )
                case "invalid_client":
                    return .json(
                        401,
                        #"{"message":"Bad Request","errors":[{"resource":"Application","field":"client_id","code":"invalid"}]}"#
                    )
                case "500":
                    return .json(500, "{}")
                default: break
                }
                if form["grant_type"] == "refresh_token" {
                    let given = form["refresh_token"]
                    guard given == s.refresh || given == s.previousRefresh else {
                        return .json(
                            400,
                            #"{"message":"Bad Request","errors":[{"resource":"RefreshToken","field":"refresh_token","code":"invalid"}]}"#
                        )
                    }
                    if given == s.refresh { s.previousRefresh = s.refresh }
                }
                s.generation += 1
                s.refresh = "r\(s.generation)"
                s.access = "a\(s.generation)"
                if s.nextToken == "lose-answer" {
                    s.nextToken = "ok"
                    throw TransportFailure()
                }
                let expires = Int(Date().timeIntervalSince1970) + 21600
                return .json(
                    200,
                    #"{"token_type":"Bearer","expires_at":\#(expires),"expires_in":21600,"refresh_token":"\#(s.refresh)","access_token":"\#(s.access)","athlete":{"id":134815}}"#
                )
            }
        }
        if path.hasSuffix("/oauth/deauthorize") {
            return state.withLock { s in
                if s.deauthorizeFails { return .json(503, "{}") }
                s.revoked.append(
                    FormEncoding.decode(String(decoding: r.body ?? [], as: UTF8.self))["access_token"] ?? "?")
                return .json(200, "{}")
            }
        }
        // Data calls: only the current access token works; using it retires the previous refresh token.
        let bearer = r.header("Authorization") ?? ""
        let ok = state.withLock { s -> Bool in
            guard bearer == "Bearer \(s.access)" else { return false }
            s.previousRefresh = nil
            return true
        }
        guard ok else { return .json(401, #"{"message":"Authorization Error"}"#) }
        if path.hasSuffix("/athlete/activities") { return .json(200, "[]") }
        if path.hasSuffix("/activities/42/streams") {
            return .json(200, #"{"time":{"data":[0,1]},"heartrate":{"data":[130,131]}}"#)
        }
        if path.hasSuffix("/activities/42") {
            return .json(200, #"{"id":42,"start_date":"2026-11-20T07:00:00Z"}"#)
        }
        return .json(404, "{}")
    }
}

struct Harness {
    let store: SQLiteStore
    let outbox: Outbox
    let accounts: AccountStore
    let engine: AccountEngine
    let strava = FakeStrava()
    let transport: ScriptedTransport

    init(settings: AccountSettings = AccountSettings(), wrap: (StravaAdapter) -> any VendorAdapter = { $0 }) throws {
        let dir = temporaryDirectory("accounts")
        let logger = Logger(label: "test")
        store = try SQLiteStore(path: "\(dir)/pulsegate.sqlite")
        outbox = try Outbox(store: store, sinkIDs: ["t"], highWatermark: 1_000_000, logger: logger)
        accounts = AccountStore(store: store, logger: logger)
        let cipher = TokenCipher(current: try TokenCipher.Key(bytes: TokenCipher.Key.generate()))
        let strava = self.strava
        transport = ScriptedTransport { try strava.handle($0) }
        let adapter = wrap(try StravaAdapter())
        let context = makeContext(
            adapter, transport: transport, secrets: ["verify_token": Secret("vt")],
            state: StoredVendorState(vendor: "strava", accounts: accounts, cipher: cipher))
        engine = AccountEngine(
            vendors: [VendorRuntime(adapter: adapter, settings: context.settings, context: context)],
            accounts: accounts, outbox: outbox, cipher: cipher, settings: settings, logger: logger)
    }

    /// Links member-1 through the real authorize → callback path.
    func link(subject: String = "member-1") async throws -> ConnectionRecord {
        let (url, _) = try await engine.startLink(vendor: "strava", subject: subject)
        let state = try #require(
            URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems?.first { $0.name == "state" }?.value)
        let outcome = await engine.completeLink(
            vendor: "strava", query: ["state": state, "code": "c1", "scope": "read,activity:read_all"])
        return try #require(outcome.connection, "link failed: \(outcome.failure ?? "")")
    }

    /// Every line in the outbox, parsed.
    func lines() async throws -> [JSONValue] {
        guard let batch = try await outbox.read(after: 0, limit: 100_000) else { return [] }
        return try batch.body.split(separator: 0x0A).map { try JSONValue.parse(Array($0)) }
    }

    func events(_ kind: String) async throws -> [JSONValue] {
        try await lines().filter { $0["event"]?.string == kind }
    }

    func raw(_ id: String) throws -> Row? {
        try store.pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM connection WHERE id = ?", arguments: [id])
        }
    }
}

@Suite struct AccountEngineTests {
    @Test func linkStoresSealedTokensEmitsAnEventAndQueuesBackfill() async throws {
        let h = try Harness()
        let c = try await h.link()
        #expect(c.vendorUserID == "134815")
        #expect(c.status == .active)
        let row = try #require(try h.raw(c.id))
        let sealed = Array(row["access_token"] as Data)
        #expect(!sealed.hexString.contains(Array("a1".utf8).hexString + "00") && sealed.count > 30)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("a1"))
        #expect(try await h.events("connection.linked").count == 1)
        #expect(try await h.accounts.jobCount() == 1)
        #expect(c.refreshDueAt != nil)
    }

    @Test func statesAreSingleUseShortLivedAndBoundToTheVendor() async throws {
        let h = try Harness()
        let (url, _) = try await h.engine.startLink(vendor: "strava", subject: "member-1")
        let state = try #require(
            URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems?.first { $0.name == "state" }?.value)
        let denied = await h.engine.completeLink(vendor: "strava", query: ["state": state, "error": "access_denied"])
        #expect(denied.failureCode == "access_denied")
        let reused = await h.engine.completeLink(vendor: "strava", query: ["state": state, "code": "c"])
        #expect(reused.failureCode == "reused_state")
        let forged = await h.engine.completeLink(vendor: "strava", query: ["state": "forged", "code": "c"])
        #expect(forged.failureCode == "unknown_state")
        #expect(h.strava.state.withLock { $0.tokenRequests } == 0, "no code exchange for a refused state")

        var short = AccountSettings()
        short.stateLifetime = .seconds(0)
        let quick = try Harness(settings: short)
        let (url2, _) = try await quick.engine.startLink(vendor: "strava", subject: "member-1")
        let state2 = try #require(
            URLComponents(url: url2, resolvingAgainstBaseURL: false)?.queryItems?.first { $0.name == "state" }?.value)
        try await Task.sleep(for: .milliseconds(5))
        #expect(
            await quick.engine.completeLink(vendor: "strava", query: ["state": state2, "code": "c"]).failureCode
                == "expired_state")
    }

    @Test func aLinkWithoutActivityScopeIsRefusedClearly() async throws {
        let h = try Harness()
        let (url, _) = try await h.engine.startLink(vendor: "strava", subject: "member-1")
        let state = try #require(
            URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems?.first { $0.name == "state" }?.value)
        let outcome = await h.engine.completeLink(
            vendor: "strava", query: ["state": state, "code": "c", "scope": "read"])
        #expect(outcome.failureCode == "insufficient_access")
        #expect(outcome.failure?.contains("activity") == true)
        #expect(try await h.engine.connections(subject: "member-1").isEmpty)
    }

    /// The must-not-happen: the vendor rotated, its answer was lost. The journal stays set, the
    /// connection stays active, and the next refresh with the refresh token we still hold succeeds.
    @Test func aLostRefreshAnswerIsRecoveredNotUnlinked() async throws {
        let h = try Harness()
        let c = try await h.link()
        h.strava.state.withLock { $0.nextToken = "lose-answer" }
        guard case .retryLater = await h.engine.refresh(connectionID: c.id) else {
            Issue.record("expected retryLater"); return
        }
        let afterLoss = try #require(try await h.accounts.connection(id: c.id))
        #expect(afterLoss.status == .active)
        #expect(afterLoss.refreshInFlightSince != nil, "the journal records the interrupted refresh")
        #expect(await h.engine.refresh(connectionID: c.id) == .refreshed)
        let recovered = try #require(try await h.accounts.connection(id: c.id))
        #expect(recovered.refreshInFlightSince == nil)
        #expect(recovered.tokenGeneration > c.tokenGeneration)
        // The stored access token is the vendor's newest: a data call with it works.
        _ = await h.engine.processInbox()
        #expect(await h.engine.runJobs() == 1)
        #expect(try await h.accounts.jobCount() == 0, "backfill ran with the recovered token")
    }

    @Test func onlyARefusedGrantNeedsRelinking() async throws {
        let h = try Harness()
        let c = try await h.link()
        h.strava.state.withLock { $0.nextToken = "500" }
        guard case .retryLater = await h.engine.refresh(connectionID: c.id) else { Issue.record("500"); return }
        h.strava.state.withLock { $0.nextToken = "invalid_client" }
        guard case .retryLater = await h.engine.refresh(connectionID: c.id) else {
            Issue.record("invalid_client"); return
        }
        #expect(try await h.accounts.connection(id: c.id)?.status == .active, "our app's problem is not the user's")
        h.strava.state.withLock { $0.nextToken = "invalid_grant" }
        guard case .needsRelink = await h.engine.refresh(connectionID: c.id) else {
            Issue.record("invalid_grant"); return
        }
        let dead = try #require(try await h.accounts.connection(id: c.id))
        #expect(dead.status == .needsRelink)
        #expect(dead.accessToken == nil && dead.refreshToken == nil)
        #expect(try await h.events("connection.needs_relink").count == 1)
    }

    @Test func concurrentRefreshesOfOneConnectionAreOneRequest() async throws {
        let h = try Harness()
        let c = try await h.link()
        let before = h.strava.state.withLock { $0.tokenRequests }
        await withTaskGroup(of: RefreshOutcome.self) { group in
            for _ in 0..<20 { group.addTask { await h.engine.refresh(connectionID: c.id) } }
            for await _ in group {}
        }
        let requests = h.strava.state.withLock { $0.tokenRequests } - before
        #expect(requests >= 1 && requests <= 2, "single flight (a second may start after the first finished)")
        #expect(try await h.accounts.connection(id: c.id)?.status == .active)
    }

    static let create =
        #"{"aspect_type":"create","event_time":1516126040,"object_id":42,"object_type":"activity","owner_id":134815,"subscription_id":120475,"updates":{}}"#

    @Test func aWebhookIsStoredOnceThenFetchedIntoSamples() async throws {
        let h = try Harness()
        let c = try await h.link()
        let first = await h.engine.receiveWebhook(vendor: "strava", request: webhook(Self.create))
        let again = await h.engine.receiveWebhook(vendor: "strava", request: webhook(Self.create))
        #expect(first.status == 200 && again.status == 200)
        #expect(try await h.accounts.inboxBacklog() == 1, "the duplicate delivery is absorbed")
        #expect(await h.engine.processInbox() == 1)
        #expect(await h.engine.runJobs() == 2)  // the backfill listing and the activity
        let samples = try await h.lines().filter { $0["event"] == nil }
        #expect(samples.count == 2)
        #expect(samples.allSatisfy { $0["subject"]?.string == "member-1" && $0["metric"]?.string == "heart_rate" })
        #expect(samples.compactMap { $0["value"]?.double }.sorted() == [130, 131])
        let after = try #require(try await h.accounts.connection(id: c.id))
        #expect(after.lastWebhookAt != nil && after.lastSampleAt != nil)
    }

    @Test func aMisSignedWebhookLeavesNoTrace() async throws {
        let h = try Harness()
        _ = try await h.link()
        let t = Int(Date().timeIntervalSince1970)
        let answer = await h.engine.receiveWebhook(
            vendor: "strava", request: webhook(Self.create, headers: [("X-Strava-Signature", "t=\(t),v1=00ff")]))
        #expect(answer.status == 401)
        #expect(try await h.accounts.inboxBacklog() == 0)
    }

    @Test func vendorDeauthorizationRevokesAndTombstones() async throws {
        let h = try Harness()
        let c = try await h.link()
        let deauth =
            #"{"aspect_type":"update","event_time":1516126040,"object_id":134815,"object_type":"athlete","owner_id":134815,"subscription_id":120475,"updates":{"authorized":"false"}}"#
        #expect(await h.engine.receiveWebhook(vendor: "strava", request: webhook(deauth)).status == 200)
        _ = await h.engine.processInbox()
        let revoked = try #require(try await h.accounts.connection(id: c.id))
        #expect(revoked.status == .revoked && revoked.accessToken == nil)
        let tombstones = try await h.events("tombstone")
        #expect(tombstones.count == 1)
        #expect(tombstones.first?["subject"]?.string == "member-1")
        #expect(tombstones.first?["source"]?["vendor"]?.string == "strava")
        #expect(try await h.accounts.jobCount() == 0, "pending work of a revoked connection is dropped")
    }

    @Test func unlinkRevokesAtTheVendorOrQueuesTheRevocation() async throws {
        let h = try Harness()
        let c = try await h.link()
        try await h.engine.unlink(connectionID: c.id)
        #expect(h.strava.state.withLock { $0.revoked } == ["a1"])
        #expect(try await h.accounts.connection(id: c.id) == nil)
        #expect(try await h.events("connection.unlinked").count == 1)
        #expect(try await h.events("tombstone").count == 1)

        let down = try Harness()
        let d = try await down.link()
        down.strava.state.withLock { $0.deauthorizeFails = true }
        try await down.engine.unlink(connectionID: d.id)
        #expect(try await down.accounts.connection(id: d.id) == nil)
        let queued = try await down.store.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM job WHERE kind = 'revoke'") ?? 0
        }
        #expect(queued == 1, "the grant still dies at the vendor later")
    }

    @Test func recordsDeliveredInANotificationAreKeptAndStreamedInBoundedBatches() async throws {
        let pushing = PushingAdapter()
        let h = try Harness(wrap: { pushing.wrapping($0) })
        let c = try await h.link()
        let points = AccountEngine.sampleBatch * 2 + 7
        let body = #"{"owner_id":134815,"key":"activity-9","points":\#(points)}"#
        #expect(await h.engine.receiveWebhook(vendor: "strava", request: webhook(body)).status == 200)
        #expect(await h.engine.processInbox() == 1)
        let kept = try await h.accounts.rawPayload(vendor: "strava", connectionID: c.id, recordKey: "activity-9")
        #expect(kept?.body == Array(body.utf8), "the delivered record is kept for replay before it is mapped")
        while await h.engine.runJobs() > 0 {}
        let samples = try await h.lines().filter {
            $0["event"] == nil && $0["source"]?["record_id"]?.string == "activity-9"
        }
        #expect(samples.count == points)
        #expect(pushing.largestBatch.withLock { $0 } == AccountEngine.sampleBatch, "memory follows the batch size")
        #expect(try await h.accounts.jobCount() == 0)
        #expect(try await h.accounts.connection(id: c.id)?.lastSampleAt != nil)

        let (records, replayed) = try await h.engine.replay(
            vendor: "strava", since: Timestamp(millisecondsSinceEpoch: 0))
        #expect(records >= 1 && replayed >= points, "replay streams the kept record again")
    }

    @Test func aFetchedRecordThatCannotBeMappedIsKeptAndItsJobParked() async throws {
        let pushing = PushingAdapter()
        let h = try Harness(wrap: { pushing.wrapping($0) })
        let c = try await h.link()
        let body = #"{"owner_id":134815,"key":"broken"}"#
        #expect(await h.engine.receiveWebhook(vendor: "strava", request: webhook(body)).status == 200)
        _ = await h.engine.processInbox()
        while await h.engine.runJobs() > 0 {}
        let kept = try await h.accounts.rawPayload(vendor: "strava", connectionID: c.id, recordKey: "broken")
        #expect(kept?.body == [0x0E, 0x10], "the vendor's bytes are kept for a replay after a fix")
        let parked = try await h.store.pool.read { db in
            try String.fetchOne(db, sql: "SELECT last_error FROM job WHERE dedupe_key LIKE '%broken'")
        }
        #expect(parked?.contains("header too short") == true, "\(parked ?? "no job")")
    }
}

/// Strava with one change: a notification carries its data (like a Garmin push) — `points` heart-rate
/// samples, produced lazily so the test sees the batch sizes the engine asks for.
final class PushingAdapter: Sendable {
    let largestBatch = Mutex(0)

    func wrapping(_ base: StravaAdapter) -> any VendorAdapter { Wrapped(base: base, owner: self) }

    struct Wrapped: VendorAdapter {
        let base: StravaAdapter
        let owner: PushingAdapter
        var manifest: VendorManifest { base.manifest }
        var mappingVersion: Int { 1 }

        func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
            -> String
        { try await base.didLink(grant: grant, callback: callback, context: context) }
        func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
            try await base.revoke(connection: connection, context: context)
        }
        func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? { nil }
        func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict { .authentic }
        func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
            let json = try JSONValue.vendorPayload(body)
            guard let owner = json["owner_id"]?.int, let key = json["key"]?.string else { throw .malformed("no owner") }
            if key == "broken" {
                return [
                    VendorNotification(vendorUserID: "\(owner)", action: .fetch(FetchTask(kind: "broken", key: key)))
                ]
            }
            return [VendorNotification(vendorUserID: "\(owner)", action: .records([RawRecord(key: key, body: body)]))]
        }
        func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext) async throws(VendorError)
            -> FetchOutcome
        {
            if task.kind == "broken" { return FetchOutcome(records: [RawRecord(key: "broken", body: [0x0E, 0x10])]) }
            return try await base.fetch(task, connection: connection, context: context)
        }
        func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample] {
            var all = try samples(of: record, connection: connection, now: now)
            return try all.all()
        }
        func samples(of record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError)
            -> any SampleSource
        {
            if record.key == "broken" { throw .malformed("not a FIT file: header too short (at byte 0)") }
            guard let json = try? JSONValue.parse(record.body), let points = json["points"]?.int else {
                return try base.samples(of: record, connection: connection, now: now)
            }
            return Points(
                subject: connection.subject, record: record.key, remaining: Int(points), now: now, owner: owner)
        }
        func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] { [] }
        func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] { [] }
    }

    struct Points: SampleSource {
        let subject: String
        let record: String
        var remaining: Int
        let now: Timestamp
        let owner: PushingAdapter
        var second: Int64 = 0

        mutating func next(max: Int) throws(VendorError) -> [Sample] {
            owner.largestBatch.withLock { $0 = Swift.max($0, max) }
            var batch = SampleBatch(subject: subject, vendor: "strava", recordID: record, now: now)
            while remaining > 0 && batch.samples.count < max {
                let at = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch - 86_400_000 + second * 1000)
                batch.add(.heartRate, Double(100 + second % 50), unit: "/min", at: at)
                second += 1
                remaining -= 1
            }
            return batch.samples
        }
    }
}

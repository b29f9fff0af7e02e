import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// WHOOP developer API v2: sleeps, recoveries and workouts.
///
/// WHOOP posts one app-wide webhook (set in its Developer Dashboard, model version v2) per change,
/// with ids only, signed with the app's client secret over the timestamp and the body; every update
/// is followed by a fetch of that one record with the user's token. A v2 recovery is named by the
/// UUID of the sleep it was computed from, and no endpoint takes that UUID for a recovery: the sleep
/// is read for its `cycle_id`, then `GET /v2/cycle/{id}/recovery`. WHOOP serves summaries only (no
/// heart-rate series, no stage timeline), and only records in the `SCORED` state carry values.
public struct WhoopAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    /// The collections listed by backfill and reconcile, with the scope each needs. Recoveries are
    /// reached through the sleeps (see ``fetchRecovery(_:connection:context:)``).
    static let collections: [(name: String, scope: String)] = [("sleep", "read:sleep"), ("workout", "read:workout")]
    static let recoveryScope = "read:recovery"

    /// Replay protection for `X-WHOOP-Signature-Timestamp`, as WHOOP's own examples check it.
    static let signatureToleranceSeconds: Int64 = 300
    /// The largest page WHOOP serves (`limit` ≤ 25 on every collection).
    static let pageLimit = 25
    static let dayMillis: Int64 = 86_400_000
    static let hourMillis: Int64 = 3_600_000
    /// How far back the silence watchdog reaches at most.
    static let reconcileDays: Int64 = 30

    // MARK: OAuth

    /// Refuses a grant without a refresh token (the `offline` scope not granted): WHOOP access tokens
    /// last an hour, so such a link would silently die the same day. The user id comes from
    /// `GET /v2/user/profile/basic` (scope `read:profile`), the only endpoint that names it before any
    /// data exists; the name and e-mail it also answers are not kept.
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        guard grant.refreshToken != nil else {
            throw .rejected("offline access was not granted, so the link would stop working within an hour")
        }
        let linking = ConnectionContext(
            id: "link", subject: "link", vendorUserID: nil, scopes: grant.scopes ?? [], accessToken: grant.accessToken)
        let (profile, _) = try await context.getJSON(
            context.url("api", path: "/v2/user/profile/basic"), connection: linking)
        guard let id = profile["user_id"]?.idString, Self.isUserID(id) else {
            throw .malformed("profile/basic has no user_id")
        }
        return id
    }

    /// `DELETE /v2/user/access` with the user's token: WHOOP ends the grant and stops the user's
    /// webhooks. The call needs a live access token; a 401 means it expired or the grant is already
    /// gone, which this call cannot tell apart, so it is reported as refused rather than as revoked.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let url = context.url("api", path: "/v2/user/access")
        let response = try await context.http.send(
            OutboundRequest(
                method: .delete, url: url, headers: [("Authorization", "Bearer \(connection.accessToken.text)")]),
            user: connection.id)
        if response.status == 401 {
            context.logger.warning(
                "whoop: revocation refused the access token (expired or already revoked); the grant may remain",
                metadata: ["connection": "\(connection.id)"])
            throw .rejected("\(url.path) answered 401")
        }
        try VendorContext.expectSuccess(response, url: url)
    }

    // MARK: webhooks

    /// WHOOP makes no handshake: the webhook URL is entered in the Developer Dashboard.
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? { nil }

    /// `X-WHOOP-Signature` is the base64 HMAC-SHA256, keyed with the client secret, of the
    /// `X-WHOOP-Signature-Timestamp` header text followed by the raw body. The signature is checked
    /// before the clock so that `stale` only ever labels a genuine delivery that arrived late.
    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        guard let signature = request.header("X-WHOOP-Signature"),
            let stamp = request.header("X-WHOOP-Signature-Timestamp")
        else {
            return .rejected(
                reason: "X-WHOOP-Signature or X-WHOOP-Signature-Timestamp missing", label: "missing_signature")
        }
        let expected = WebhookSignature.hmacSHA256(
            key: context.settings.clientSecret.bytes, Array(stamp.utf8) + request.body)
        guard WebhookSignature.matchesBase64(signature, expected) else {
            return .rejected(reason: "X-WHOOP-Signature does not match", label: "bad_signature")
        }
        guard let signedAt = Self.signatureTime(stamp) else {
            return .rejected(
                reason: "X-WHOOP-Signature-Timestamp '\(stamp.prefix(40))' is not epoch milliseconds",
                label: "malformed_timestamp")
        }
        guard
            WebhookSignature.isFresh(
                signedAt, now: request.receivedAt, toleranceSeconds: Self.signatureToleranceSeconds)
        else {
            return .rejected(
                reason:
                    "X-WHOOP-Signature-Timestamp \(stamp.prefix(40)) is outside \(Self.signatureToleranceSeconds) s",
                label: "stale")
        }
        return .authentic
    }

    /// WHOOP documents the timestamp as epoch milliseconds; nothing else is read as a time.
    static func signatureTime(_ text: String) -> Timestamp? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard (1...18).contains(trimmed.utf8.count), trimmed.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            let milliseconds = Int64(trimmed)
        else { return nil }
        return Timestamp(millisecondsSinceEpoch: milliseconds)
    }

    /// A retried delivery repeats its event: type, id and `trace_id`. The trace id alone is not
    /// enough: one processing run at WHOOP may well announce a sleep and its recovery under the same
    /// trace; type and id alone would swallow a later, genuine update of the same record.
    public func dedupeKey(_ request: WebhookRequest) -> String {
        guard let json = try? JSONValue.parse(request.body), let type = json["type"]?.string,
            let id = json["id"]?.idString, let trace = json["trace_id"]?.string,
            [type, id, trace].allSatisfy(Self.isKeyPart)
        else { return request.bodyDigest }
        return "\(type)|\(id)|\(trace)"
    }

    static func isKeyPart(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 100
            && text.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_" || $0 == ".")
            }
    }

    /// The resources WHOOP announces and pulsegate fetches.
    static let resources = ["sleep", "workout", "recovery"]

    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        let json = try JSONValue.vendorPayload(body)
        guard let user = json["user_id"]?.idString, Self.isUserID(user) else {
            throw .malformed("user_id is missing or not a WHOOP user id")
        }
        guard let type = json["type"]?.string, let dot = type.firstIndex(of: ".") else {
            throw .malformed("type is missing or not <resource>.<event>")
        }
        let resource = String(type[..<dot])
        let event = String(type[type.index(after: dot)...])
        guard Self.resources.contains(resource), event == "updated" || event == "deleted" else {
            return [VendorNotification(vendorUserID: user, action: .ignore(type))]
        }
        guard let idValue = json["id"], !idValue.isNull else { throw .malformed("\(type) without an id") }
        guard let id = idValue.string else {
            if idValue.int != nil {
                throw .malformed(
                    "\(type) carries an integer id: the webhook is set to the v1 model; choose v2 in the WHOOP Developer Dashboard"
                )
            }
            throw .malformed("\(type) id is not a string")
        }
        guard Self.isUUID(id) else { throw .malformed("\(type) id '\(id.prefix(60))' is not a UUID") }
        if event == "deleted" {
            // A recovery is named by its sleep's UUID and shares that record id (WhoopMapping), so
            // both deletions tombstone the same record; WHOOP deletes a recovery with its sleep.
            return [VendorNotification(vendorUserID: user, action: .deleted(recordID: id))]
        }
        let task = resource == "recovery" ? Self.recoveryTask(sleepID: id) : Self.recordTask(resource, id)
        return [VendorNotification(vendorUserID: user, action: .fetch(task))]
    }

    /// WHOOP user ids are int64s.
    static func isUserID(_ id: String) -> Bool {
        (1...19).contains(id.utf8.count) && id.utf8.allSatisfy { $0 >= 48 && $0 <= 57 }
    }

    /// v2 record ids are UUIDs (8-4-4-4-12 hex); anything else is refused before it reaches a URL path.
    static func isUUID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                guard b == UInt8(ascii: "-") else { return false }
            } else {
                let hex = (b >= 48 && b <= 57) || (b >= 97 && b <= 102) || (b >= 65 && b <= 70)
                guard hex else { return false }
            }
        }
        return true
    }

    /// One sleep or workout by its UUID.
    public static func recordTask(_ resource: String, _ id: String) -> FetchTask {
        FetchTask(kind: resource, key: "\(resource):\(id)", parameters: .object(["id": .string(id)]))
    }

    /// The recovery computed from the sleep `sleepID`. `sleep` is that sleep's document when the
    /// caller has it already (a listing), which saves reading it again.
    public static func recoveryTask(sleepID: String, sleep: JSONValue? = nil) -> FetchTask {
        var parameters: [String: JSONValue] = ["sleep_id": .string(sleepID)]
        if let sleep { parameters["sleep"] = sleep }
        return FetchTask(kind: "recovery", key: "recovery:\(sleepID)", parameters: .object(parameters))
    }

    /// A listing of `collection` (`sleep` or `workout`) for `start..<end` (milliseconds since the epoch).
    public static func listTask(_ collection: String, start: Int64, end: Int64) -> FetchTask {
        FetchTask(
            kind: "list", key: "list:\(collection):\(start)-\(end)",
            parameters: .object(["collection": .string(collection), "start": .int(start), "end": .int(end)]))
    }

    // MARK: fetch

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        switch task.kind {
        case "sleep", "workout": return try await fetchRecord(task, connection: connection, context: context)
        case "recovery": return try await fetchRecovery(task, connection: connection, context: context)
        case "list": return try await fetchList(task, connection: connection, context: context)
        default: throw .malformed("unknown WHOOP task kind \(task.kind)")
        }
    }

    private func fetchRecord(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let id = task.parameters["id"]?.string, Self.isUUID(id) else {
            throw .malformed("\(task.kind) task without a UUID")
        }
        // 404: deleted since it was announced; its own `.deleted` webhook brings the tombstone.
        guard
            let document = try await Self.getRecord(
                context.url("api", path: "/v2/activity/\(task.kind)/\(id)"), connection: connection, context: context)
        else { return FetchOutcome() }
        return FetchOutcome(records: [Self.record(task.kind, document, id: id)])
    }

    /// The sleep (from the task, else read by id) gives the cycle, the cycle gives the recovery. A
    /// cycle's recovery whose `sleep_id` is another sleep (this one was a nap) is not this task's.
    func fetchRecovery(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let sleepID = task.parameters["sleep_id"]?.string, Self.isUUID(sleepID) else {
            throw .malformed("recovery task without a sleep UUID")
        }
        var sleep = task.parameters["sleep"]
        if sleep?["id"]?.string != sleepID {
            sleep = try await Self.getRecord(
                context.url("api", path: "/v2/activity/sleep/\(sleepID)"), connection: connection, context: context)
        }
        guard let sleep else { return FetchOutcome() }
        guard let cycleID = sleep["cycle_id"]?.int, cycleID >= 0 else {
            throw .malformed("sleep \(sleepID) has no cycle_id")
        }
        guard
            let recovery = try await Self.getRecord(
                context.url("api", path: "/v2/cycle/\(cycleID)/recovery"), connection: connection, context: context)
        else { return FetchOutcome() }
        guard recovery["sleep_id"]?.string == sleepID else {
            context.logger.debug(
                "whoop: the cycle's recovery belongs to another sleep", metadata: ["sleep": "\(sleepID)"])
            return FetchOutcome()
        }
        let body = JSONValue.object(["type": .string("recovery"), "recovery": recovery, "sleep": sleep])
        return FetchOutcome(records: [RawRecord(key: "recovery:\(sleepID)", body: body.bytes)])
    }

    /// One page of sleeps or workouts (newest first, at most 25), its records kept one by one; every
    /// sleep that is not a nap also asks for its recovery, handing over the sleep already read.
    private func fetchList(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let collection = task.parameters["collection"]?.string,
            Self.collections.map(\.name).contains(collection),
            let start = task.parameters["start"]?.int, let end = task.parameters["end"]?.int, start < end
        else { throw .malformed("list task without a known collection and start < end") }
        var query = [
            ("start", Timestamp(millisecondsSinceEpoch: start).description),
            ("end", Timestamp(millisecondsSinceEpoch: end).description), ("limit", String(Self.pageLimit)),
        ]
        if let token = task.parameters["next_token"]?.string { query.append(("nextToken", token)) }
        let (page, _) = try await context.getJSON(
            context.url("api", path: "/v2/activity/\(collection)", query: query), connection: connection)
        guard let documents = page["records"]?.array else {
            throw .malformed("\(collection) listing has no records array")
        }
        var outcome = FetchOutcome()
        let recoveries = collection == "sleep" && Self.grants(connection, Self.recoveryScope)
        for document in documents {
            guard let id = document["id"]?.string, Self.isUUID(id) else { continue }
            outcome.records.append(Self.record(collection, document, id: id))
            if recoveries, document["nap"]?.bool != true {
                outcome.followUps.append(Self.recoveryTask(sleepID: id, sleep: document))
            }
        }
        if let next = page["next_token"]?.string, !next.isEmpty {
            let pageNumber = (task.parameters["page"]?.int ?? 1) + 1
            var parameters = task.parameters.object ?? [:]
            parameters["next_token"] = .string(next)
            parameters["page"] = .int(pageNumber)
            outcome.followUps.append(
                FetchTask(
                    kind: "list", key: "\(Self.listTask(collection, start: start, end: end).key):p\(pageNumber)",
                    parameters: .object(parameters)))
        }
        return outcome
    }

    /// A record as kept: the document under its type, so one mapping reads fetched and listed ones.
    static func record(_ type: String, _ document: JSONValue, id: String) -> RawRecord {
        RawRecord(key: "\(type):\(id)", body: JSONValue.object(["type": .string(type), type: document]).bytes)
    }

    /// GETs one record; `nil` when WHOOP answers 404 (none, or not this user's).
    static func getRecord(_ url: URL, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> JSONValue?
    {
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url,
                headers: [("Authorization", "Bearer \(connection.accessToken.text)"), ("Accept", "application/json")]),
            user: connection.id)
        if response.status == 404 { return nil }
        try VendorContext.expectSuccess(response, url: url)
        guard let json = try? JSONValue.parse(response.body), json.object != nil else {
            throw .malformed("\(url.path) did not answer a JSON object")
        }
        return json
    }

    /// The connection's scopes, when known, decide which collections are worth asking for.
    static func grants(_ connection: ConnectionContext, _ scope: String) -> Bool {
        connection.scopes.isEmpty || connection.scopes.contains(scope)
    }

    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let start = from.millisecondsSinceEpoch
        let end = to.millisecondsSinceEpoch
        guard start < end else { return [] }
        return Self.collections.filter { Self.grants(connection, $0.scope) }.map {
            Self.listTask($0.name, start: start, end: end)
        }
    }

    /// Everything since `since` (less an hour), reaching back at most ``reconcileDays``.
    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let now = Timestamp.now
        let from = max(
            since.millisecondsSinceEpoch - Self.hourMillis,
            now.millisecondsSinceEpoch - Self.reconcileDays * Self.dayMillis)
        return backfillTasks(from: Timestamp(millisecondsSinceEpoch: from), to: now, connection: connection)
    }

    // MARK: rate limits

    /// WHOOP's headers follow the IETF RateLimit draft: `X-RateLimit-Limit: 100, 100;window=60,
    /// 10000;window=86400` (the first number is the limit closest to being hit), `X-RateLimit-Remaining`
    /// for that limit, `X-RateLimit-Reset` in seconds until it resets. All calls pause until the reset
    /// when nothing remains, or when a 429 comes without `Retry-After`. The limits are per app, so one
    /// user's backlog pauses every user; the daily window can pause for hours.
    public var rateLimitHeaders: VendorHTTP.HeaderReader? { Self.readRateLimitHeaders }

    static let readRateLimitHeaders: VendorHTTP.HeaderReader = { response, _ in
        func leadingNumber(_ name: String) -> Int64? {
            guard let text = response.header(name),
                let first = text.split(separator: ",").first?.split(separator: ";").first
            else { return nil }
            return Int64(first.trimmingCharacters(in: .whitespaces))
        }
        guard let reset = leadingNumber("X-RateLimit-Reset"), reset >= 0 else { return nil }
        let exhausted = leadingNumber("X-RateLimit-Remaining").map { $0 <= 0 } ?? false
        guard exhausted || response.status == 429 else { return nil }
        return .seconds(max(1, min(reset, 86_400)))
    }
}

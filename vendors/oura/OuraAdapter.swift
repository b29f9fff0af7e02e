import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// Oura API v2: sleep periods, daily activity, workouts and the heart-rate time series.
///
/// Oura notifies one app-wide callback per (data type, event type) subscription, with ids only and
/// signed with the app's client secret; every create or update is followed by a fetch of that one
/// document with the user's token. Heart rate cannot be subscribed to at all, so it is fetched by time
/// range: in the backfill, by the silence watchdog, and after each sleep or daily-activity document,
/// whose notification is the sign that the ring has just synced its memory.
public struct OuraAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    /// The document collections pulsegate maps, subscribes to and backfills, with the scope each needs.
    static let documentScopes: [(dataType: String, scope: String)] = [
        ("sleep", "daily"), ("daily_activity", "daily"), ("workout", "workout"),
    ]
    static let documentTypes = documentScopes.map(\.dataType)
    static let eventTypes = ["create", "update", "delete"]

    /// Replay protection for `x-oura-timestamp`. Oura documents no window; five minutes is the usual one.
    static let signatureToleranceSeconds: Int64 = 300
    /// Subscriptions expire; renew each one this long before it does.
    static let renewAhead: Int64 = 7 * dayMillis
    static let dayMillis: Int64 = 86_400_000
    static let hourMillis: Int64 = 3_600_000
    /// Heart-rate ranges are fetched a day at a time: one sync can hold days of 5-minute rows.
    static let heartrateChunk: Int64 = dayMillis
    /// Listings by date span at most this many days per task (Oura suggests 1–3 months per request).
    static let listChunkDays: Int64 = 30
    /// How far back the silence watchdog and the after-sync heart-rate catch-up reach at most.
    static let reconcileDays: Int64 = 30
    static let catchUpDays: Int64 = 7

    // MARK: OAuth

    /// `GET /v2/usercollection/personal_info` answers `id`, the `user_id` of every notification, for any
    /// access token (Oura documents that no scope is needed for it).
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        let linking = ConnectionContext(
            id: "link", subject: "link", vendorUserID: nil, scopes: grant.scopes ?? [], accessToken: grant.accessToken)
        let (info, _) = try await context.getJSON(
            context.url("api", path: "/v2/usercollection/personal_info"), connection: linking)
        guard let id = info["id"]?.idString, !id.isEmpty else { throw .malformed("personal_info has no id") }
        return id
    }

    /// `POST /oauth/revoke?access_token=…`: Oura takes the token in the query, not a form body.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: context.url("revoke", query: [("access_token", connection.accessToken.text)]),
                idempotent: true),
            user: connection.id)
        // 400/401: the token is already invalid, which is what unlinking wants.
        if response.status == 400 || response.status == 401 { return }
        try VendorContext.expectSuccess(response, url: context.url("revoke"))
    }

    // MARK: webhooks

    /// Creating a subscription makes Oura GET the callback with `verification_token` and `challenge`;
    /// the subscription is made only if the token matches and the challenge comes back as JSON.
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? {
        guard request.method == "GET" else { return nil }
        guard let challenge = request.query["challenge"], !challenge.isEmpty else {
            return WebhookAnswer.json(400, .object(["error": .string("expected verification_token and challenge")]))
        }
        guard let expected = context.settings.secrets["verification_token"],
            WebhookSignature.matchesSecret(request.query["verification_token"], expected)
        else {
            return WebhookAnswer.json(401, .object(["error": .string("verification_token does not match")]))
        }
        return WebhookAnswer.json(200, .object(["challenge": .string(challenge)]))
    }

    /// `x-oura-signature` is the hex HMAC-SHA256, keyed with the client secret, of the
    /// `x-oura-timestamp` header text followed by the raw body. Oura's example upper-cases the hex;
    /// either case is accepted. The signature is checked before the clock so that `stale` only ever
    /// labels a genuine delivery that arrived late (a replay, a retry, clock skew), never a forgery.
    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        guard let signature = request.header("x-oura-signature"), let stamp = request.header("x-oura-timestamp")
        else {
            return .rejected(reason: "x-oura-signature or x-oura-timestamp missing", label: "missing_signature")
        }
        let expected = WebhookSignature.hmacSHA256(
            key: context.settings.clientSecret.bytes, Array(stamp.utf8) + request.body)
        guard WebhookSignature.matchesHex(signature, expected) else {
            return .rejected(reason: "x-oura-signature does not match", label: "bad_signature")
        }
        guard let signedAt = Self.signatureTime(stamp) else {
            return .rejected(
                reason: "x-oura-timestamp '\(stamp.prefix(40))' is not a time", label: "malformed_timestamp")
        }
        guard
            WebhookSignature.isFresh(
                signedAt, now: request.receivedAt, toleranceSeconds: Self.signatureToleranceSeconds)
        else {
            return .rejected(
                reason: "x-oura-timestamp \(stamp.prefix(40)) is outside \(Self.signatureToleranceSeconds) s",
                label: "stale")
        }
        return .authentic
    }

    /// Oura's example header is epoch seconds (`1234567890`); its format is not specified further, so
    /// epoch milliseconds (13 digits) and RFC 3339 are read too.
    static func signatureTime(_ text: String) -> Timestamp? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if !trimmed.isEmpty, trimmed.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
            let value = Double(trimmed)
        {
            return value >= 10_000_000_000
                ? Timestamp(millisecondsSinceEpoch: Int64(value)) : Timestamp(secondsSinceEpoch: value)
        }
        return Timestamp(rfc3339: trimmed)
    }

    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        let user: String
        let eventType: String
        let dataType: String
        let objectID: String?
        do {
            let json = try JSONValue.parse(body)
            user = try json.require("user_id").idString ?? ""
            eventType = try json.require("event_type").string ?? ""
            dataType = try json.require("data_type").string ?? ""
            objectID = json["object_id"]?.idString
        } catch {
            throw .missing(error)
        }
        guard !user.isEmpty else { throw .malformed("user_id is not a string") }
        guard Self.documentTypes.contains(dataType) else {
            return [VendorNotification(vendorUserID: user, action: .ignore("\(dataType) \(eventType)"))]
        }
        guard let objectID, Self.isDocumentID(objectID) else {
            throw .malformed("\(dataType) \(eventType) without a usable object_id")
        }
        switch eventType {
        case "create", "update":
            return [VendorNotification(vendorUserID: user, action: .fetch(Self.documentTask(dataType, objectID)))]
        case "delete":
            return [VendorNotification(vendorUserID: user, action: .deleted(recordID: objectID))]
        default:
            return [VendorNotification(vendorUserID: user, action: .ignore("\(dataType) \(eventType)"))]
        }
    }

    /// Oura ids are UUIDs or `2-5daccc…` strings; anything else is refused before it reaches a URL path.
    static func isDocumentID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_")
            }
    }

    public static func documentTask(_ dataType: String, _ id: String) -> FetchTask {
        FetchTask(
            kind: "document", key: "\(dataType):\(id)",
            parameters: .object(["data_type": .string(dataType), "id": .string(id)]))
    }

    /// Heart rate for `start..<end` (milliseconds since the epoch); `page` > 1 carries a `next_token`.
    public static func heartrateTask(start: Int64, end: Int64) -> FetchTask {
        FetchTask(
            kind: "heartrate", key: "heartrate:\(start)-\(end)",
            parameters: .object(["start": .int(start), "end": .int(end)]))
    }

    /// A listing of `dataType` by the user's local dates `startDate...endDate` (`YYYY-MM-DD`).
    public static func listTask(_ dataType: String, startDate: String, endDate: String) -> FetchTask {
        FetchTask(
            kind: "list", key: "list:\(dataType):\(startDate)..\(endDate)",
            parameters: .object([
                "data_type": .string(dataType), "start_date": .string(startDate), "end_date": .string(endDate),
            ]))
    }

    // MARK: fetch

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        switch task.kind {
        case "document": return try await fetchDocument(task, connection: connection, context: context)
        case "heartrate": return try await fetchHeartrate(task, connection: connection, context: context)
        case "list": return try await fetchList(task, connection: connection, context: context)
        default: throw .malformed("unknown Oura task kind \(task.kind)")
        }
    }

    private func fetchDocument(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let dataType = task.parameters["data_type"]?.string, Self.documentTypes.contains(dataType),
            let id = task.parameters["id"]?.string, Self.isDocumentID(id)
        else { throw .malformed("document task without a known data_type and a usable id") }
        let (document, _) = try await context.getJSON(
            context.url("api", path: "/v2/usercollection/\(dataType)/\(id)"), connection: connection)
        let now = context.now
        // A sleep the user deleted stays in the collection as type "deleted".
        if dataType == "sleep", document["type"]?.string == "deleted" {
            return FetchOutcome(deletedRecordIDs: [id])
        }
        var followUps = [FetchTask]()
        if dataType == "sleep" || dataType == "daily_activity" {
            followUps += heartrateCatchUp(connection: connection, now: now)
        }
        // Today's totals are not mapped until the day is over (see OuraMapping); the first update of a new
        // day is the moment to read yesterday's final totals, in case Oura sends no update for them.
        if dataType == "daily_activity", let day = document["day"]?.string,
            let interval = Self.activityInterval(document), now < interval.end,
            let dayNumber = Self.dayNumber(day)
        {
            followUps.append(
                Self.listTask(
                    "daily_activity", startDate: Self.dateText(dayNumber - 1), endDate: Self.dateText(dayNumber)))
        }
        return FetchOutcome(
            records: [Self.record(dataType, id: id, document: document, fetchedAt: now)], followUps: followUps)
    }

    private func fetchHeartrate(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let start = task.parameters["start"]?.int, let end = task.parameters["end"]?.int, start < end else {
            throw .malformed("heartrate task without start < end")
        }
        var query = [("start_datetime", Self.isoSeconds(start)), ("end_datetime", Self.isoSeconds(end))]
        if let token = task.parameters["next_token"]?.string { query.append(("next_token", token)) }
        let (page, _) = try await context.getJSON(
            context.url("api", path: "/v2/usercollection/heartrate", query: query), connection: connection)
        guard let rows = page["data"]?.array else { throw .malformed("heartrate page has no data array") }
        var outcome = FetchOutcome()
        if !rows.isEmpty {
            let body = JSONValue.object(["data_type": .string("heartrate"), "data": .array(rows)])
            outcome.records = [RawRecord(key: task.key, body: body.bytes)]
        }
        if let next = page["next_token"]?.string, !next.isEmpty {
            let pageNumber = (task.parameters["page"]?.int ?? 1) + 1
            var parameters = task.parameters.object ?? [:]
            parameters["next_token"] = .string(next)
            parameters["page"] = .int(pageNumber)
            outcome.followUps = [
                FetchTask(
                    kind: "heartrate", key: "\(Self.heartrateTask(start: start, end: end).key):p\(pageNumber)",
                    parameters: .object(parameters))
            ]
        } else {
            // The whole range is in: later catch-ups start from here.
            outcome.cursor = Self.cursor(
                connection.cursor, heartrateUntil: min(end, context.now.millisecondsSinceEpoch))
        }
        return outcome
    }

    private func fetchList(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let dataType = task.parameters["data_type"]?.string, Self.documentTypes.contains(dataType),
            let startDate = task.parameters["start_date"]?.string, Self.dayNumber(startDate) != nil,
            let endDate = task.parameters["end_date"]?.string, Self.dayNumber(endDate) != nil
        else { throw .malformed("list task without a known data_type and dates") }
        var query = [("start_date", startDate), ("end_date", endDate)]
        if let token = task.parameters["next_token"]?.string { query.append(("next_token", token)) }
        let (page, _) = try await context.getJSON(
            context.url("api", path: "/v2/usercollection/\(dataType)", query: query), connection: connection)
        guard let documents = page["data"]?.array else { throw .malformed("\(dataType) listing has no data array") }
        let now = context.now
        var outcome = FetchOutcome()
        for document in documents {
            guard let id = document["id"]?.idString, Self.isDocumentID(id) else { continue }
            if dataType == "sleep", document["type"]?.string == "deleted" {
                outcome.deletedRecordIDs.append(id)
            } else {
                outcome.records.append(Self.record(dataType, id: id, document: document, fetchedAt: now))
            }
        }
        if let next = page["next_token"]?.string, !next.isEmpty {
            let pageNumber = (task.parameters["page"]?.int ?? 1) + 1
            var parameters = task.parameters.object ?? [:]
            parameters["next_token"] = .string(next)
            parameters["page"] = .int(pageNumber)
            outcome.followUps = [
                FetchTask(
                    kind: "list",
                    key: "\(Self.listTask(dataType, startDate: startDate, endDate: endDate).key):p\(pageNumber)",
                    parameters: .object(parameters))
            ]
        }
        return outcome
    }

    /// A document as kept: wrapped with its type and the time it was read, so mapping can tell a
    /// finished day's totals from a day still in progress, and a replay decides the same way.
    static func record(_ dataType: String, id: String, document: JSONValue, fetchedAt: Timestamp) -> RawRecord {
        let body = JSONValue.object([
            "data_type": .string(dataType), "fetched_at": .string(fetchedAt.description), "document": document,
        ])
        return RawRecord(key: "\(dataType):\(id)", body: body.bytes)
    }

    /// Heart rate since the last range fetched (less an hour, for rows the ring synced late), up to now
    /// floored to 5 minutes so that the sleep and daily-activity notifications of one sync ask for the
    /// same ranges and the engine keeps one job.
    func heartrateCatchUp(connection: ConnectionContext, now: Timestamp) -> [FetchTask] {
        guard Self.grants(connection, "heartrate") else { return [] }
        let step: Int64 = 300_000
        let to = now.millisecondsSinceEpoch - now.millisecondsSinceEpoch % step
        let until = connection.cursor["heartrate_until"]?.string.flatMap { Timestamp(rfc3339: $0) }
        var from = until.map { $0.millisecondsSinceEpoch - Self.hourMillis } ?? to - Self.dayMillis
        from = max(from - from % step, to - Self.catchUpDays * Self.dayMillis)
        return Self.heartrateTasks(from: from, to: to)
    }

    static func heartrateTasks(from: Int64, to: Int64) -> [FetchTask] {
        var tasks = [FetchTask]()
        var start = from
        while start < to {
            let end = min(start + heartrateChunk, to)
            tasks.append(heartrateTask(start: start, end: end))
            start = end
        }
        return tasks
    }

    /// Listings by date cover the user's local days: the UTC window is widened by a day each side (the
    /// user's offset, and `end_date` being inclusive or not, both stop mattering; ids dedupe).
    static func listTasks(_ dataType: String, from: Int64, to: Int64) -> [FetchTask] {
        let first = floorDiv(from, dayMillis) - 1
        let last = floorDiv(to, dayMillis) + 1
        var tasks = [FetchTask]()
        var day = first
        while day < last {
            let end = min(day + listChunkDays, last)
            tasks.append(listTask(dataType, startDate: dateText(day), endDate: dateText(end)))
            day = end
        }
        return tasks
    }

    /// The connection's scopes, when known, decide which collections are worth asking for.
    static func grants(_ connection: ConnectionContext, _ scope: String) -> Bool {
        connection.scopes.isEmpty || connection.scopes.contains(scope)
    }

    static func cursor(_ current: JSONValue, heartrateUntil end: Int64) -> JSONValue? {
        let known = current["heartrate_until"]?.string.flatMap { Timestamp(rfc3339: $0) }
        if let known, known.millisecondsSinceEpoch >= end { return nil }
        var object = current.object ?? [:]
        object["heartrate_until"] = .string(Timestamp(millisecondsSinceEpoch: end).description)
        return .object(object)
    }

    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let start = from.millisecondsSinceEpoch
        let end = to.millisecondsSinceEpoch
        guard start < end else { return [] }
        var tasks = [FetchTask]()
        for (dataType, scope) in Self.documentScopes where Self.grants(connection, scope) {
            tasks += Self.listTasks(dataType, from: start, to: end)
        }
        if Self.grants(connection, "heartrate") { tasks += Self.heartrateTasks(from: start, to: end) }
        return tasks
    }

    /// Everything since `since` (less an hour), reaching back at most ``reconcileDays``.
    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let now = Timestamp.now
        let from = max(
            since.millisecondsSinceEpoch - Self.hourMillis,
            now.millisecondsSinceEpoch - Self.reconcileDays * Self.dayMillis)
        return backfillTasks(from: Timestamp(millisecondsSinceEpoch: from), to: now, connection: connection)
    }

    // MARK: dates

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : (a - b + 1) / b }

    /// `2026-11-20T07:05:00Z`: Oura's datetime parameters, without the milliseconds it does not need.
    static func isoSeconds(_ milliseconds: Int64) -> String {
        String(Timestamp(millisecondsSinceEpoch: milliseconds).description.prefix(19)) + "Z"
    }

    /// Days since 1970-01-01 for `YYYY-MM-DD`, or `nil` for anything else.
    static func dayNumber(_ date: String) -> Int64? {
        guard date.utf8.count == 10, let midnight = Timestamp(rfc3339: date + "T00:00:00Z") else { return nil }
        return floorDiv(midnight.millisecondsSinceEpoch, dayMillis)
    }

    static func dateText(_ day: Int64) -> String {
        String(Timestamp(millisecondsSinceEpoch: day * dayMillis).description.prefix(10))
    }

    // MARK: subscriptions

    /// One subscription per (data type, event type) for the collections pulsegate maps, all pointing at
    /// this deployment's callback: renews those expiring within ``renewAhead`` and creates missing ones.
    /// Subscriptions with another callback (another deployment of the same app) are left alone. Oura
    /// checks the callback with a GET while the create request is open, so this runs once the server is
    /// listening. A failure for one pair does not stop the others; the first is thrown at the end.
    public func maintainSubscriptions(context: VendorContext) async throws(VendorError) {
        guard let verificationToken = context.settings.secrets["verification_token"] else {
            context.logger.warning("oura: no webhook.verification_token configured; subscriptions not managed")
            return
        }
        let listURL = context.url("api", path: "/v2/webhook/subscription")
        let list = try await context.http.send(
            OutboundRequest(method: .get, url: listURL, headers: Self.appHeaders(context)), user: nil)
        try VendorContext.expectSuccess(list, url: listURL)
        guard let existing = (try? JSONValue.parse(list.body))?.array else {
            throw .malformed("webhook/subscription did not answer a list")
        }
        let now = context.now
        var kept = [String: JSONValue]()
        var firstError: VendorError?
        for dataType in Self.documentTypes {
            for eventType in Self.eventTypes {
                let pair = "\(dataType)/\(eventType)"
                let mine = existing.first {
                    $0["data_type"]?.string == dataType && $0["event_type"]?.string == eventType
                        && $0["callback_url"]?.string == context.settings.webhookURL
                }
                do {
                    if let mine, let id = mine["id"]?.idString {
                        let current =
                            Self.needsRenewal(mine, now: now) ? try await renewSubscription(id, context: context) : mine
                        kept[pair] = Self.summary(current)
                    } else if let created = try await createSubscription(
                        dataType: dataType, eventType: eventType, verificationToken: verificationToken,
                        context: context)
                    {
                        kept[pair] = Self.summary(created)
                    }
                } catch {
                    context.logger.error(
                        "oura: webhook subscription not maintained", metadata: ["pair": "\(pair)", "error": "\(error)"])
                    if firstError == nil { firstError = error }
                }
            }
        }
        try await context.state.setValue("subscriptions", .object(kept))
        if let firstError { throw firstError }
    }

    static func appHeaders(_ context: VendorContext) -> [(name: String, value: String)] {
        [
            ("x-client-id", context.settings.clientID), ("x-client-secret", context.settings.clientSecret.text),
            ("Accept", "application/json"),
        ]
    }

    /// Due when `expiration_time` is within ``renewAhead``, or unreadable (renewing is harmless).
    static func needsRenewal(_ subscription: JSONValue, now: Timestamp) -> Bool {
        guard let text = subscription["expiration_time"]?.string, let expiry = Timestamp(rfc3339: text) else {
            return true
        }
        return expiry.millisecondsSinceEpoch - now.millisecondsSinceEpoch <= renewAhead
    }

    static func summary(_ subscription: JSONValue) -> JSONValue {
        .object([
            "id": subscription["id"] ?? .null, "expiration_time": subscription["expiration_time"] ?? .null,
        ])
    }

    private func renewSubscription(_ id: String, context: VendorContext) async throws(VendorError) -> JSONValue {
        guard Self.isDocumentID(id) else { throw .malformed("subscription id '\(id.prefix(60))' refused") }
        let url = context.url("api", path: "/v2/webhook/subscription/renew/\(id)")
        let response = try await context.http.send(
            OutboundRequest(method: .put, url: url, headers: Self.appHeaders(context)), user: nil)
        try VendorContext.expectSuccess(response, url: url)
        context.logger.info("oura: webhook subscription renewed", metadata: ["id": "\(id)"])
        guard let renewed = try? JSONValue.parse(response.body), renewed["id"] != nil else {
            return .object(["id": .string(id)])
        }
        return renewed
    }

    /// The created subscription, or `nil` when Oura answers 409 (the pair exists, made by someone else
    /// in the meantime or for another callback).
    private func createSubscription(
        dataType: String, eventType: String, verificationToken: Secret, context: VendorContext
    ) async throws(VendorError) -> JSONValue? {
        let url = context.url("api", path: "/v2/webhook/subscription")
        let body = JSONValue.object([
            "callback_url": .string(context.settings.webhookURL),
            "verification_token": .string(verificationToken.text),
            "event_type": .string(eventType), "data_type": .string(dataType),
        ])
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: url, headers: Self.appHeaders(context) + [("Content-Type", "application/json")],
                body: body.bytes, idempotent: false),
            user: nil)
        if response.status == 409 {
            context.logger.notice(
                "oura: webhook subscription exists already", metadata: ["pair": "\(dataType)/\(eventType)"])
            return nil
        }
        try VendorContext.expectSuccess(response, url: url)
        guard let created = try? JSONValue.parse(response.body), created["id"]?.idString != nil else {
            throw .malformed("webhook/subscription create answered without an id")
        }
        context.logger.notice(
            "oura: webhook subscription created",
            metadata: ["pair": "\(dataType)/\(eventType)", "id": "\(created["id"]?.idString ?? "?")"])
        return created
    }

    // MARK: rate limits

    /// Oura's 429 carries `Retry-After` (honoured by the HTTP client) and `X-RateLimit-Reset` (epoch
    /// seconds); the latter is used when the former is missing, capped at ten minutes.
    public var rateLimitHeaders: VendorHTTP.HeaderReader? { Self.readRateLimitHeaders }

    static let readRateLimitHeaders: VendorHTTP.HeaderReader = { response, now in
        guard response.status == 429, VendorHTTP.retryAfter(response) == nil,
            let reset = response.header("X-RateLimit-Reset").flatMap({
                Int64($0.trimmingCharacters(in: .whitespaces))
            })
        else { return nil }
        let wait = reset * 1000 - now.millisecondsSinceEpoch
        guard wait > 0 else { return nil }
        return .milliseconds(min(wait, 600_000))
    }
}

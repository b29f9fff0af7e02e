import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// Polar AccessLink v3: exercises with their samples, continuous heart rate, sleep.
///
/// Polar pushes one notification per new exercise, sleep or day of continuous heart rate to a single
/// app-wide webhook; the notification names the user and the data (a URL, a date) and every fetch is
/// made with that user's token. Notifications are signed with a key Polar hands out exactly once, in
/// the answer to the webhook's creation, so the adapter creates the webhook itself and keeps the key.
/// Before a user's data is reachable the user must be registered (`POST /v3/users`); there are no
/// refresh tokens: the access token is long-lived and a user links again when it expires.
public struct PolarAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    /// The events the webhook subscribes to: the ones ``notifications(in:)`` turns into fetches.
    static let events = ["EXERCISE", "SLEEP", "CONTINUOUS_HEART_RATE"]

    /// Where the webhook's signing key is kept (vendor state) and configured (`webhook.signature_secret_key`).
    static let secretName = "signature_secret_key"

    // MARK: OAuth

    /// The vendor user id is the token response's `x_user_id`; then the user is registered, which
    /// Polar requires before it serves any data. The member id Polar asks for is that same user id: it
    /// is stable across re-links (a second registration answers 409, which is fine) and tells Polar
    /// nothing about the person behind the connection that it does not already know.
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        guard let userID = grant.raw["x_user_id"]?.idString, PayloadText.isPathSegment(userID) else {
            throw .malformed("token response has no x_user_id")
        }
        let url = context.url("api", path: "/users")
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: url,
                headers: [
                    ("Authorization", "Bearer \(grant.accessToken.text)"), ("Content-Type", "application/json"),
                    ("Accept", "application/json"),
                ],
                body: JSONValue.object(["member-id": .string(userID)]).bytes,
                // A repeat after an unknown outcome answers 409, which counts as success.
                idempotent: true),
            user: nil)
        if response.status == 409 { return userID }
        try VendorContext.expectSuccess(response, url: url)
        return userID
    }

    /// `DELETE /v3/users/{user-id}`: deregisters the user, which also revokes the token.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        guard let userID = connection.vendorUserID, PayloadText.isPathSegment(userID) else {
            context.logger.warning(
                "polar: connection has no Polar user id; nothing to deregister",
                metadata: ["connection": "\(connection.id)"])
            return
        }
        let url = context.url("api", path: "/users/\(userID)")
        let response = try await context.http.send(
            OutboundRequest(
                method: .delete, url: url, headers: [("Authorization", "Bearer \(connection.accessToken.text)")]),
            user: connection.id)
        // 404: already deregistered; 401: the token is already dead. Either way the grant is gone.
        if response.status == 404 || response.status == 401 { return }
        try VendorContext.expectSuccess(response, url: url)
    }

    // MARK: webhooks

    /// Polar pings the URL while the webhook is being created, before the signing key exists, and
    /// creates the webhook only if the ping is answered 200.
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? {
        // Only a body that mentions PING can be one; the rest skip the parse (this runs per request).
        guard request.method == "POST", request.body.count < 4096,
            request.body.withUnsafeBufferPointer({ Self.containsPING($0) }),
            let json = try? JSONValue.parse(request.body), json["event"]?.string == "PING"
        else { return nil }
        return WebhookAnswer(status: 200)
    }

    static func containsPING(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let needle = Array("PING".utf8)
        guard bytes.count >= needle.count else { return false }
        for i in 0...(bytes.count - needle.count) where bytes[i] == needle[0] {
            if bytes[i + 1] == needle[1], bytes[i + 2] == needle[2], bytes[i + 3] == needle[3] { return true }
        }
        return false
    }

    /// `Polar-Webhook-Signature` is hex HMAC-SHA256 of the raw body. The key is the one kept when the
    /// adapter created the webhook, or the one configured (a webhook created by hand); either may sign.
    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        var keys = [Secret]()
        do {
            if let stored = try await context.state.secret(Self.secretName) { keys.append(stored) }
        } catch {
            context.logger.error("polar: cannot read the stored webhook key", metadata: ["error": "\(error)"])
        }
        if let configured = context.settings.secrets[Self.secretName] { keys.append(configured) }
        keys.removeAll(where: \.isEmpty)
        guard !keys.isEmpty else {
            return .rejected(
                reason: "no signature_secret_key known (webhook not created by pulsegate and none configured)",
                label: "no_key")
        }
        // Polar documents Polar-Webhook-Signature; one integration reads an X- prefixed name.
        guard let provided = request.header("Polar-Webhook-Signature") ?? request.header("X-Polar-Webhook-Signature")
        else { return .rejected(reason: "Polar-Webhook-Signature missing", label: "missing_signature") }
        for key in keys
        where WebhookSignature.matchesHex(provided, WebhookSignature.hmacSHA256(key: key.bytes, request.body)) {
            return .authentic
        }
        return .rejected(reason: "Polar-Webhook-Signature does not match", label: "bad_signature")
    }

    /// `{"event","user_id","entity_id","timestamp","url"}`; day-based events may carry `date` instead
    /// of `entity_id`.
    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        let json: JSONValue
        let event: String
        do {
            json = try JSONValue.parse(body)
            guard let name = try json.require("event").string else {
                throw VendorError.malformed("event is not a string")
            }
            event = name
        } catch let error as VendorError {
            throw error
        } catch let error as JSONValue.Missing {
            throw .missing(error)
        } catch {
            throw .malformed("\(error)")
        }
        if event == "PING" { return [] }
        guard let user = json["user_id"]?.idString else { throw .malformed("\(event) notification without user_id") }
        let url = json["url"]?.string
        switch event {
        case "EXERCISE":
            let id = json["entity_id"]?.idString ?? url.flatMap { URL(string: $0)?.lastPathComponent }
            guard let id, PayloadText.isPathSegment(id) else {
                throw .malformed("EXERCISE notification without entity_id")
            }
            return [VendorNotification(vendorUserID: user, action: .fetch(Self.exerciseTask(id, url: url)))]
        case "SLEEP", "CONTINUOUS_HEART_RATE":
            guard let date = Self.notificationDate(json) else {
                throw .malformed("\(event) notification without a date")
            }
            let task = event == "SLEEP" ? Self.sleepTask(date) : Self.heartRateTask(date)
            return [VendorNotification(vendorUserID: user, action: .fetch(task))]
        default:
            return [VendorNotification(vendorUserID: user, action: .ignore("\(event) is not mapped"))]
        }
    }

    /// The day a notification is about: `date`, else a date-shaped `entity_id`, else the URL's last path
    /// component (`…/continuous-heart-rate/2026-11-20`).
    static func notificationDate(_ json: JSONValue) -> String? {
        let candidates = [
            json["date"]?.string, json["entity_id"]?.string,
            json["url"]?.string.flatMap { URL(string: $0)?.lastPathComponent },
        ]
        return candidates.compactMap { $0 }.first(where: PolarTime.isDate)
    }

    public static func exerciseTask(_ id: String, url: String? = nil) -> FetchTask {
        var parameters: [String: JSONValue] = ["id": .string(id)]
        if let url { parameters["url"] = .string(url) }
        return FetchTask(kind: "exercise", key: "exercise:\(id)", parameters: .object(parameters))
    }

    /// One day of continuous heart rate (and that night's sleep, which tells the day's UTC offset).
    public static func heartRateTask(_ date: String) -> FetchTask {
        FetchTask(kind: "heartrate", key: "heartrate:\(date)", parameters: .object(["date": .string(date)]))
    }

    public static func sleepTask(_ date: String) -> FetchTask {
        FetchTask(kind: "sleep", key: "sleep:\(date)", parameters: .object(["date": .string(date)]))
    }

    // MARK: fetch

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        switch task.kind {
        case "exercise":
            guard let id = task.parameters["id"]?.idString, PayloadText.isPathSegment(id) else {
                throw .malformed("exercise task without a valid id")
            }
            let url: URL
            if let payloadURL = task.parameters["url"]?.string {
                // The URL came from a notification: only a host of Polar's (or a configured one) is fetched.
                url = Self.withSamples(try context.checkPayloadURL(payloadURL))
            } else {
                url = context.url("api", path: "/exercises/\(id)", query: [("samples", "true")])
            }
            let (exercise, body) = try await context.getJSON(url, connection: connection)
            var cursor: JSONValue?
            if let offset = PolarMapping.field(exercise, "start_time_utc_offset")?.int,
                let start = PolarMapping.field(exercise, "start_time")?.string
            {
                cursor = Self.learnOffset(offset, on: String(start.prefix(10)), cursor: connection.cursor)
            }
            return FetchOutcome(records: [RawRecord(key: "exercise:\(id)", body: body)], cursor: cursor)
        case "exercises":
            return try await listExercises(task, connection: connection, context: context)
        case "heartrate":
            return try await fetchHeartRate(try Self.date(of: task), connection: connection, context: context)
        case "sleep":
            let date = try Self.date(of: task)
            guard
                let (sleep, body) = try await getIfPresent(
                    "/users/sleep/\(date)", connection: connection, context: context)
            else { return FetchOutcome() }
            var cursor: JSONValue?
            if let end = sleep["sleep_end_time"]?.string, let offset = PolarTime.offsetMinutes(rfc3339: end) {
                cursor = Self.learnOffset(offset, on: date, cursor: connection.cursor)
            }
            return FetchOutcome(records: [RawRecord(key: "sleep:\(date)", body: body)], cursor: cursor)
        default:
            throw .malformed("unknown Polar task kind \(task.kind)")
        }
    }

    /// `GET /v3/exercises` (about the last 30 days, no samples): one exercise task per listed exercise
    /// that started inside the task's window.
    func listExercises(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        let (list, _) = try await context.getJSON(context.url("api", path: "/exercises"), connection: connection)
        guard let exercises = list.array ?? list["data"]?.array else { throw .malformed("exercises is not an array") }
        let after = task.parameters["after"]?.int
        let before = task.parameters["before"]?.int
        var followUps = [FetchTask]()
        var newest: (date: String, offset: Int64)?
        for exercise in exercises {
            guard let id = exercise["id"]?.idString, PayloadText.isPathSegment(id) else { continue }
            let offset = PolarMapping.field(exercise, "start_time_utc_offset")?.int
            if let text = PolarMapping.field(exercise, "start_time")?.string,
                let start = PolarTime.instant(local: text, utcOffsetMinutes: offset ?? 0)
            {
                if let after, start.millisecondsSinceEpoch < after { continue }
                if let before, start.millisecondsSinceEpoch >= before { continue }
                if let offset, newest == nil || String(text.prefix(10)) > newest!.date {
                    newest = (String(text.prefix(10)), offset)
                }
            }
            followUps.append(Self.exerciseTask(id))
        }
        let cursor = newest.flatMap { Self.learnOffset($0.offset, on: $0.date, cursor: connection.cursor) }
        return FetchOutcome(followUps: followUps, cursor: cursor)
    }

    /// Continuous heart rate carries wall-clock times and no zone. The offset comes from that night's
    /// sleep (`sleep_end_time`, the morning of the same date), else from the connection's most recent
    /// exercise or sleep, and is stored with the record; when neither is known the record is kept but
    /// maps to nothing until a later fetch knows better.
    func fetchHeartRate(_ date: String, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard
            let (day, _) = try await getIfPresent(
                "/users/continuous-heart-rate/\(date)", connection: connection, context: context)
        else { return FetchOutcome() }
        var records = [RawRecord]()
        var cursor: JSONValue?
        var offset: Int64?
        var source = "unknown"
        do {
            if let (sleep, body) = try await getIfPresent(
                "/users/sleep/\(date)", connection: connection, context: context),
                let end = sleep["sleep_end_time"]?.string, let sleepOffset = PolarTime.offsetMinutes(rfc3339: end)
            {
                records.append(RawRecord(key: "sleep:\(date)", body: body))
                offset = sleepOffset
                source = "sleep"
                cursor = Self.learnOffset(sleepOffset, on: date, cursor: connection.cursor)
            }
        } catch {
            // Sleep only lends its offset here; a refusal of it must not cost the heart rate.
            guard case .rejected = error else { throw error }
        }
        if offset == nil, let recent = connection.cursor["utc_offset_minutes"]?.int {
            offset = recent
            source = "recent"
        }
        if offset == nil {
            context.logger.warning(
                "polar: UTC offset unknown; continuous heart rate kept unmapped",
                metadata: ["connection": "\(connection.id)", "date": "\(date)"])
        }
        let wrapped = JSONValue.object([
            "continuous_heart_rate": day, "utc_offset_minutes": offset.map { .int($0) } ?? .null,
            "utc_offset_source": .string(source),
        ])
        records.insert(RawRecord(key: "heartrate:\(date)", body: wrapped.bytes), at: 0)
        return FetchOutcome(records: records, cursor: cursor)
    }

    /// A GET of an API path where "no data for this day" is an answer (204, 404), not an error.
    func getIfPresent(_ path: String, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> (JSONValue, [UInt8])?
    {
        let url = context.url("api", path: path)
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url,
                headers: [("Authorization", "Bearer \(connection.accessToken.text)"), ("Accept", "application/json")]),
            user: connection.id)
        if response.status == 204 || response.status == 404 { return nil }
        try VendorContext.expectSuccess(response, url: url)
        do {
            return (try JSONValue.parse(response.body), response.body)
        } catch {
            throw .malformed("\(url.path): \(error)")
        }
    }

    static func date(of task: FetchTask) throws(VendorError) -> String {
        guard let date = task.parameters["date"]?.string, PolarTime.isDate(date) else {
            throw .malformed("\(task.kind) task without a YYYY-MM-DD date")
        }
        return date
    }

    /// Adds `samples=true` to a notification's exercise URL, keeping whatever query it has.
    static func withSamples(_ url: URL) -> URL {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return url }
        var items = components.queryItems ?? []
        items.removeAll { $0.name == "samples" }
        items.append(URLQueryItem(name: "samples", value: "true"))
        components.queryItems = items
        return components.url ?? url
    }

    /// The connection's latest known UTC offset (for continuous heart rate, which carries none). Only a
    /// newer date replaces it, so a backfill of old days does not overwrite today's offset.
    static func learnOffset(_ minutes: Int64, on date: String, cursor: JSONValue) -> JSONValue? {
        let knownDate = cursor["utc_offset_date"]?.string
        if let knownDate, knownDate > date { return nil }
        if knownDate == date, cursor["utc_offset_minutes"]?.int == minutes { return nil }
        var next = cursor.object ?? [:]
        next["utc_offset_minutes"] = .int(minutes)
        next["utc_offset_date"] = .string(date)
        return .object(next)
    }

    /// The exercise listing, and each day's continuous heart rate (which brings that night's sleep).
    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let after = from.millisecondsSinceEpoch
        let before = to.millisecondsSinceEpoch
        let listing = FetchTask(
            kind: "exercises", key: "exercises:\(after)-\(before)",
            parameters: .object(["after": .int(after), "before": .int(before)]))
        return [listing] + Self.days(from: from, to: to).map(Self.heartRateTask)
    }

    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let after = since.millisecondsSinceEpoch
        let listing = FetchTask(
            kind: "exercises", key: "exercises:\(after)-", parameters: .object(["after": .int(after)]))
        return [listing] + Self.days(from: since, to: .now).map(Self.heartRateTask)
    }

    /// The UTC dates from `from` through `to`, at most the last 31 of them (Polar's horizon is 30 days).
    static func days(from: Timestamp, to: Timestamp) -> [String] {
        let day: Int64 = 86_400_000
        guard to >= from else { return [] }
        let last = to.millisecondsSinceEpoch / day
        let first = max(from.millisecondsSinceEpoch / day, last - 30)
        return (first...last).map { PolarTime.date(Timestamp(millisecondsSinceEpoch: $0 * day)) }
    }

    // MARK: mapping

    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        let json = try JSONValue.vendorPayload(record.body)
        if record.key.hasPrefix("exercise:") {
            return try PolarMapping.exercise(
                json, key: record.key, subject: connection.subject, vendor: manifest.id, now: now)
        }
        if record.key.hasPrefix("heartrate:") {
            return try PolarMapping.continuousHeartRate(
                json, subject: connection.subject, vendor: manifest.id, now: now)
        }
        if record.key.hasPrefix("sleep:") {
            return try PolarMapping.sleep(json, subject: connection.subject, vendor: manifest.id, now: now)
        }
        throw .malformed("unknown Polar record \(record.key)")
    }

    // MARK: subscription

    /// One webhook per app, managed with the app's client credentials (Basic). Created when missing;
    /// the signing key in the create answer is Polar's only hand-out of it and is kept at once. Polar
    /// pings the URL during the create call, so this runs once the server is listening.
    public func maintainSubscriptions(context: VendorContext) async throws(VendorError) {
        let basic = OAuthClient.basicAuthorization(context.settings.clientID, context.settings.clientSecret)
        let url = context.url("api", path: "/webhooks")
        let list = try await context.http.send(
            OutboundRequest(
                method: .get, url: url, headers: [("Authorization", basic), ("Accept", "application/json")]),
            user: nil)
        var existing = [JSONValue]()
        if list.status != 204 {
            try VendorContext.expectSuccess(list, url: url)
            // `data` is documented as the webhook; Polar answers a list. Either is read.
            let data = (try? JSONValue.parse(list.body))?["data"]
            existing = data?.array ?? data.map { $0.object == nil ? [] : [$0] } ?? []
        }
        if let mine = existing.first(where: { $0["url"]?.string == context.settings.webhookURL }) {
            if let id = mine["id"]?.idString { try await context.state.setValue("webhook_id", .string(id)) }
            let stored = try await context.state.secret(Self.secretName)
            if stored == nil, context.settings.secrets[Self.secretName] == nil {
                context.logger.warning(
                    "polar: the webhook exists but its signature_secret_key is unknown; configure webhook.signature_secret_key or delete the webhook so pulsegate recreates it"
                )
            }
            return
        }
        if let other = existing.first {
            context.logger.warning(
                "polar: the app's one webhook points elsewhere; not replacing it",
                metadata: ["url": "\(other["url"]?.string ?? "?")"])
            return
        }
        let body = JSONValue.object([
            "events": .array(Self.events.map { .string($0) }), "url": .string(context.settings.webhookURL),
        ])
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: url,
                headers: [
                    ("Authorization", basic), ("Content-Type", "application/json"), ("Accept", "application/json"),
                ],
                body: body.bytes, idempotent: false),
            user: nil)
        try VendorContext.expectSuccess(response, url: url)
        let created = (try? JSONValue.parse(response.body)).map { $0["data"] ?? $0 }
        guard let key = created?["signature_secret_key"]?.string, !key.isEmpty else {
            throw .malformed("webhook create answered without a signature_secret_key")
        }
        try await context.state.setSecret(Self.secretName, Secret(key))
        let id = created?["id"]?.idString
        if let id { try await context.state.setValue("webhook_id", .string(id)) }
        context.logger.notice("polar: webhook created", metadata: ["id": "\(id ?? "?")"])
    }

    // MARK: rate limits

    /// `RateLimit-Usage`, `RateLimit-Limit` and `RateLimit-Reset` each hold "short-term, long-term"
    /// (15 minutes, 24 hours); Reset is the seconds until that window starts over. When a window's usage
    /// reaches its limit, pause until it resets (the window's length when Reset is absent).
    public var rateLimitHeaders: VendorHTTP.HeaderReader? { Self.readRateLimitHeaders }

    static let readRateLimitHeaders: VendorHTTP.HeaderReader = { response, _ in
        let usage = response.integerList("RateLimit-Usage")
        let limit = response.integerList("RateLimit-Limit")
        let reset = response.integerList("RateLimit-Reset")
        let windows = [900, 86_400]
        var pause: Int?
        for i in 0..<min(usage.count, limit.count, windows.count) where limit[i] > 0 && usage[i] >= limit[i] {
            let seconds = i < reset.count ? max(1, reset[i]) : windows[i]
            pause = max(pause ?? 0, seconds)
        }
        return pause.map { .seconds($0) }
    }
}

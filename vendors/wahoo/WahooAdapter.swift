import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// Wahoo Cloud API: workouts recorded by ELEMNT head units, KICKR trainers and the Wahoo apps.
///
/// Wahoo posts one `workout_summary` message to the app's webhook whenever a workout's summary is
/// created or updated, for users who granted `offline_data`. The message carries the whole summary,
/// including the URL of the workout's FIT file on Wahoo's CDN; there is no streams endpoint, so every
/// sample comes from that file. Messages are not signed: they carry the webhook token set in the
/// developer portal, which is the only proof of origin. A forged message can at worst make pulsegate
/// download a file from one of Wahoo's own hosts (payload URLs are checked), never from elsewhere.
public struct WahooAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    /// Config names of the webhook token (`vendors.wahoo.webhook.webhook_token`) and of the one it
    /// replaced, accepted during a rotation while Wahoo still retries messages sent with it.
    static let tokenSecret = "webhook_token"
    static let previousTokenSecret = "previous_webhook_token"

    /// Workouts per listing page (Wahoo's default is 30; the answer's `per_page` and `total` drive paging).
    static let perPage = 50
    /// The silence watchdog lists workouts that started up to this long before the last sync: a ride is
    /// often uploaded hours after it started, and the listing is ordered by start.
    static let reconcileSlackMillis: Int64 = 48 * 3_600_000

    // MARK: OAuth

    /// Wahoo answers `created_at` (epoch seconds) beside `expires_in`. The expiry is the earlier of
    /// `created_at + expires_in` and `now + expires_in`: a token minted earlier than the answer (or a
    /// vendor clock behind ours) must not be used past its end. A `created_at` that would put the
    /// expiry in the past is ignored, so a skewed clock cannot make every fresh token look expired.
    public func readTokenResponse(
        _ response: InboundResponse, client: OAuthClient, now: Timestamp, previousRefreshToken: Secret?
    ) throws(OAuthError) -> TokenGrant {
        var grant = try client.parseTokenResponse(response, now: now, previousRefreshToken: previousRefreshToken)
        grant.expiresAt = Self.expiry(grant.raw, relative: grant.expiresAt, now: now)
        return grant
    }

    static func expiry(_ raw: JSONValue, relative: Timestamp?, now: Timestamp) -> Timestamp? {
        guard let relative, let created = WahooMapping.number(raw["created_at"]),
            let lifetime = WahooMapping.number(raw["expires_in"])
        else { return relative }
        let absolute = Timestamp(millisecondsSinceEpoch: Int64(((created + lifetime) * 1000).rounded()))
        return absolute < relative && absolute > now ? absolute : relative
    }

    /// The id webhooks name the user by comes from `GET /v1/user` (scope `user_read`). Without
    /// `workouts_read` nothing can be fetched, so such a link is refused; without `offline_data` Wahoo
    /// sends no webhooks, which only the silence watchdog's polling makes up for, so it is logged.
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        if let granted = grant.scopes {
            guard granted.contains("workouts_read") else {
                throw .rejected(
                    "workout access was not granted (granted: \(granted.joined(separator: " "))); allow workouts")
            }
            if !granted.contains("offline_data") {
                context.logger.warning(
                    "wahoo: offline_data not granted; Wahoo sends no webhooks for this user, workouts arrive only by polling"
                )
            }
        }
        let linking = ConnectionContext(
            id: "link", subject: "link", vendorUserID: nil, scopes: grant.scopes ?? [], accessToken: grant.accessToken)
        let (user, _) = try await context.getJSON(context.url("api", path: "/user"), connection: linking)
        guard let id = user["id"]?.idString, PayloadText.isPathSegment(id) else {
            throw .malformed("/v1/user has no usable id")
        }
        return id
    }

    /// `DELETE /v1/permissions` withdraws the app's access for the token's user.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let url = context.url("revoke")
        let response = try await context.http.send(
            OutboundRequest(
                method: .delete, url: url,
                headers: [("Authorization", "Bearer \(connection.accessToken.text)"), ("Accept", "application/json")]),
            user: connection.id)
        // 401: the token is dead already; 404: nothing left to withdraw. Either way access is gone.
        if response.status == 401 || response.status == 404 { return }
        try VendorContext.expectSuccess(response, url: url)
    }

    // MARK: webhooks

    /// Wahoo checks nothing when the webhook URL is set in the portal.
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? { nil }

    /// The body's `webhook_token` must equal the configured token ("any request that doesn't include this
    /// token should be ignored"), compared in constant time. There is no signature and no timestamp, so
    /// replays are absorbed by ``dedupeKey(_:)`` instead.
    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        let tokens = [Self.tokenSecret, Self.previousTokenSecret].compactMap { context.settings.secrets[$0] }
            .filter { !$0.isEmpty }
        guard !tokens.isEmpty else {
            return .rejected(reason: "no vendors.wahoo.webhook.webhook_token configured", label: "no_key")
        }
        guard let json = try? JSONValue.parse(request.body), json.object != nil else {
            return .rejected(reason: "body is not a JSON object", label: "malformed")
        }
        guard let provided = json["webhook_token"]?.idString else {
            return .rejected(reason: "webhook_token missing", label: "missing_signature")
        }
        for token in tokens where WebhookSignature.matchesSecret(provided, token) { return .authentic }
        return .rejected(reason: "webhook_token does not match", label: "bad_signature")
    }

    /// One summary revision is one delivery: Wahoo's retries (30 min to 72 h later) and the duplicates it
    /// warns about carry the same summary id and `updated_at`, while an edited workout gets a new
    /// `updated_at` and is processed again.
    public func dedupeKey(_ request: WebhookRequest) -> String {
        guard let json = try? JSONValue.parse(request.body), let summary = json["workout_summary"],
            let id = summary["id"]?.idString
        else { return request.bodyDigest }
        return "workout_summary:\(id):\(summary["updated_at"]?.string ?? request.bodyDigest)"
    }

    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        let json = try JSONValue.vendorPayload(body)
        guard let event = json["event_type"]?.string else { throw .malformed("webhook without event_type") }
        guard let user = json["user"]?["id"]?.idString, PayloadText.isPathSegment(user) else {
            throw .malformed("\(event) webhook without a usable user.id")
        }
        guard event == "workout_summary" else {
            return [VendorNotification(vendorUserID: user, action: .ignore("\(event) is not mapped"))]
        }
        guard let summary = json["workout_summary"], summary.object != nil else {
            throw .malformed("workout_summary webhook without a workout_summary object")
        }
        guard summary["id"]?.idString != nil else { throw .malformed("workout_summary without an id") }
        return [VendorNotification(vendorUserID: user, action: try Self.action(summary: summary))]
    }

    /// A summary with a file becomes a download of that file; one without a file carries all there is
    /// and is kept as it came.
    static func action(summary: JSONValue) throws(VendorError) -> VendorNotification.Action {
        let workout = summary["workout"]
        guard let workoutID = workout?["id"]?.idString ?? summary["workout_id"]?.idString,
            PayloadText.isPathSegment(workoutID)
        else {
            throw .malformed("workout_summary \(summary["id"]?.idString ?? "?") without a usable workout id")
        }
        if let task = fileTask(workoutID: workoutID, summary: summary) { return .fetch(task) }
        return .records([summaryRecord(workoutID: workoutID, summary: summary, workout: workout)])
    }

    /// The download of a summary's FIT file, or `nil` when the summary has none. The job key names the
    /// summary revision, so an edited workout's new file is fetched while a duplicate is one job.
    public static func fileTask(workoutID: String, summary: JSONValue) -> FetchTask? {
        guard let url = summary["file"]?["url"]?.string, !url.isEmpty else { return nil }
        var parameters: [String: JSONValue] = ["workout_id": .string(workoutID), "url": .string(url)]
        if let id = summary["id"]?.idString { parameters["summary_id"] = .string(id) }
        var key = "workout:\(workoutID)"
        if let updated = summary["updated_at"]?.string {
            parameters["updated_at"] = .string(updated)
            key += "@\(updated)"
        }
        return FetchTask(kind: "file", key: key, parameters: .object(parameters))
    }

    /// `GET /v1/workouts/{id}/workout_summary` for a listed workout whose summary the listing did not
    /// include; the listed workout rides along for its start time.
    public static func summaryTask(workoutID: String, workout: JSONValue?) -> FetchTask {
        var parameters: [String: JSONValue] = ["workout_id": .string(workoutID)]
        if let workout { parameters["workout"] = Self.withoutSummary(workout) }
        return FetchTask(kind: "summary", key: "summary:\(workoutID)", parameters: .object(parameters))
    }

    /// Page `page` of `GET /v1/workouts`, keeping workouts that started in `after..<before` (milliseconds).
    public static func listTask(after: Int64, before: Int64?, page: Int64 = 1) -> FetchTask {
        var parameters: [String: JSONValue] = ["after": .int(after), "page": .int(page)]
        if let before { parameters["before"] = .int(before) }
        let key = "workouts:\(after)-\(before.map(String.init) ?? "")" + (page > 1 ? ":p\(page)" : "")
        return FetchTask(kind: "workouts", key: key, parameters: .object(parameters))
    }

    static func summaryRecord(workoutID: String, summary: JSONValue, workout: JSONValue?) -> RawRecord {
        var object = summary.object ?? [:]
        object["workout"] = nil
        let body = JSONValue.object([
            "workout": workout.map(withoutSummary) ?? .null, "workout_summary": .object(object),
        ])
        return RawRecord(key: WahooMapping.summaryPrefix + workoutID, body: body.bytes)
    }

    static func withoutSummary(_ workout: JSONValue) -> JSONValue {
        guard var object = workout.object else { return workout }
        object["workout_summary"] = nil
        return .object(object)
    }

    // MARK: fetch

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        switch task.kind {
        case "file": return try await fetchFile(task, connection: connection, context: context)
        case "summary": return try await fetchSummary(task, connection: connection, context: context)
        case "workouts": return try await listWorkouts(task, connection: connection, context: context)
        default: throw .malformed("unknown Wahoo task kind \(task.kind)")
        }
    }

    /// The FIT file, from the URL the summary named, once that URL is on one of Wahoo's hosts. The CDN
    /// is not the API: no bearer token is sent to it (it would leak the user's token to the storage
    /// host), and downloads do not spend the API's request budget.
    func fetchFile(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let workoutID = task.parameters["workout_id"]?.string, PayloadText.isPathSegment(workoutID),
            let text = task.parameters["url"]?.string
        else { throw .malformed("file task without a workout_id and a url") }
        let url = try context.checkPayloadURL(text)
        let response = try await context.http.send(
            OutboundRequest(method: .get, url: url, headers: [("Accept", "application/vnd.ant.fit, */*")]),
            user: connection.id, budgeted: false)
        try VendorContext.expectSuccess(response, url: url)
        return FetchOutcome(records: [RawRecord(key: WahooMapping.fitPrefix + workoutID, body: response.body)])
    }

    /// A listed workout's summary. 404: the workout has no summary (yet), so there is nothing to map.
    func fetchSummary(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let workoutID = task.parameters["workout_id"]?.string, PayloadText.isPathSegment(workoutID) else {
            throw .malformed("summary task without a usable workout_id")
        }
        let url = context.url("api", path: "/workouts/\(workoutID)/workout_summary")
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url,
                headers: [("Authorization", "Bearer \(connection.accessToken.text)"), ("Accept", "application/json")]),
            user: connection.id)
        if response.status == 404 { return FetchOutcome() }
        try VendorContext.expectSuccess(response, url: url)
        let json: JSONValue
        do {
            json = try JSONValue.parse(response.body)
        } catch {
            throw .malformed("\(url.path): \(error)")
        }
        // Documented bare; some clients see it wrapped in {"workout_summary": …}.
        let summary = json["workout_summary"] ?? json
        guard summary.object != nil, summary["id"]?.idString != nil else { return FetchOutcome() }
        if let file = Self.fileTask(workoutID: workoutID, summary: summary) { return FetchOutcome(followUps: [file]) }
        let workout = task.parameters["workout"] ?? summary["workout"]
        return FetchOutcome(records: [Self.summaryRecord(workoutID: workoutID, summary: summary, workout: workout)])
    }

    /// One page of `GET /v1/workouts` (newest start first). Each workout in the window becomes a file
    /// download when the listing carries its summary with a file, a kept summary when the summary has
    /// none, and a summary fetch when the listing left the summary out. Paging stops at the first
    /// workout older than the window.
    func listWorkouts(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let after = task.parameters["after"]?.int else { throw .malformed("workouts task without after") }
        let before = task.parameters["before"]?.int
        let page = max(1, task.parameters["page"]?.int ?? 1)
        let (list, _) = try await context.getJSON(
            context.url(
                "api", path: "/workouts", query: [("page", String(page)), ("per_page", String(Self.perPage))]),
            connection: connection)
        guard let workouts = list["workouts"]?.array ?? list.array else {
            throw .malformed("/v1/workouts has no workouts array")
        }
        var outcome = FetchOutcome()
        var reachedOlder = false
        for workout in workouts {
            guard let id = workout["id"]?.idString, PayloadText.isPathSegment(id) else { continue }
            guard let text = workout["starts"]?.string, let starts = Timestamp(rfc3339: text) else { continue }
            if starts.millisecondsSinceEpoch < after {
                reachedOlder = true
                continue
            }
            if let before, starts.millisecondsSinceEpoch >= before { continue }
            let summary = workout["workout_summary"]
            if let summary, summary.object != nil, summary["id"]?.idString != nil {
                if let file = Self.fileTask(workoutID: id, summary: summary) {
                    outcome.followUps.append(file)
                } else {
                    outcome.records.append(Self.summaryRecord(workoutID: id, summary: summary, workout: workout))
                }
            } else {
                outcome.followUps.append(Self.summaryTask(workoutID: id, workout: workout))
            }
        }
        let size = list["per_page"]?.int ?? Int64(Self.perPage)
        let more =
            list["total"]?.int.map { page * size < $0 } ?? (Int64(workouts.count) >= size)
        if !reachedOlder, !workouts.isEmpty, more {
            outcome.followUps.append(Self.listTask(after: after, before: before, page: page + 1))
        }
        return outcome
    }

    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        guard from < to else { return [] }
        return [Self.listTask(after: from.millisecondsSinceEpoch, before: to.millisecondsSinceEpoch)]
    }

    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        [Self.listTask(after: since.millisecondsSinceEpoch - Self.reconcileSlackMillis, before: nil)]
    }

    // MARK: mapping

    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        var source = try samples(of: record, connection: connection, now: now)
        return try source.all()
    }

    /// FIT files are decoded a batch at a time; a summary is a handful of samples at most.
    public func samples(of record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError)
        -> any SampleSource
    {
        if record.key.hasPrefix(WahooMapping.fitPrefix) {
            return WahooMapping.fitSamples(record, subject: connection.subject, vendor: manifest.id, now: now)
        }
        if record.key.hasPrefix(WahooMapping.summaryPrefix) {
            let json = try JSONValue.vendorPayload(record.body)
            return ArraySampleSource(
                try WahooMapping.summary(
                    json, key: record.key, subject: connection.subject, vendor: manifest.id, now: now))
        }
        throw .malformed("unknown Wahoo record \(record.key)")
    }

    // MARK: rate limits

    /// `X-RateLimit-Limit` and `X-RateLimit-Remaining` hold "day, hour, 5 min"; `X-RateLimit-Reset` the
    /// seconds until the limiting window starts over (0 while nothing limits). When a window has nothing
    /// left, every call waits until the reset (the window's length when Wahoo gives none).
    public var rateLimitHeaders: VendorHTTP.HeaderReader? { Self.readRateLimitHeaders }

    static let readRateLimitHeaders: VendorHTTP.HeaderReader = { response, _ in
        let remaining = response.integerList("X-RateLimit-Remaining")
        let reset = response.integerList("X-RateLimit-Reset")
        let windows = [86_400, 3_600, 300]
        var pause: Int?
        for i in 0..<min(remaining.count, windows.count) where remaining[i] <= 0 {
            // One reset value is the limiting window's; three are per window, in the same order.
            let given = reset.count == windows.count ? reset[i] : reset.first
            let seconds = given.flatMap { $0 > 0 ? $0 : nil } ?? windows[i]
            pause = max(pause ?? 0, seconds)
        }
        return pause.map { .seconds($0) }
    }
}

import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// Fitbit data through the Google Health API (`health.googleapis.com/v4`), which replaced the legacy
/// Fitbit Web API on 2026-10-30.
///
/// Google pushes one notification per changed data type and time range to a subscriber that belongs to
/// the operator's Google Cloud project (created in the console, not per user); the notification names
/// the user by their Health API id and carries no measurements, so each one becomes a list of that
/// data type's points over the announced range, read with the user's own token. Notifications are
/// authenticated twice: the subscriber's shared Authorization secret and an ECDSA P-256 signature by
/// Google's key over the raw body.
public struct FitbitAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1
    let keyset = FitbitKeysetCache()

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    static let dayMilliseconds: Int64 = 86_400_000
    /// The widest UTC offsets a user can be at (UTC−12 and UTC+14), for times given only as civil time.
    static let westmostOffset: Int64 = 12 * 3_600_000
    static let eastmostOffset: Int64 = 14 * 3_600_000

    // MARK: OAuth

    /// Google reports the scopes actually granted in the token response (its consent page lets the user
    /// untick each one); a link with none of the Google Health scopes could never read anything.
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        if let granted = grant.scopes, !granted.contains(where: { $0.contains("/auth/googlehealth.") }) {
            throw .rejected(
                "no Google Health scope was granted (granted: \(granted.joined(separator: " "))); allow access to the Fitbit data on Google's consent page"
            )
        }
        // Notifications name users by `healthUserId`, which only `users/me/identity` tells.
        let url = context.url("api", path: "/users/me/identity")
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url,
                headers: [("Authorization", "Bearer \(grant.accessToken.text)"), ("Accept", "application/json")]),
            user: nil)
        try VendorContext.expectSuccess(response, url: url)
        guard let identity = try? JSONValue.parse(response.body), let id = identity["healthUserId"]?.idString,
            !id.isEmpty
        else { throw .malformed("users/me/identity answered without a healthUserId") }
        return id
    }

    /// RFC 7009 at Google: revoking the access token revokes its refresh token and the whole grant.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let url = context.url("revoke")
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: url, headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: FormEncoding.encode([("token", connection.accessToken.text)]), idempotent: true),
            user: connection.id)
        // `invalid_token`: the token is already dead, which is what we wanted.
        if response.status == 400, (try? JSONValue.parse(response.body))?["error"]?.string == "invalid_token" {
            return
        }
        try VendorContext.expectSuccess(response, url: url)
    }

    // MARK: webhooks

    /// Google answers anything but 204 with retries (for up to 7 days).
    public var acceptedStatus: Int { 204 }

    /// Google checks a subscriber's endpoint with two `{"type":"verification"}` POSTs, one with the
    /// configured Authorization value (expects 201) and one without it (expects 401 or 403).
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? {
        guard request.method == "POST", Self.isVerification(request.body) else { return nil }
        guard let expected = context.settings.secrets["authorization"],
            WebhookSignature.matchesSecret(request.header("Authorization"), expected)
        else {
            return WebhookAnswer.json(401, .object(["error": .string("Authorization does not match")]))
        }
        return WebhookAnswer(status: 201)
    }

    static func isVerification(_ body: [UInt8]) -> Bool {
        guard let json = try? JSONValue.parse(body) else { return false }
        return (json.array?.first ?? json)["type"]?.string == "verification"
    }

    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        guard let expected = context.settings.secrets["authorization"] else {
            return .rejected(reason: "webhook.authorization is not configured", label: "not_configured")
        }
        guard let authorization = request.header("Authorization") else {
            return .rejected(reason: "no Authorization header", label: "no_authorization")
        }
        guard WebhookSignature.matchesSecret(authorization, expected) else {
            return .rejected(reason: "Authorization does not match the subscriber secret", label: "bad_authorization")
        }
        guard let header = FitbitWebhookSignature.headerNames.lazy.compactMap({ request.header($0) }).first else {
            return .rejected(reason: "no X-HEALTHAPI-SIGNATURE header", label: "no_signature")
        }
        guard let signature = FitbitWebhookSignature.decodeBase64(header), !signature.isEmpty else {
            return .rejected(reason: "X-HEALTHAPI-SIGNATURE is not base64", label: "bad_signature")
        }
        if let pem = context.settings.secrets["public_key_pem"] {
            // A pinned key: the operator took it from Google and replaces it when Google rotates.
            guard let keys = FitbitWebhookSignature.configuredKeys(pem.text) else {
                return .rejected(
                    reason: "webhook.public_key_pem holds no P-256 public key or Tink keyset", label: "bad_public_key")
            }
            return FitbitWebhookSignature.verify(signature: signature, body: request.body, keys: keys)
                ? .authentic : .rejected(reason: "X-HEALTHAPI-SIGNATURE does not verify", label: "bad_signature")
        }
        let kept = await keyset.keys(context: context, refresh: false)
        if FitbitWebhookSignature.verify(signature: signature, body: request.body, keys: kept.keys) {
            return .authentic
        }
        let fresh = await keyset.keys(context: context, refresh: true)
        if FitbitWebhookSignature.verify(signature: signature, body: request.body, keys: fresh.keys) {
            return .authentic
        }
        if fresh.keys.isEmpty {
            return .rejected(
                reason: "no Google Health public key: \(fresh.problem ?? kept.problem ?? "keyset empty")",
                label: "no_public_key")
        }
        return .rejected(reason: "X-HEALTHAPI-SIGNATURE does not verify", label: "bad_signature")
    }

    /// Google's reference gives no schema for the body; public clients read
    /// `{"data":{"healthUserId","dataType","operation":"UPSERT"|"DELETE","intervals":[{"physicalTimeInterval":
    /// {"startTime","endTime"},"civilDateTimeInterval",…}]}}`. Batches as a JSON array and camelCase data
    /// types have been reported from live traffic, so both are read.
    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        let json = try JSONValue.vendorPayload(body)
        var out = [VendorNotification]()
        for message in json.array ?? [json] {
            if message["type"]?.string == "verification" { continue }
            guard let data = message["data"], data.object != nil else {
                throw .malformed("notification without a data object")
            }
            guard let user = data["healthUserId"]?.idString, !user.isEmpty else {
                throw .malformed("notification without data.healthUserId")
            }
            let name = data["dataType"]?.string ?? "?"
            guard let type = FitbitDataType(apiName: name) else {
                out.append(VendorNotification(vendorUserID: user, action: .ignore("data type \(name) is not mapped")))
                continue
            }
            if data["operation"]?.string == "DELETE" {
                // The notification names a time range, not records: nothing to tombstone by id.
                out.append(VendorNotification(vendorUserID: user, action: .ignore("\(name) deleted at the vendor")))
                continue
            }
            var tasks = Self.notificationTasks(type, data: data)
            // Google announces no oxygen-saturation changes; Fitbit measures SpO2 while the user sleeps,
            // so a sleep notification also reads SpO2 over the same night.
            if type == .sleep { tasks += Self.notificationTasks(.oxygenSaturation, data: data) }
            if tasks.isEmpty {
                out.append(VendorNotification(vendorUserID: user, action: .ignore("\(name): no readable interval")))
            }
            out += tasks.map { VendorNotification(vendorUserID: user, action: .fetch($0)) }
        }
        return out
    }

    /// The range a notification announces, as list tasks. Civil-only intervals are widened by the
    /// largest UTC offsets; the range is capped at 92 days.
    static func notificationTasks(_ type: FitbitDataType, data: JSONValue) -> [FetchTask] {
        var lower: Timestamp?
        var upper: Timestamp?
        for interval in (data["intervals"]?.array ?? []) + [data] {
            guard let (start, end) = window(interval) else { continue }
            lower = min(lower ?? start, start)
            upper = max(upper ?? end, end)
        }
        guard let lower, var upper else { return [] }
        // Sleep is listed by end time, and a session's end is the interval's (exclusive) end itself.
        if type == .sleep { upper = upper.adding(milliseconds: 60_000) }
        // Nothing documents whether the announced end is exclusive; a range of readings is naturally
        // announced as first … last reading, so a reading at exactly `endTime` is listed too (one second
        // more costs nothing: a point fetched twice keeps its sample id).
        if type.isInstant { upper = upper.adding(milliseconds: 1000) }
        upper = min(upper, lower.adding(milliseconds: 92 * dayMilliseconds))
        if type.isDaily {
            return dailyTasks(
                type, fromDay: day(lower.adding(milliseconds: -eastmostOffset)),
                toDay: day(upper.adding(milliseconds: eastmostOffset)) + 1)
        }
        return dayChunks(from: lower, to: upper).map { listTask(type, from: instant($0.0), to: instant($0.1)) }
    }

    static func window(_ interval: JSONValue) -> (Timestamp, Timestamp)? {
        let physical = interval["physicalTimeInterval"]
        if let start = time(physical?["startTime"]) {
            let end = time(physical?["endTime"]) ?? start.adding(milliseconds: dayMilliseconds)
            return (start, max(end, start.adding(milliseconds: 1000)))
        }
        guard let (start, end) = civilWindow(interval) else { return nil }
        return (start.adding(milliseconds: -eastmostOffset), end.adding(milliseconds: westmostOffset))
    }

    /// A civil interval read as if it were UTC: `civilIso8601TimeInterval` (an object, or an ISO 8601
    /// `start/end` string) or `civilDateTimeInterval` (date and time objects).
    static func civilWindow(_ interval: JSONValue) -> (Timestamp, Timestamp)? {
        var start: Timestamp?
        var end: Timestamp?
        if let iso = interval["civilIso8601TimeInterval"] {
            if let text = iso.string {
                let parts = text.split(separator: "/").map(String.init)
                start = parts.first.flatMap(civilTime)
                end = parts.count > 1 ? civilTime(parts[1]) : nil
            } else {
                start = iso["startTime"]?.string.flatMap(civilTime)
                end = iso["endTime"]?.string.flatMap(civilTime)
            }
        }
        if start == nil, let civil = interval["civilDateTimeInterval"] {
            start = civilDateTime(civil["startDateTime"])
            end = civilDateTime(civil["endDateTime"])
        }
        guard let start else { return nil }
        return (start, max(end ?? start.adding(milliseconds: dayMilliseconds), start.adding(milliseconds: 1000)))
    }

    static func civilTime(_ text: String) -> Timestamp? {
        let chars = Array(text)
        if chars.count == 10 { return Timestamp(rfc3339: text + "T00:00:00Z") }
        guard chars.count >= 19 else { return nil }
        return Timestamp(rfc3339: String(chars[0..<19]) + "Z")
    }

    static func civilDateTime(_ value: JSONValue?) -> Timestamp? {
        guard let date = value?["date"], let year = date["year"]?.int, let month = date["month"]?.int,
            let day = date["day"]?.int
        else { return nil }
        let time = value?["time"]
        func digits(_ v: Int64, _ width: Int) -> String {
            let text = String(v)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let hours = time?["hours"]?.int ?? 0
        let minutes = time?["minutes"]?.int ?? 0
        let seconds = time?["seconds"]?.int ?? 0
        return Timestamp(
            rfc3339:
                "\(digits(year, 4))-\(digits(month, 2))-\(digits(day, 2))T\(digits(hours, 2)):\(digits(minutes, 2)):\(digits(seconds, 2))Z"
        )
    }

    // MARK: fetch

    /// A page of `type`'s data points from `from` (inclusive) to `to` (exclusive; open when `nil`): RFC 3339
    /// instants, or dates (`2026-11-20`) for daily types.
    public static func listTask(
        _ type: FitbitDataType, from: String, to: String?, page: Int = 1, pageToken: String? = nil
    ) -> FetchTask {
        var parameters: [String: JSONValue] = ["dataType": .string(type.rawValue), "from": .string(from)]
        if let to { parameters["to"] = .string(to) }
        if page > 1 { parameters["page"] = .int(Int64(page)) }
        if let pageToken { parameters["pageToken"] = .string(pageToken) }
        return FetchTask(
            kind: "list", key: "\(type.rawValue):\(from)/\(to ?? "")" + (page > 1 ? ":p\(page)" : ""),
            parameters: .object(parameters))
    }

    /// The `dataPoints.list` filter: each record type compares its own time field.
    static func filter(_ type: FitbitDataType, from: String, to: String?) -> String {
        let field = "\(type.filterName).\(type.timeField)"
        var filter = "\(field) >= \"\(from)\""
        if let to { filter += " AND \(field) < \"\(to)\"" }
        return filter
    }

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        guard task.kind == "list" else { throw .malformed("unknown Fitbit task kind \(task.kind)") }
        guard let name = task.parameters["dataType"]?.string, let type = FitbitDataType(rawValue: name),
            let from = task.parameters["from"]?.string
        else { throw .malformed("list task without dataType and from") }
        let to = task.parameters["to"]?.string
        var query = [("filter", Self.filter(type, from: from, to: to)), ("pageSize", String(type.pageSize))]
        if let token = task.parameters["pageToken"]?.string { query.append(("pageToken", token)) }
        let (page, _) = try await context.getJSON(
            context.url("api", path: "/users/me/dataTypes/\(type.rawValue)/dataPoints", query: query),
            connection: connection)
        let points = page["dataPoints"]?.array ?? []
        var outcome = FetchOutcome()
        if !points.isEmpty {
            let record = JSONValue.object(["dataType": .string(type.rawValue), "dataPoints": .array(points)])
            outcome.records = [RawRecord(key: task.key, body: record.bytes)]
        }
        if let token = page["nextPageToken"]?.string, !token.isEmpty {
            let number = Int(task.parameters["page"]?.int ?? 1)
            outcome.followUps = [Self.listTask(type, from: from, to: to, page: number + 1, pageToken: token)]
        }
        return outcome
    }

    /// Every data type over `from..<to`, in tasks of at most a day (a day of 1-second heart rate is
    /// already several pages); daily types, one point a day, in ranges of up to 31 days.
    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        FitbitDataType.allCases.flatMap { type in
            type.isDaily
                ? Self.dailyTasks(type, fromDay: Self.day(from), toDay: Self.day(to) + 1)
                : Self.dayChunks(from: from, to: to).map {
                    Self.listTask(type, from: Self.instant($0.0), to: Self.instant($0.1))
                }
        }
    }

    /// Every data type since `since`, in day tasks; the last one is left open so nothing that arrives
    /// while they run falls between two polls.
    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let chunks = Self.dayChunks(from: since, to: .now)
        return FitbitDataType.allCases.flatMap { type -> [FetchTask] in
            if type.isDaily {
                return [Self.listTask(type, from: Self.date(Self.day(since) - 1), to: nil)]
            }
            var tasks = chunks.dropLast().map { Self.listTask(type, from: Self.instant($0.0), to: Self.instant($0.1)) }
            tasks.append(Self.listTask(type, from: Self.instant(chunks.last?.0 ?? since), to: nil))
            return tasks
        }
    }

    static func dailyTasks(_ type: FitbitDataType, fromDay: Int64, toDay: Int64) -> [FetchTask] {
        stride(from: fromDay, to: toDay, by: 31).map {
            listTask(type, from: date($0), to: date(min($0 + 31, toDay)))
        }
    }

    /// `from..<to` cut at UTC midnights.
    static func dayChunks(from: Timestamp, to: Timestamp) -> [(Timestamp, Timestamp)] {
        var chunks = [(Timestamp, Timestamp)]()
        var start = from
        while start < to {
            let end = min(Timestamp(millisecondsSinceEpoch: (day(start) + 1) * dayMilliseconds), to)
            chunks.append((start, end))
            start = end
        }
        return chunks
    }

    static func day(_ t: Timestamp) -> Int64 {
        let ms = t.millisecondsSinceEpoch
        return ms >= 0 ? ms / dayMilliseconds : (ms - dayMilliseconds + 1) / dayMilliseconds
    }

    static func date(_ day: Int64) -> String {
        String(Timestamp(millisecondsSinceEpoch: day * dayMilliseconds).description.prefix(10))
    }

    /// RFC 3339 as Google's filter examples write it (whole seconds without a fraction).
    static func instant(_ t: Timestamp) -> String {
        let text = t.description
        return text.hasSuffix(".000Z") ? String(text.dropLast(5)) + "Z" : text
    }

    static func time(_ value: JSONValue?) -> Timestamp? {
        value?.string.flatMap(Timestamp.init(rfc3339:))
    }
}

/// The Google Health data types pulsegate reads, and how `dataPoints.list` filters each by time.
public enum FitbitDataType: String, CaseIterable, Sendable {
    case heartRate = "heart-rate"
    case steps
    case heartRateVariability = "heart-rate-variability"
    case oxygenSaturation = "oxygen-saturation"
    case weight
    case dailyRestingHeartRate = "daily-resting-heart-rate"
    case sleep

    /// Notifications should spell types in kebab-case; camelCase (`bodyFat`) has been seen live.
    public init?(apiName: String) {
        var kebab = ""
        for char in apiName {
            if char.isUppercase {
                kebab += "-" + char.lowercased()
            } else {
                kebab.append(char == "_" ? "-" : char)
            }
        }
        self.init(rawValue: kebab)
    }

    /// The filter's name for the type (`heart_rate`).
    var filterName: String { rawValue.replacingOccurrences(of: "-", with: "_") }

    /// Interval types by start time, samples by physical time, daily summaries by date, sleep by end time.
    var timeField: String {
        switch self {
        case .steps: "interval.start_time"
        case .heartRate, .heartRateVariability, .oxygenSaturation, .weight: "sample_time.physical_time"
        case .dailyRestingHeartRate: "date"
        case .sleep: "interval.end_time"
        }
    }

    var isDaily: Bool { self == .dailyRestingHeartRate }

    /// Point-in-time readings (listed by `sample_time.physical_time`).
    var isInstant: Bool { timeField == "sample_time.physical_time" }

    /// Google serves at most 25 sleep sessions a page and up to 10,000 other points.
    var pageSize: Int { self == .sleep ? 25 : 10_000 }
}

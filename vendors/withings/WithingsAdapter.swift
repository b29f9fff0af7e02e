import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// Withings Public Health Data API: measures (scales, blood-pressure monitors, thermometers, watches),
/// intraday activity and sleep.
///
/// Withings notifies per user and per category (`appli`), once subscribed with that user's token, and
/// the notification names only a user, a category and a time window: every notification is followed
/// by a fetch of that window with that user's token. Notifications are not signed; see ``verify(_:context:)``.
public struct WithingsAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    /// The notification categories pulsegate subscribes to, with the scope Withings requires for each.
    /// 1: weight and body composition; 4: blood pressure, pulse, SpO2; 16: activity; 44: sleep;
    /// 46: user events (unlink, delete), which needs no data scope beyond `user.info`.
    public static let subscribedApplis: [(appli: Int, scope: String)] = [
        (1, "user.metrics"), (4, "user.metrics"), (16, "user.activity"), (44, "user.activity"), (46, "user.info"),
    ]

    /// The measure types mapped (WithingsMapping); asked for by name so other types cost nothing.
    public static let measureTypes = [1, 6, 9, 10, 11, 12, 54, 71, 73, 123]
    /// The intraday fields mapped; `duration` gives the counts their interval.
    public static let intradayFields = "steps,distance,calories,duration,heart_rate,spo2_auto,rmssd,rr"
    /// The sleep series mapped (the states come with every segment).
    public static let sleepFields = "hr,rr,rmssd"

    static let daySeconds: Int64 = 86_400
    /// Intraday activity and sleep answer at most 24 hours per call.
    static let chunkSeconds: Int64 = daySeconds
    /// A notification's window is fetched up to this long; anything longer is cut (a forged or
    /// garbled window must not turn into thousands of jobs).
    static let maxWindowSeconds: Int64 = 31 * daySeconds
    static let reconcileDays: Int64 = 30
    /// The query parameter that carries `webhook.callback_token` in the subscribed callback URL.
    public static let callbackTokenParameter = "token"

    // MARK: OAuth

    /// Withings wraps the token answer in `{status, body}` and answers refusals with HTTP 200 and a
    /// non-zero status, so the generic reader would take an error for a success without a token.
    public func readTokenResponse(
        _ response: InboundResponse, client: OAuthClient, now: Timestamp, previousRefreshToken: Secret?
    ) throws(OAuthError) -> TokenGrant {
        guard response.isSuccess else {
            throw OAuthClient.classify(response, json: try? JSONValue.parse(response.body))
        }
        guard let envelope = WithingsClient.envelope(response.body) else {
            throw .transient("token endpoint answered without a Withings envelope", retryAfter: nil)
        }
        guard envelope.status == 0 else { throw WithingsClient.tokenError(envelope) }
        guard let access = envelope.body["access_token"]?.string, !access.isEmpty else {
            throw .transient("token endpoint answered status 0 without an access_token", retryAfter: nil)
        }
        return client.grant(
            from: envelope.body, access: access, now: now, previousRefreshToken: previousRefreshToken)
    }

    /// The token answer names the user (`userid`, which every notification carries); the subscriptions
    /// are made here, with the new token. A subscription that fails does not fail the link: the silence
    /// watchdog's reconcile makes the missing ones (and polls meanwhile).
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        guard let userID = grant.raw["userid"]?.idString, Self.isUserID(userID) else {
            throw .malformed("the token answer has no numeric userid")
        }
        let linking = ConnectionContext(
            id: "link:\(userID)", subject: "link", vendorUserID: userID, scopes: grant.scopes ?? [],
            accessToken: grant.accessToken)
        do {
            try await ensureSubscriptions(connection: linking, context: context)
        } catch {
            context.logger.warning(
                "withings: notification subscriptions not made at link; the reconcile retries",
                metadata: ["error": "\(error)"])
        }
        return userID
    }

    /// "OAuth 2.0 - Revoke user access": a signed call (nonce from getnonce) naming the user; Withings
    /// invalidates the tokens and drops the user's notification subscriptions. When Withings refuses it
    /// for good (an app not allowed to call it), the subscriptions are revoked with the user's token
    /// instead, so that at least nothing more is announced for this user.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        guard let userID = connection.vendorUserID, Self.isUserID(userID) else {
            throw .rejected("no Withings userid to revoke")
        }
        do {
            let nonce = try await WithingsClient.nonce(context: context)
            let clientID = context.settings.clientID
            let signed = ["action": "revoke", "client_id": clientID, "nonce": nonce]
            let fields = [
                ("action", "revoke"), ("client_id", clientID), ("nonce", nonce),
                ("signature", WithingsClient.signature(secret: context.settings.clientSecret, signed: signed)),
                ("userid", userID),
            ]
            _ = try await WithingsClient.post("/v2/oauth2", fields, context: context, what: "/v2/oauth2 revoke")
        } catch {
            guard case .rejected(let why) = error else { throw error }
            context.logger.warning(
                "withings: revoke refused; revoking the notification subscriptions instead",
                metadata: ["reason": "\(why)"])
            try await revokeSubscriptions(connection: connection, context: context)
        }
    }

    // MARK: webhooks

    /// Withings checks a callback URL with a HEAD request when a subscription is made (and some
    /// deliveries of other tools have been seen as GET or an empty POST): all are answered 200 without
    /// storing anything.
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? {
        switch request.method {
        case "HEAD", "GET": return WebhookAnswer(status: 200)
        case "POST" where request.body.isEmpty: return WebhookAnswer(status: 200)
        default: return nil
        }
    }

    /// Withings signs nothing. With `webhook.callback_token` configured, pulsegate subscribes with that
    /// token in the callback URL's query and refuses deliveries without it (Withings calls the URL as
    /// subscribed; its documented example also echoes callback parameters in the body, so both are
    /// read). Without it every delivery is accepted: the engine still acts only for linked users and
    /// fetches with their own tokens, so a forgery can trigger a fetch but never inject data. Operators
    /// should also allow only Withings' published addresses (README).
    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        guard let expected = context.settings.secrets["callback_token"] else { return .authentic }
        let provided =
            request.query[Self.callbackTokenParameter]
            ?? FormEncoding.decode(String(decoding: request.body, as: UTF8.self))[Self.callbackTokenParameter]
        guard let provided else {
            return .rejected(reason: "the callback token is missing", label: "missing_token")
        }
        guard WebhookSignature.matchesSecret(provided, expected) else {
            return .rejected(reason: "the callback token does not match", label: "bad_token")
        }
        return .authentic
    }

    /// A form-encoded notification: `userid`, `appli` and, by category, `startdate`/`enddate` (epoch
    /// seconds), `date` (the user's local day), `deviceid`, `action`.
    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        guard let text = String(bytes: body, encoding: .utf8) else { throw .malformed("notification is not UTF-8") }
        let fields = FormEncoding.decode(text)
        guard let user = fields["userid"], Self.isUserID(user) else {
            throw .malformed("notification without a numeric userid")
        }
        guard let appliText = fields["appli"], let appli = Int(appliText) else {
            throw .malformed("notification without an integer appli")
        }
        func fetch(_ tasks: [FetchTask]) -> [VendorNotification] {
            tasks.map { VendorNotification(vendorUserID: user, action: .fetch($0)) }
        }
        switch appli {
        case 1, 2, 4:
            let (start, end) = try Self.window(fields)
            return fetch([Self.measuresTask(start: start, end: end)])
        case 16:
            let (start, end) = try Self.window(fields)
            return fetch(Self.chunked(start: start, end: end).map { Self.intradayTask(start: $0.0, end: $0.1) })
        case 44:
            let (start, end) = try Self.window(fields)
            return fetch(Self.chunked(start: start, end: end).map { Self.sleepTask(start: $0.0, end: $0.1) })
        case 46:
            switch fields["action"] {
            // The user unlinked the app, or deleted the Withings account: either way consent and data
            // are gone, so the connection ends and everything from it is tombstoned.
            case "unlink", "delete": return [VendorNotification(vendorUserID: user, action: .deauthorized)]
            default:
                return [
                    VendorNotification(vendorUserID: user, action: .ignore("user event \(fields["action"] ?? "?")"))
                ]
            }
        default:
            return [VendorNotification(vendorUserID: user, action: .ignore("appli \(appli)"))]
        }
    }

    /// Withings user ids are integers (they outgrow 32 bits): kept as the digits sent.
    static func isUserID(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 20 && text.utf8.allSatisfy { $0 >= 48 && $0 <= 57 }
    }

    /// The notification's window in epoch seconds: `startdate`…`enddate`, or the user's local `date`
    /// widened to every time zone (UTC−12 … UTC+14), since the user's zone is not sent.
    static func window(_ fields: [String: String]) throws(VendorError) -> (Int64, Int64) {
        switch (fields["startdate"], fields["enddate"]) {
        case (let s?, let e?):
            guard let start = epoch(s), let end = epoch(e), end >= start else {
                throw .malformed("notification with an unreadable startdate/enddate")
            }
            return (start, max(end, start + 1))
        case (nil, nil):
            guard let date = fields["date"], let day = dayStart(date) else {
                throw .malformed("notification without startdate/enddate or date")
            }
            return (day - 14 * 3600, day + daySeconds + 12 * 3600)
        default:
            throw .malformed("notification with only one of startdate and enddate")
        }
    }

    static func epoch(_ text: String) -> Int64? {
        guard let value = Int64(text), value >= 0, value < 100_000_000_000 else { return nil }
        return value
    }

    /// Epoch seconds of 00:00 UTC of a `YYYY-MM-DD`.
    static func dayStart(_ date: String) -> Int64? {
        guard date.utf8.count == 10, let midnight = Timestamp(rfc3339: date + "T00:00:00Z") else { return nil }
        return midnight.millisecondsSinceEpoch / 1000
    }

    /// `start..<end` in pieces of at most a day, the whole cut to ``maxWindowSeconds`` (its latest part
    /// kept: a notification is about new data).
    static func chunked(start: Int64, end: Int64) -> [(Int64, Int64)] {
        var from = max(start, end - maxWindowSeconds)
        var out = [(Int64, Int64)]()
        while from < end {
            let to = min(from + chunkSeconds, end)
            out.append((from, to))
            from = to
        }
        return out
    }

    // MARK: tasks

    /// Measures dated `start...end` (epoch seconds); `offset` pages.
    public static func measuresTask(start: Int64, end: Int64, offset: Int64? = nil) -> FetchTask {
        var parameters: [String: JSONValue] = ["startdate": .int(start), "enddate": .int(end)]
        if let offset { parameters["offset"] = .int(offset) }
        return FetchTask(
            kind: "measures", key: "measures:\(start)-\(end)" + (offset.map { ":o\($0)" } ?? ""),
            parameters: .object(parameters))
    }

    /// Measures created or changed since `lastupdate` (epoch seconds): also edits of old measures.
    public static func measuresTask(updatedSince lastupdate: Int64, offset: Int64? = nil) -> FetchTask {
        var parameters: [String: JSONValue] = ["lastupdate": .int(lastupdate)]
        if let offset { parameters["offset"] = .int(offset) }
        return FetchTask(
            kind: "measures", key: "measures:since:\(lastupdate)" + (offset.map { ":o\($0)" } ?? ""),
            parameters: .object(parameters))
    }

    /// Intraday activity for `start...end` (epoch seconds, at most a day).
    public static func intradayTask(start: Int64, end: Int64) -> FetchTask {
        FetchTask(
            kind: "intraday", key: "intraday:\(start)-\(end)",
            parameters: .object(["startdate": .int(start), "enddate": .int(end)]))
    }

    /// Sleep segments starting in `start...end` (epoch seconds, at most a day).
    public static func sleepTask(start: Int64, end: Int64) -> FetchTask {
        FetchTask(
            kind: "sleep", key: "sleep:\(start)-\(end)",
            parameters: .object(["startdate": .int(start), "enddate": .int(end)]))
    }

    /// Makes sure the user's notification subscriptions exist.
    public static let subscriptionsTask = FetchTask(kind: "subscriptions", key: "subscriptions")

    // MARK: fetch

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        switch task.kind {
        case "measures": return try await fetchMeasures(task, connection: connection, context: context)
        case "intraday", "sleep": return try await fetchSeries(task, connection: connection, context: context)
        case "subscriptions":
            try await ensureSubscriptions(connection: connection, context: context)
            return FetchOutcome()
        default: throw .malformed("unknown Withings task kind \(task.kind)")
        }
    }

    /// `POST /measure action=getmeas`: one record per measure group (its `grpid` is the record id, so a
    /// group fetched again after an edit replaces the kept copy), `more`/`offset` paging as follow-ups.
    private func fetchMeasures(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        var fields = [
            ("action", "getmeas"), ("meastypes", Self.measureTypes.map(String.init).joined(separator: ",")),
            ("category", "1"),
        ]
        if let since = task.parameters["lastupdate"]?.int {
            fields.append(("lastupdate", String(since)))
        } else if let start = task.parameters["startdate"]?.int, let end = task.parameters["enddate"]?.int,
            start <= end
        {
            fields += [("startdate", String(start)), ("enddate", String(end))]
        } else {
            throw .malformed("measures task without startdate/enddate or lastupdate")
        }
        if let offset = task.parameters["offset"]?.int { fields.append(("offset", String(offset))) }
        let body = try await WithingsClient.call("/measure", fields, connection: connection, context: context)
        guard let groups = body["measuregrps"]?.array else { throw .malformed("getmeas answered without measuregrps") }
        var outcome = FetchOutcome()
        for group in groups {
            guard let id = group["grpid"]?.idString, !id.isEmpty else { continue }
            let record = JSONValue.object([
                "kind": .string("measuregrp"), "timezone": body["timezone"] ?? .null, "group": group,
            ])
            outcome.records.append(RawRecord(key: "measuregrp:\(id)", body: record.bytes))
        }
        let more = body["more"]?.int.map { $0 != 0 } ?? body["more"]?.bool ?? false
        if more, let offset = body["offset"]?.int, offset > (task.parameters["offset"]?.int ?? 0) {
            if let since = task.parameters["lastupdate"]?.int {
                outcome.followUps = [Self.measuresTask(updatedSince: since, offset: offset)]
            } else if let start = task.parameters["startdate"]?.int, let end = task.parameters["enddate"]?.int {
                outcome.followUps = [Self.measuresTask(start: start, end: end, offset: offset)]
            }
        }
        return outcome
    }

    /// `POST /v2/measure action=getintradayactivity` or `POST /v2/sleep action=get` for one window of at
    /// most a day, kept as one record (no record id: overlapping windows map to the same sample ids).
    private func fetchSeries(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let start = task.parameters["startdate"]?.int, let end = task.parameters["enddate"]?.int, start < end
        else { throw .malformed("\(task.kind) task without startdate < enddate") }
        let intraday = task.kind == "intraday"
        let body = try await WithingsClient.call(
            intraday ? "/v2/measure" : "/v2/sleep",
            [
                ("action", intraday ? "getintradayactivity" : "get"), ("startdate", String(start)),
                ("enddate", String(end)), ("data_fields", intraday ? Self.intradayFields : Self.sleepFields),
            ],
            connection: connection, context: context)
        // No data is answered as an empty *array* (`"series": []`), data as an object (intraday) or an
        // array of segments (sleep).
        let series = body["series"] ?? .null
        let empty = series.array?.isEmpty ?? (series.object?.isEmpty ?? true)
        guard !empty else { return FetchOutcome() }
        let record = JSONValue.object([
            "kind": .string(task.kind), "startdate": .int(start), "enddate": .int(end), "series": series,
        ])
        return FetchOutcome(records: [RawRecord(key: task.key, body: record.bytes)])
    }

    // MARK: subscriptions

    /// The URL Withings is given: the webhook URL, with the callback token when one is configured.
    static func callbackURL(_ context: VendorContext) -> String {
        guard let token = context.settings.secrets["callback_token"] else { return context.settings.webhookURL }
        let separator = context.settings.webhookURL.contains("?") ? "&" : "?"
        return context.settings.webhookURL + separator + Self.callbackTokenParameter + "="
            + FormEncoding.escape(token.text)
    }

    static func grants(_ connection: ConnectionContext, _ scope: String) -> Bool {
        connection.scopes.isEmpty || connection.scopes.contains(scope)
    }

    /// Lists the user's subscriptions and subscribes each category pulsegate needs that has none for
    /// our callback URL. Withings verifies the callback (HEAD) during each subscribe call, so this runs
    /// only once the server listens (at link, or from a fetch job). The first failure is thrown after
    /// the other categories were tried.
    func ensureSubscriptions(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let callback = Self.callbackURL(context)
        let listed = try await WithingsClient.call(
            "/notify", [("action", "list")], connection: connection, context: context)
        let existing = Set(
            (listed["profiles"]?.array ?? []).compactMap { profile in
                profile["callbackurl"]?.string == callback ? profile["appli"]?.int : nil
            })
        var firstError: VendorError?
        for (appli, scope) in Self.subscribedApplis where !existing.contains(Int64(appli)) {
            guard appli == 46 || Self.grants(connection, scope) else { continue }
            do {
                _ = try await WithingsClient.call(
                    "/notify",
                    [
                        ("action", "subscribe"), ("callbackurl", callback), ("appli", String(appli)),
                        ("comment", "pulsegate"),
                    ],
                    connection: connection, context: context, idempotent: false)
                context.logger.info("withings: notification subscription made", metadata: ["appli": "\(appli)"])
            } catch {
                context.logger.warning(
                    "withings: notification subscription failed", metadata: ["appli": "\(appli)", "error": "\(error)"])
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }

    /// `POST /notify action=revoke` for each category, with the user's token.
    func revokeSubscriptions(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let callback = Self.callbackURL(context)
        for (appli, _) in Self.subscribedApplis {
            do {
                _ = try await WithingsClient.call(
                    "/notify", [("action", "revoke"), ("callbackurl", callback), ("appli", String(appli))],
                    connection: connection, context: context, idempotent: false)
            } catch {
                // A subscription that does not exist, or a token already dead, leaves nothing to revoke.
                switch error {
                case .rejected: continue
                case .unauthorized: return
                default: throw error
                }
            }
        }
    }

    // MARK: backfill and reconcile

    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let start = from.millisecondsSinceEpoch / 1000
        let end = to.millisecondsSinceEpoch / 1000
        guard start < end else { return [] }
        var tasks = [FetchTask]()
        if Self.grants(connection, "user.metrics") { tasks.append(Self.measuresTask(start: start, end: end)) }
        if Self.grants(connection, "user.activity") {
            var from = start
            while from < end {
                let to = min(from + Self.chunkSeconds, end)
                tasks.append(Self.intradayTask(start: from, end: to))
                tasks.append(Self.sleepTask(start: from, end: to))
                from = to
            }
        }
        return tasks
    }

    /// Re-checks the subscriptions (Withings drops one after four failed deliveries, which is exactly
    /// what silence can mean), measures changed since `since` (also edits of old ones), and activity and
    /// sleep since `since` less an hour, reaching back at most ``reconcileDays``.
    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let now = Timestamp.now
        let from = max(
            since.millisecondsSinceEpoch - 3_600_000, now.millisecondsSinceEpoch - Self.reconcileDays * 86_400_000)
        var tasks = [Self.subscriptionsTask]
        for task in backfillTasks(from: Timestamp(millisecondsSinceEpoch: from), to: now, connection: connection) {
            tasks.append(task.kind == "measures" ? Self.measuresTask(updatedSince: from / 1000) : task)
        }
        return tasks
    }

    // MARK: rate limits

    /// Withings answers its rate limit as HTTP 200 with status 601 in the envelope, and sends no
    /// rate-limit headers; seeing the 601 pauses every call for a minute, the limit's window.
    public var rateLimitHeaders: VendorHTTP.HeaderReader? { Self.readRateLimit }

    static let readRateLimit: VendorHTTP.HeaderReader = { response, _ in
        WithingsClient.isTooManyRequests(response) ? WithingsClient.rateLimitPause : nil
    }
}

import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// Strava API v3: activities and their streams.
///
/// Strava pushes one event per activity create/update/delete and per athlete deauthorization to a
/// single app-wide subscription; the event carries ids only, so every create is followed by a fetch of
/// the activity and its streams with the athlete's token. Strava signs nothing officially, so an
/// unsigned event is accepted only when its subscription id is ours, and the worst a forged event can
/// do is make pulsegate re-fetch data with the athlete's own token.
public struct StravaAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    static let streamKeys = "time,heartrate,watts,cadence,velocity_smooth,distance,altitude,latlng,temp"

    // MARK: OAuth

    /// Strava answers token errors in its API error shape, not RFC 6749's:
    /// `{"message":"Bad Request","errors":[{"resource":"RefreshToken","field":"refresh_token","code":"invalid"}]}`.
    public func readTokenResponse(
        _ response: InboundResponse, client: OAuthClient, now: Timestamp, previousRefreshToken: Secret?
    ) throws(OAuthError) -> TokenGrant {
        if (400..<500).contains(response.status), response.status != 429,
            let json = try? JSONValue.parse(response.body), let errors = json["errors"]?.array
        {
            let resources = errors.compactMap { $0["resource"]?.string }
            let detail = errors.map {
                "\($0["resource"]?.string ?? "?").\($0["field"]?.string ?? "?") \($0["code"]?.string ?? "?")"
            }.joined(separator: ", ")
            if resources.contains(where: { $0 == "Application" }) { throw .clientRejected("Strava: \(detail)") }
            if resources.contains(where: { $0 == "RefreshToken" || $0 == "AuthorizationCode" }) {
                throw .grantRejected("Strava: \(detail)")
            }
        }
        return try client.parseTokenResponse(response, now: now, previousRefreshToken: previousRefreshToken)
    }

    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        // The athlete can untick scopes on the consent page; Strava reports what was granted only here.
        if let granted = callback["scope"] {
            let scopes = Set(granted.split(separator: ",").map(String.init))
            guard scopes.contains("activity:read_all") || scopes.contains("activity:read") else {
                throw .rejected(
                    "activity access was not granted (granted: \(granted)); allow \"View data about your activities\"")
            }
        }
        guard let id = grant.raw["athlete"]?["id"]?.idString else {
            throw .malformed("token response has no athlete.id")
        }
        return id
    }

    /// `POST /oauth/deauthorize`: invalidates every token of this athlete for our app.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let url = context.url("revoke")
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: url, headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: FormEncoding.encode([("access_token", connection.accessToken.text)]), idempotent: true),
            user: connection.id)
        // 401: the token is already dead, which is what we wanted.
        if response.status == 401 { return }
        try VendorContext.expectSuccess(response, url: url)
    }

    // MARK: webhooks

    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? {
        guard request.method == "GET" else { return nil }
        guard request.query["hub.mode"] == "subscribe", let challenge = request.query["hub.challenge"] else {
            return WebhookAnswer.json(400, .object(["error": .string("expected hub.mode=subscribe and hub.challenge")]))
        }
        guard let expected = context.settings.secrets["verify_token"],
            WebhookSignature.matchesSecret(request.query["hub.verify_token"], expected)
        else {
            return WebhookAnswer.json(403, .object(["error": .string("hub.verify_token does not match")]))
        }
        return WebhookAnswer.json(200, .object(["hub.challenge": .string(challenge)]))
    }

    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        if let header = request.header("X-Strava-Signature") {
            var parts = [String: String]()
            for item in header.split(separator: ",") {
                let kv = item.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { parts[kv[0].trimmingCharacters(in: .whitespaces)] = String(kv[1]) }
            }
            guard let t = parts["t"], let seconds = Int64(t), let v1 = parts["v1"] else {
                return .rejected(reason: "X-Strava-Signature lacks t= or v1=", label: "malformed_signature")
            }
            guard
                WebhookSignature.isFresh(
                    Timestamp(millisecondsSinceEpoch: seconds * 1000), now: request.receivedAt, toleranceSeconds: 300)
            else {
                return .rejected(reason: "X-Strava-Signature timestamp \(t) is outside 300 s", label: "stale")
            }
            let expected = WebhookSignature.hmacSHA256(
                key: context.settings.clientSecret.bytes, Array("\(t).".utf8) + request.body)
            guard WebhookSignature.matchesHex(v1, expected) else {
                return .rejected(reason: "X-Strava-Signature does not match", label: "bad_signature")
            }
        }
        // Unsigned (as Strava documents it): accept only events for our own subscription.
        guard let json = try? JSONValue.parse(request.body), let subscription = json["subscription_id"]?.idString else {
            return .rejected(reason: "not a Strava event (no subscription_id)", label: "malformed")
        }
        if let ours = try? await context.state.value("subscription_id")?.idString, ours != subscription {
            return .rejected(
                reason: "subscription_id \(subscription) is not ours (\(ours))", label: "wrong_subscription")
        }
        return .authentic
    }

    /// An activity is created or deleted once: a create or delete of the same object is the same event
    /// whenever it comes (Strava's retries, or a re-send with a new `event_time`), so it is absorbed
    /// instead of fetched again. Updates keep the whole body as their identity.
    public func dedupeKey(_ request: WebhookRequest) -> String {
        guard let json = try? JSONValue.parse(request.body), let type = json["object_type"]?.string,
            let id = json["object_id"]?.idString, let aspect = json["aspect_type"]?.string, aspect != "update"
        else { return request.bodyDigest }
        return "\(type):\(id):\(aspect)"
    }

    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        do {
            let json = try JSONValue.parse(body)
            let owner = try json.require("owner_id").idString ?? ""
            let objectType = try json.require("object_type").string
            let aspect = try json.require("aspect_type").string
            let objectID = try json.require("object_id").idString ?? ""
            switch (objectType, aspect) {
            case ("activity", "create"):
                return [VendorNotification(vendorUserID: owner, action: .fetch(Self.activityTask(objectID)))]
            case ("activity", "update"):
                // Title, type or privacy changed: streams are the same; nothing to re-fetch.
                return [VendorNotification(vendorUserID: owner, action: .ignore("activity \(objectID) updated"))]
            case ("activity", "delete"):
                return [VendorNotification(vendorUserID: owner, action: .deleted(recordID: objectID))]
            case ("athlete", "update") where json["updates"]?["authorized"]?.string == "false":
                return [VendorNotification(vendorUserID: owner, action: .deauthorized)]
            case ("athlete", "delete"):
                return [VendorNotification(vendorUserID: owner, action: .deauthorized)]
            default:
                return [
                    VendorNotification(vendorUserID: owner, action: .ignore("\(objectType ?? "?") \(aspect ?? "?")"))
                ]
            }
        } catch {
            throw .missing(error)
        }
    }

    public static func activityTask(_ id: String) -> FetchTask {
        FetchTask(kind: "activity", key: "activity:\(id)", parameters: .object(["id": .string(id)]))
    }

    // MARK: fetch

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        switch task.kind {
        case "activity":
            guard let id = task.parameters["id"]?.idString, id.allSatisfy(\.isNumber) else {
                throw .malformed("activity task without a numeric id")
            }
            let (activity, _) = try await context.getJSON(
                context.url("api", path: "/activities/\(id)"), connection: connection)
            let (streams, _) = try await context.getJSON(
                context.url(
                    "api", path: "/activities/\(id)/streams",
                    query: [("keys", Self.streamKeys), ("key_by_type", "true")]), connection: connection)
            let record = JSONValue.object(["activity": activity, "streams": streams])
            return FetchOutcome(records: [RawRecord(key: "activity:\(id)", body: record.bytes)])
        case "list":
            let after = task.parameters["after"]?.int ?? 0
            let before = task.parameters["before"]?.int
            let page = task.parameters["page"]?.int ?? 1
            var query = [("after", String(after)), ("page", String(page)), ("per_page", "200")]
            if let before { query.append(("before", String(before))) }
            let (list, _) = try await context.getJSON(
                context.url("api", path: "/athlete/activities", query: query), connection: connection)
            guard let activities = list.array else { throw .malformed("athlete/activities is not an array") }
            var followUps = activities.compactMap { $0["id"]?.idString }.map(Self.activityTask)
            if activities.count == 200 {
                var next = task.parameters.object ?? [:]
                next["page"] = .int(page + 1)
                followUps.append(FetchTask(kind: "list", key: "\(task.key):p\(page + 1)", parameters: .object(next)))
            }
            return FetchOutcome(followUps: followUps)
        default:
            throw .malformed("unknown Strava task kind \(task.kind)")
        }
    }

    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let after = from.millisecondsSinceEpoch / 1000
        let before = to.millisecondsSinceEpoch / 1000
        return [
            FetchTask(
                kind: "list", key: "list:\(after)-\(before)",
                parameters: .object(["after": .int(after), "before": .int(before)]))
        ]
    }

    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let after = since.millisecondsSinceEpoch / 1000
        return [FetchTask(kind: "list", key: "list:\(after)-", parameters: .object(["after": .int(after)]))]
    }

    // MARK: mapping

    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        do {
            let json = try JSONValue.parse(record.body)
            let activity = try json.require("activity")
            let streams = try json.require("streams")
            let id = try activity.require("id").idString ?? "?"
            guard let startText = try activity.require("start_date").string, let start = Timestamp(rfc3339: startText)
            else { throw VendorError.malformed("activity \(id): start_date is not RFC 3339") }
            guard let times = streams["time"]?["data"]?.array else { return [] }
            var batch = SampleBatch(
                subject: connection.subject, vendor: manifest.id, recordID: id,
                device: activity["device_name"]?.string.map { SourceRef.Device(model: $0) }, now: now)
            func series(_ key: String) -> [JSONValue]? {
                guard let data = streams[key]?["data"]?.array, data.count == times.count else { return nil }
                return data
            }
            let hr = series("heartrate")
            let watts = series("watts")
            let cadence = series("cadence")
            let speed = series("velocity_smooth")
            let altitude = series("altitude")
            let temp = series("temp")
            let latlng = series("latlng")
            let distance = series("distance")
            var previous: (Timestamp, Double)?
            for (i, offset) in times.enumerated() {
                guard let seconds = offset.double else { continue }
                let t = start.adding(milliseconds: Int64(seconds * 1000))
                batch.add(.heartRate, hr?[i].double, unit: "/min", at: t)
                batch.add(.power, watts?[i].double, unit: "W", at: t)
                batch.add(.cadence, cadence?[i].double, unit: "/min", at: t)
                batch.add(.speed, speed?[i].double, unit: "m/s", at: t)
                batch.add(.altitude, altitude?[i].double, unit: "m", at: t)
                batch.add(.ambientTemperature, temp?[i].double, unit: "Cel", at: t)
                if let point = latlng?[i].array, point.count == 2 {
                    batch.add(.latitude, point[0].double, unit: "deg", at: t)
                    batch.add(.longitude, point[1].double, unit: "deg", at: t)
                }
                // Strava's distance is cumulative; the schema's distance is what was covered in an interval.
                if let d = distance?[i].double {
                    if let (pt, pd) = previous, t > pt, d > pd {
                        batch.add(.distance, d - pd, unit: "m", at: pt, end: t)
                    }
                    previous = (t, d)
                }
            }
            return batch.samples
        } catch let error as VendorError {
            throw error
        } catch let error as JSONValue.Missing {
            throw .missing(error)
        } catch {
            throw .malformed("\(error)")
        }
    }

    // MARK: subscription

    /// One push subscription per app: created when missing. Strava validates the callback with a GET
    /// while the create request is open, so this runs once the server is listening.
    public func maintainSubscriptions(context: VendorContext) async throws(VendorError) {
        guard let verifyToken = context.settings.secrets["verify_token"] else {
            context.logger.warning("strava: no webhook.verify_token configured; push subscription not managed")
            return
        }
        let auth = [("client_id", context.settings.clientID), ("client_secret", context.settings.clientSecret.text)]
        let listURL = context.url("api", path: "/push_subscriptions", query: auth)
        let list = try await context.http.send(OutboundRequest(method: .get, url: listURL), user: nil)
        try VendorContext.expectSuccess(list, url: context.url("api", path: "/push_subscriptions"))
        let existing = (try? JSONValue.parse(list.body))?.array ?? []
        if let mine = existing.first(where: { $0["callback_url"]?.string == context.settings.webhookURL }),
            let id = mine["id"]?.idString
        {
            try await context.state.setValue("subscription_id", .string(id))
            return
        }
        if let other = existing.first {
            context.logger.warning(
                "strava: the app's one push subscription points elsewhere; not replacing it",
                metadata: ["callback_url": "\(other["callback_url"]?.string ?? "?")"])
            return
        }
        let createURL = context.url("api", path: "/push_subscriptions")
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: createURL, headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: FormEncoding.encode(
                    auth + [("callback_url", context.settings.webhookURL), ("verify_token", verifyToken.text)]),
                idempotent: false),
            user: nil)
        try VendorContext.expectSuccess(response, url: createURL)
        guard let id = (try? JSONValue.parse(response.body))?["id"]?.idString else {
            throw .malformed("push_subscriptions create answered without an id")
        }
        try await context.state.setValue("subscription_id", .string(id))
        context.logger.notice("strava: push subscription created", metadata: ["id": "\(id)"])
    }

    // MARK: rate limits

    /// Reads `X-ReadRateLimit-*` (else `X-RateLimit-*`): "15-minute,daily" usage and limit. When a
    /// window is spent, pause until it resets (the next quarter hour, or midnight UTC).
    public var rateLimitHeaders: VendorHTTP.HeaderReader? { Self.readRateLimitHeaders }

    static let readRateLimitHeaders: VendorHTTP.HeaderReader = { response, now in
        func pair(_ name: String) -> [Int]? {
            response.header(name)?.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        guard let usage = pair("X-ReadRateLimit-Usage") ?? pair("X-RateLimit-Usage"),
            let limit = pair("X-ReadRateLimit-Limit") ?? pair("X-RateLimit-Limit"), usage.count == 2, limit.count == 2
        else { return nil }
        let ms = now.millisecondsSinceEpoch
        if usage[1] >= limit[1] { return .milliseconds(86_400_000 - ms % 86_400_000) }
        if usage[0] >= limit[0] { return .milliseconds(900_000 - ms % 900_000) }
        return nil
    }
}

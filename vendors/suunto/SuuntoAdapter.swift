import Crypto
import Foundation
import Logging
import PulseGateCore
import PulseGateFIT
import PulseGateOAuth
import PulseGateVendorKit

/// Suunto Cloud API (Suunto API Zone, behind Azure API Management): workouts as FIT files, and 24/7
/// activity and sleep samples.
///
/// Suunto posts every notification to the URL configured in the API Zone portal, signed with the
/// notification secret configured there (`X-HMAC-SHA256-Signature`, hex HMAC-SHA256 of the raw body)
/// and names the user by username — the `user` claim of the JWT access token, which is how a
/// connection learns it. A new workout is announced with its summary; its FIT file is then fetched
/// with the user's token. 24/7 data arrives inside the notification and is mapped from there. Every
/// call to `cloudapi.suunto.com` needs the app's API Management subscription key in
/// `Ocp-Apim-Subscription-Key` besides the bearer token; the OAuth endpoints do not.
public struct SuuntoAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    /// `vendors.suunto.webhook.notification_secret`: the secret set in the app's settings in the portal.
    static let notificationSecretName = "notification_secret"
    /// `vendors.suunto.webhook.subscription_key`: the primary or secondary key of the app's API
    /// subscription ("Your subscriptions" in the portal profile).
    static let subscriptionKeyName = "subscription_key"
    static let signatureHeader = "X-HMAC-SHA256-Signature"
    static let subscriptionKeyHeader = "Ocp-Apim-Subscription-Key"

    /// Workouts per listing page (`limit`); a full page is followed by the next `offset`.
    static let pageSize = 100
    /// 24/7 samples are fetched a week at a time: Suunto serves at most 28 days per request.
    static let samplesChunk: Int64 = 7 * dayMillis
    static let samplesMaxWindow: Int64 = 28 * dayMillis
    static let dayMillis: Int64 = 86_400_000
    /// How long a job waits when the gateway refuses our subscription key (an operator must act).
    static let gatewayRetry: Duration = .seconds(900)

    // MARK: OAuth

    /// RFC 6749 answers; when `expires_in` is missing the token's own `exp` claim gives the expiry
    /// (Suunto documents the expiry there).
    public func readTokenResponse(
        _ response: InboundResponse, client: OAuthClient, now: Timestamp, previousRefreshToken: Secret?
    ) throws(OAuthError) -> TokenGrant {
        var grant = try client.parseTokenResponse(response, now: now, previousRefreshToken: previousRefreshToken)
        if grant.expiresAt == nil, let exp = SuuntoTokenClaims.read(grant.accessToken.text)?.expiresAt {
            grant.expiresAt = exp
        }
        return grant
    }

    /// The vendor user id is the access token's `user` claim (read without verifying the signature;
    /// ``SuuntoTokenClaims`` says why that is sound). A token without it is refused: webhooks name users
    /// only by username, so such a connection could never receive anything.
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        guard let claims = SuuntoTokenClaims.read(grant.accessToken.text) else {
            throw .malformed(
                "Suunto's access token is not a JWT, so its `user` claim (the username Suunto's webhooks name users by) cannot be read; link refused"
            )
        }
        guard let user = claims.user, SuuntoTokenClaims.isUsername(user) else {
            throw .malformed(
                "Suunto's access token carries no usable `user` claim (the username Suunto's webhooks name users by); link refused"
            )
        }
        if let stated = grant.raw["user"]?.string, stated != user {
            throw .malformed("Suunto's token response names another user than its access token's `user` claim")
        }
        if context.settings.secrets[Self.subscriptionKeyName]?.isEmpty ?? true {
            context.logger.error(
                "suunto: no subscription key configured (vendors.suunto.webhook.subscription_key); workouts cannot be fetched until one is"
            )
        }
        return user
    }

    /// `GET https://cloudapi-oauth.suunto.com/oauth/deauthorize?client_id=…` with the user's token.
    /// Suunto's API Zone pages do not document a revocation endpoint; this one is what an established
    /// integration (quantified-self) calls. Whatever it answers, the engine deletes the tokens.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let url = context.url("revoke", query: [("client_id", context.settings.clientID)])
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url, headers: [("Authorization", "Bearer \(connection.accessToken.text)")]),
            user: connection.id)
        // 400/401: the token is already dead; 404: nothing to withdraw. Either way the grant is gone.
        if [400, 401, 404].contains(response.status) { return }
        try VendorContext.expectSuccess(response, url: context.url("revoke"))
    }

    // MARK: webhooks

    /// Suunto makes no handshake: the URL and the secret are set in the portal.
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? { nil }

    /// `X-HMAC-SHA256-Signature` is the hex HMAC-SHA256 of the raw body, keyed with the notification
    /// secret. Suunto signs no timestamp, so there is no freshness check: a replayed notification is
    /// absorbed by the body-digest dedupe key instead.
    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        guard let secret = context.settings.secrets[Self.notificationSecretName], !secret.isEmpty else {
            return .rejected(
                reason: "no notification secret configured (vendors.suunto.webhook.notification_secret)",
                label: "no_key")
        }
        guard let provided = request.header(Self.signatureHeader) else {
            return .rejected(reason: "\(Self.signatureHeader) missing", label: "missing_signature")
        }
        guard WebhookSignature.matchesHex(provided, WebhookSignature.hmacSHA256(key: secret.bytes, request.body))
        else { return .rejected(reason: "\(Self.signatureHeader) does not match", label: "bad_signature") }
        return .authentic
    }

    /// JSON notifications `{"type", "username", …}`; the legacy form-encoded workout notification
    /// (`username=…&workoutid=…`) is read too.
    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        let fields: SuuntoNotificationFields
        if body.first(where: { !SuuntoMapping.isJSONWhitespace($0) }) == UInt8(ascii: "{") {
            fields = try SuuntoNotificationFields(json: body)
        } else {
            fields = try SuuntoNotificationFields(form: body)
        }
        guard let type = fields.type ?? (fields.workoutKey != nil ? "WORKOUT_CREATED" : nil) else {
            throw .malformed("Suunto notification without a type")
        }
        guard let username = fields.username, SuuntoTokenClaims.isUsername(username) else {
            throw .malformed("\(type.prefix(64)) notification without a usable username")
        }
        func notification(_ action: VendorNotification.Action) -> [VendorNotification] {
            [VendorNotification(vendorUserID: username, action: action)]
        }
        switch type {
        case "WORKOUT_CREATED":
            guard let key = fields.workoutKey, PayloadText.isPathSegment(key) else {
                throw .malformed("WORKOUT_CREATED notification without a usable workoutKey")
            }
            return notification(.fetch(Self.workoutTask(key)))
        case "SUUNTO_247_ACTIVITY_CREATED", "SUUNTO_247_SLEEP_CREATED":
            let prefix = type == "SUUNTO_247_SLEEP_CREATED" ? "sleep247" : "activity247"
            guard try fields.hasSamples(body) else { return notification(.ignore("\(type) without samples")) }
            let digest = Array(SHA256.hash(data: body)).hexString.prefix(32)
            return notification(.records([RawRecord(key: "\(prefix):\(digest)", body: body)]))
        case "SUUNTO_247_RECOVERY_CREATED":
            return notification(.ignore("\(type): recovery balance and stress state have no metric in schema v1"))
        case "ROUTE_CREATED":
            return notification(.ignore("\(type): a route is a planned path, not a measurement"))
        default:
            return notification(.ignore("\(type.prefix(64)) is not mapped"))
        }
    }

    public static func workoutTask(_ key: String) -> FetchTask {
        FetchTask(kind: "workout", key: "workout:\(key)", parameters: .object(["key": .string(key)]))
    }

    /// The workouts that started in `since..<until` (milliseconds; `until` open when `nil`), from `offset`.
    public static func listingTask(since: Int64, until: Int64?, offset: Int = 0) -> FetchTask {
        var parameters: [String: JSONValue] = ["since": .int(since), "offset": .int(Int64(offset))]
        if let until { parameters["until"] = .int(until) }
        return FetchTask(
            kind: "workouts", key: "workouts:\(since)-\(until.map(String.init) ?? "")@\(offset)",
            parameters: .object(parameters))
    }

    /// 24/7 `kind` (`activity` or `sleep`) samples of `from..<to` (milliseconds, at most 28 days).
    public static func samplesTask(_ kind: String, from: Int64, to: Int64) -> FetchTask {
        FetchTask(
            kind: "samples247", key: "\(kind)247:\(from)-\(to)",
            parameters: .object(["kind": .string(kind), "from": .int(from), "to": .int(to)]))
    }

    // MARK: fetch

    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        switch task.kind {
        case "workout": return try await fetchWorkout(task, connection: connection, context: context)
        case "workouts": return try await listWorkouts(task, connection: connection, context: context)
        case "samples247": return try await fetchSamples(task, connection: connection, context: context)
        default: throw .malformed("unknown Suunto task kind \(task.kind)")
        }
    }

    /// `GET /v3/workouts/{workoutKey}/fit`. The API Zone's operation page still shows the older
    /// `/v2/workout/exportFit/{key}`; current integrations use the v3 path (see README).
    func fetchWorkout(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let key = task.parameters["key"]?.string, PayloadText.isPathSegment(key) else {
            throw .malformed("workout task without a usable key")
        }
        let url = context.url("api", path: "/v3/workouts/\(key)/fit")
        let response = try await apiGet(
            url, accept: "application/octet-stream", connection: connection, context: context)
        try VendorContext.expectSuccess(response, url: url)
        guard SuuntoMapping.looksLikeFIT(response.body) else {
            throw .unavailable(
                "\(url.path) answered \(response.body.count) bytes that are not a FIT file (the workout may still be processing)",
                retryAfter: .seconds(120))
        }
        return FetchOutcome(records: [RawRecord(key: "workout:\(key)", body: response.body)])
    }

    /// `GET /v3/workouts?since&until&limit&offset&filter-by-modification-time=false` (times in ms):
    /// one workout task per listed workout, and the next page when this one was full.
    func listWorkouts(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let since = task.parameters["since"]?.int else { throw .malformed("workouts task without since") }
        let until = task.parameters["until"]?.int
        let offset = Int(task.parameters["offset"]?.int ?? 0)
        var query = [("since", String(since))]
        if let until { query.append(("until", String(until))) }
        query += [
            ("limit", String(Self.pageSize)), ("offset", String(offset)), ("filter-by-modification-time", "false"),
        ]
        let url = context.url("api", path: "/v3/workouts", query: query)
        let response = try await apiGet(url, accept: "application/json", connection: connection, context: context)
        try VendorContext.expectSuccess(response, url: url)
        let json: JSONValue
        do {
            json = try JSONValue.parse(response.body)
        } catch {
            throw .malformed("\(url.path): \(error)")
        }
        if let error = json["error"], !error.isNull {
            let text = error["description"]?.string ?? error["code"]?.string ?? "error"
            throw .unavailable("\(url.path) answered an error: \(text.prefix(200))", retryAfter: nil)
        }
        guard let workouts = json["payload"]?.array else { throw .malformed("\(url.path): no payload array") }
        var followUps = [FetchTask]()
        for workout in workouts {
            guard let key = (workout["workoutKey"] ?? workout["key"])?.idString, PayloadText.isPathSegment(key) else {
                continue
            }
            if let start = workout["startTime"]?.int {
                if start < since { continue }
                if let until, start >= until { continue }
            }
            followUps.append(Self.workoutTask(key))
        }
        if workouts.count >= Self.pageSize {
            followUps.append(Self.listingTask(since: since, until: until, offset: offset + workouts.count))
        }
        return FetchOutcome(followUps: followUps)
    }

    /// `GET /247samples/{activity|sleep}?from&to` (ms): the answer, a JSON array of samples, is kept as
    /// it came; no data for the window is an answer (204, 404 or `[]`), not an error.
    func fetchSamples(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let kind = task.parameters["kind"]?.string, kind == "activity" || kind == "sleep",
            let from = task.parameters["from"]?.int, let to = task.parameters["to"]?.int, from < to,
            to - from <= Self.samplesMaxWindow
        else { throw .malformed("24/7 task without a known kind and a window of at most 28 days") }
        let url = context.url("api", path: "/247samples/\(kind)", query: [("from", String(from)), ("to", String(to))])
        let response = try await apiGet(url, accept: "application/json", connection: connection, context: context)
        if response.status == 204 || response.status == 404 { return FetchOutcome() }
        try VendorContext.expectSuccess(response, url: url)
        let body = response.body
        guard let first = body.firstIndex(where: { !SuuntoMapping.isJSONWhitespace($0) }),
            body[first] == UInt8(ascii: "[")
        else { throw .malformed("\(url.path): the answer is not a JSON array") }
        var cursor: JSONArrayCursor
        do {
            cursor = try JSONArrayCursor(body, range: body.indices)
            if try cursor.next() == nil { return FetchOutcome() }
        } catch {
            throw .malformed("\(url.path): \(error)")
        }
        return FetchOutcome(records: [RawRecord(key: "\(kind)247:\(from)-\(to)", body: body)])
    }

    /// A GET to the API with the bearer token and the subscription key. The gateway's own refusals are
    /// told apart from the API's: a refused subscription key is our configuration (never the user's
    /// grant), a spent call quota is a rate limit.
    func apiGet(_ url: URL, accept: String, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> InboundResponse
    {
        guard let key = context.settings.secrets[Self.subscriptionKeyName], !key.isEmpty else {
            throw .unavailable(
                "no subscription key configured (vendors.suunto.webhook.subscription_key); Suunto refuses API calls without one",
                retryAfter: Self.gatewayRetry)
        }
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url,
                headers: [
                    ("Authorization", "Bearer \(connection.accessToken.text)"), (Self.subscriptionKeyHeader, key.text),
                    ("Accept", accept),
                ]),
            user: connection.id)
        try Self.checkGateway(response, url: url)
        return response
    }

    /// Azure API Management answers a missing or wrong subscription key with 401 ("Access denied due
    /// to invalid subscription key …") and a spent quota with 403 ("Out of call volume quota …").
    static func checkGateway(_ response: InboundResponse, url: URL) throws(VendorError) {
        guard response.status == 401 || response.status == 403 else { return }
        let text = String(decoding: response.body.prefix(512), as: UTF8.self).lowercased()
        if response.status == 401, text.contains("subscription key") {
            throw .unavailable(
                "\(url.path): Suunto's API gateway refuses the subscription key (check vendors.suunto.webhook.subscription_key)",
                retryAfter: gatewayRetry)
        }
        if response.status == 403, text.contains("quota") {
            throw .rateLimited(
                "\(url.path): Suunto's API gateway says the call quota is spent",
                retryAfter: VendorHTTP.retryAfter(response) ?? .seconds(3600))
        }
    }

    /// The workout listing of the window and its 24/7 activity and sleep samples, a week per task.
    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let start = from.millisecondsSinceEpoch
        let end = to.millisecondsSinceEpoch
        guard end > start else { return [] }
        return [Self.listingTask(since: start, until: end)] + Self.samplesTasks(from: start, to: end)
    }

    /// What may have been missed since `since`: the workouts started since then, and the 24/7 samples
    /// of at most the last 28 days.
    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let now = Timestamp.now.millisecondsSinceEpoch
        let start = since.millisecondsSinceEpoch
        return [Self.listingTask(since: start, until: nil)]
            + Self.samplesTasks(from: max(start, now - Self.samplesMaxWindow), to: now)
    }

    static func samplesTasks(from: Int64, to: Int64) -> [FetchTask] {
        var tasks = [FetchTask]()
        var chunkStart = from
        while chunkStart < to {
            let chunkEnd = min(chunkStart + samplesChunk, to)
            tasks += ["activity", "sleep"].map { samplesTask($0, from: chunkStart, to: chunkEnd) }
            chunkStart = chunkEnd
        }
        return tasks
    }

    // MARK: mapping

    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        var source = try samples(of: record, connection: connection, now: now)
        return try source.all()
    }

    /// FIT files and 24/7 pushes can be long: both are streamed.
    public func samples(of record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError)
        -> any SampleSource
    {
        switch SuuntoMapping.record(record.key) {
        case .workout(let key):
            let source = SourceRef(kind: .cloud, vendor: manifest.id, recordID: key)
            return SuuntoWorkoutSource(
                reader: FITSampleReader(bytes: record.body, subject: connection.subject, source: source, now: now),
                workoutKey: key)
        case .activity:
            return try Suunto247Source(
                kind: .activity, body: record.body, subject: connection.subject, vendor: manifest.id, now: now)
        case .sleep:
            return try Suunto247Source(
                kind: .sleep, body: record.body, subject: connection.subject, vendor: manifest.id, now: now)
        case nil:
            throw .malformed("unknown Suunto record \(record.key.prefix(80))")
        }
    }

    // MARK: configuration

    /// Suunto's webhook is configured in the portal; what pulsegate can do is say when the secrets it
    /// needs are missing, each time the engine checks subscriptions.
    public func maintainSubscriptions(context: VendorContext) async throws(VendorError) {
        if context.settings.secrets[Self.notificationSecretName]?.isEmpty ?? true {
            context.logger.warning(
                "suunto: no notification secret configured (vendors.suunto.webhook.notification_secret); every notification is refused"
            )
        }
        if context.settings.secrets[Self.subscriptionKeyName]?.isEmpty ?? true {
            context.logger.warning(
                "suunto: no subscription key configured (vendors.suunto.webhook.subscription_key); no workout can be fetched"
            )
        }
    }
}

/// The fields of a stored notification pulsegate reads, taken without building the whole document
/// (a 24/7 push can carry days of samples).
struct SuuntoNotificationFields {
    var type: String?
    var username: String?
    var workoutKey: String?
    private var samples: Range<Int>?

    init(json body: [UInt8]) throws(VendorError) {
        let members: [(key: String, range: Range<Int>)]
        do {
            members = try JSONValue.memberRanges(body)
        } catch {
            throw .malformed("Suunto notification: \(error)")
        }
        func value(_ key: String) -> JSONValue? {
            members.last { $0.key == key }.flatMap { try? JSONValue.parse(body, range: $0.range) }
        }
        type = value("type")?.string
        username = value("username")?.string
        let workout = value("workout")
        workoutKey =
            (workout?["workoutKey"] ?? workout?["workoutId"] ?? value("workoutKey") ?? value("workoutid"))?.idString
        samples = members.last { $0.key == "samples" }?.range
    }

    /// The legacy workout notification: form fields `username` and `workoutid` (and maybe `type`).
    init(form body: [UInt8]) throws(VendorError) {
        guard let text = String(validating: body, as: UTF8.self), text.contains("=") else {
            throw .malformed("Suunto notification is neither JSON nor form fields")
        }
        let fields = FormEncoding.decode(text.trimmingCharacters(in: .whitespacesAndNewlines))
        type = fields["type"]
        username = fields["username"]
        workoutKey = fields["workoutid"] ?? fields["workoutKey"]
    }

    /// Whether `samples` is an array with at least one element; a `samples` that is not an array is
    /// a malformed notification.
    func hasSamples(_ body: [UInt8]) throws(VendorError) -> Bool {
        guard let samples else { throw .malformed("24/7 notification without samples") }
        do {
            var cursor = try JSONArrayCursor(body, range: samples)
            return try cursor.next() != nil
        } catch {
            throw .malformed("24/7 notification: samples is not an array (\(error))")
        }
    }
}

import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// Garmin Connect Developer Program: the Health API (dailies, epochs, sleep, HRV, pulse ox,
/// respiration, body composition, blood pressure) and the Activity API (activity details with their
/// per-second samples, activity files).
///
/// Garmin delivers; pulsegate does not poll (Garmin's terms forbid pulling outside backfill). Each
/// summary type is switched on in Garmin's API Endpoints tool with one URL and a mode: **push** puts the
/// summaries themselves in the body, **ping** puts a `callbackURL` there that is fetched with the user's
/// token. Push bodies can be megabytes (a 10-hour activity with a sample a second), so they are split
/// into per-summary records with byte ranges, never parsed whole, and an activity's samples are mapped
/// one element at a time (``samples(of:connection:now:)``).
///
/// There is no signature: a notification is accepted when its `garmin-client-id` header equals our
/// client id (and, when configured, the endpoint URL carries our secret `key`). Notifications name users
/// by Garmin's `userId`, which ``didLink(grant:callback:context:)`` reads after the code exchange along
/// with the permissions the user ticked; backfill needs `HISTORICAL_DATA_EXPORT` among them.
public struct GarminAdapter: VendorAdapter {
    public let manifest: VendorManifest
    public let mappingVersion = 1

    public init() throws(ManifestError) {
        manifest = try VendorManifest.load(from: .module)
    }

    /// The header Garmin sends with every notification, holding the app's client id.
    static let clientIDHeader = "garmin-client-id"
    /// The optional secret the operator appends to the endpoint URL as `?key=…` (config `webhook.url_key`).
    static let urlKeySecret = "url_key"
    /// Backfill requests may span at most this much (Garmin's limit per request).
    static let backfillChunkSeconds: Int64 = 30 * 86_400
    /// The silence watchdog asks for at most this much history again.
    static let reconcileSeconds: Int64 = 30 * 86_400

    // MARK: OAuth

    /// `GET /user/id` names the user every notification will carry; `GET /user/permissions` tells what
    /// the user ticked on the consent page. A link without either data permission cannot deliver
    /// anything and is refused; a permissions read that fails does not stop the link (it is read again
    /// before the first backfill).
    public func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String
    {
        let linking = ConnectionContext(
            id: "link", subject: "link", vendorUserID: nil, scopes: [], accessToken: grant.accessToken)
        let (answer, _) = try await context.getJSON(context.url("api", path: "/user/id"), connection: linking)
        guard let userID = answer["userId"]?.idString, !userID.isEmpty, userID.utf8.count <= 200 else {
            throw .malformed("user/id answered without a userId")
        }
        let permissions: [String]
        do {
            permissions = try await readPermissions(connection: linking, userID: userID, context: context)
        } catch {
            if case .unauthorized = error { throw error }
            context.logger.warning(
                "garmin: user permissions not readable at link; read again before backfill",
                metadata: ["error": "\(error)"])
            return userID
        }
        guard permissions.contains("ACTIVITY_EXPORT") || permissions.contains("HEALTH_EXPORT") else {
            throw .rejected("neither activity nor health data was shared (the permissions were unticked)")
        }
        return userID
    }

    /// `DELETE /user/registration`: Garmin stops delivering for the user and the token dies.
    public func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError) {
        let url = context.url("api", path: "/user/registration")
        let response = try await context.http.send(
            OutboundRequest(
                method: .delete, url: url, headers: [("Authorization", "Bearer \(connection.accessToken.text)")]),
            user: connection.id)
        if let userID = connection.vendorUserID {
            try? await context.state.setValue(Self.permissionsKey(userID), nil)
        }
        // 401: the token is dead already; 404: the registration is gone. Either way the grant is over.
        if response.status == 401 || response.status == 404 { return }
        try VendorContext.expectSuccess(response, url: url)
    }

    // MARK: webhooks

    /// Garmin makes no handshake: endpoints are configured in its portal.
    public func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer? { nil }

    /// No signature exists. The `garmin-client-id` header must equal our client id (compared in constant
    /// time); it is no secret — the client id travels in every authorize URL — so the README asks
    /// operators for a secret `key` in the endpoint URL or an IP allowlist as well. When `url_key` is
    /// configured the query must carry it.
    public func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict {
        if let key = context.settings.secrets[Self.urlKeySecret], !key.isEmpty,
            !WebhookSignature.matchesSecret(request.query["key"], key)
        {
            return .rejected(reason: "the endpoint URL's key is missing or wrong", label: "bad_url_key")
        }
        guard let provided = request.header(Self.clientIDHeader) else {
            return .rejected(reason: "garmin-client-id header missing", label: "missing_client_id")
        }
        guard WebhookSignature.matchesSecret(provided, Secret(context.settings.clientID)) else {
            return .rejected(reason: "garmin-client-id is not our client id", label: "bad_client_id")
        }
        return .authentic
    }

    /// Splits a stored body into notifications without building it as a tree: see ``GarminPayload``.
    public func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        try GarminPayload.notifications(in: body)
    }

    // MARK: backfill and reconcile

    /// One backfill request per mapped summary type and 30-day window. Garmin answers 202 and pushes
    /// (or pings) the summaries later, like any other delivery.
    public func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let start = from.millisecondsSinceEpoch / 1000
        let end = to.millisecondsSinceEpoch / 1000
        guard start < end else { return [] }
        var tasks = [FetchTask]()
        var chunkEnd = end
        while chunkEnd > start {
            let chunkStart = max(start, chunkEnd - Self.backfillChunkSeconds)
            for type in GarminSummary.backfilled {
                tasks.append(Self.backfillTask(type, start: chunkStart, end: chunkEnd))
            }
            chunkEnd = chunkStart
        }
        return tasks
    }

    /// Backfill is the only pull Garmin allows, so a quiet connection asks for its silent stretch again.
    public func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask] {
        let now = Timestamp.now
        let from = max(since.millisecondsSinceEpoch, now.millisecondsSinceEpoch - Self.reconcileSeconds * 1000)
        return backfillTasks(from: Timestamp(millisecondsSinceEpoch: from), to: now, connection: connection)
    }

    /// `type` is the backfill path name (`dailies`, `pulseOx`, `respiration`, …); times in Unix seconds.
    public static func backfillTask(_ type: String, start: Int64, end: Int64) -> FetchTask {
        FetchTask(
            kind: "backfill", key: "backfill:\(type):\(start)-\(end)",
            parameters: .object(["type": .string(type), "start": .int(start), "end": .int(end)]))
    }

    // MARK: mapping

    /// Activity details and activity files stream (their size follows the activity's length); the other
    /// summaries are small and map at once.
    public func samples(of record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError)
        -> any SampleSource
    {
        try GarminMapping.samples(of: record, subject: connection.subject, vendor: manifest.id, now: now)
    }

    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        var source = try samples(of: record, connection: connection, now: now)
        return try source.all()
    }

    // MARK: permissions

    static func permissionsKey(_ userID: String) -> String { "permissions:\(userID)" }

    /// Reads `GET /user/permissions` and keeps the answer in the vendor state under the user's id.
    func readPermissions(connection: ConnectionContext, userID: String, context: VendorContext)
        async throws(VendorError) -> [String]
    {
        let (answer, _) = try await context.getJSON(
            context.url("api", path: "/user/permissions"), connection: connection)
        guard let list = answer["permissions"]?.array else {
            throw .malformed("user/permissions answered without a permissions list")
        }
        let permissions = list.compactMap(\.string)
        try await context.state.setValue(
            Self.permissionsKey(userID),
            .object([
                "permissions": .array(permissions.map(JSONValue.string)),
                "read_at": .string(context.now.description),
            ]))
        return permissions
    }

    /// The user's permissions as last read, or read now when none are kept.
    func permissions(connection: ConnectionContext, context: VendorContext) async throws(VendorError) -> [String] {
        guard let userID = connection.vendorUserID else { return [] }
        if let kept = try await context.state.value(Self.permissionsKey(userID))?["permissions"]?.array {
            return kept.compactMap(\.string)
        }
        return try await readPermissions(connection: connection, userID: userID, context: context)
    }
}

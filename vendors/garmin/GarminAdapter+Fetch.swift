import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

extension GarminAdapter {
    /// Task kinds: `ping` (a summary callback), `activity_file` (a FIT file's callback), `backfill` (ask
    /// Garmin to deliver a window again), `permissions` (the user changed what is shared).
    public func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError)
        -> FetchOutcome
    {
        switch task.kind {
        case "ping": return try await fetchPing(task, connection: connection, context: context)
        case "activity_file": return try await fetchActivityFile(task, connection: connection, context: context)
        case "backfill": return try await requestBackfill(task, connection: connection, context: context)
        case "permissions":
            guard let userID = connection.vendorUserID else { return FetchOutcome() }
            let permissions = try await readPermissions(connection: connection, userID: userID, context: context)
            context.logger.info(
                "garmin: user permissions changed",
                metadata: ["connection": "\(connection.id)", "permissions": "\(permissions.joined(separator: ","))"])
            return FetchOutcome()
        default:
            throw .malformed("unknown Garmin task kind \(task.kind)")
        }
    }

    static func bearer(_ connection: ConnectionContext) -> (name: String, value: String) {
        ("Authorization", "Bearer \(connection.accessToken.text)")
    }

    /// A ping's `callbackURL` is used as given (since OAuth 2 it carries its own pull token) once its host
    /// passes the SSRF guard, with the user's bearer token. The answer — a list that may hold a long
    /// activity — is split into records by byte ranges, like a push.
    func fetchPing(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let type = task.parameters["type"]?.string, GarminSummary.mapped.contains(type),
            let text = task.parameters["url"]?.string
        else { throw .malformed("ping task without a mapped type and a callback URL") }
        let url = try context.checkPayloadURL(text)
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url, headers: [Self.bearer(connection), ("Accept", "application/json")]),
            user: connection.id)
        try VendorContext.expectSuccess(response, url: url)
        return FetchOutcome(records: try GarminPayload.records(in: response.body, type: type))
    }

    /// The FIT file of an activity, kept as the raw record `activityFile:<activityId>` and decoded as a
    /// stream when mapped.
    func fetchActivityFile(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let text = task.parameters["url"]?.string, let id = task.parameters["activity_id"]?.string, !id.isEmpty
        else { throw .malformed("activity file task without a URL and an activity id") }
        let url = try context.checkPayloadURL(text)
        let response = try await context.http.send(
            OutboundRequest(
                method: .get, url: url, headers: [Self.bearer(connection), ("Accept", "application/octet-stream, */*")]),
            user: connection.id)
        try VendorContext.expectSuccess(response, url: url)
        guard !response.body.isEmpty else { throw .malformed("activity file \(id) is empty") }
        return FetchOutcome(records: [RawRecord(key: "\(GarminMapping.activityFilePrefix)\(id)", body: response.body)])
    }

    /// `GET /backfill/{type}?summaryStartTimeInSeconds&summaryEndTimeInSeconds`: Garmin answers 202 and
    /// delivers the summaries later through the configured push or ping endpoint — nothing arrives in
    /// this answer. Asked only when the user shared `HISTORICAL_DATA_EXPORT`. A window Garmin already
    /// served (409) or refuses (400: beyond what it keeps) is logged and not retried.
    func requestBackfill(_ task: FetchTask, connection: ConnectionContext, context: VendorContext)
        async throws(VendorError) -> FetchOutcome
    {
        guard let type = task.parameters["type"]?.string, GarminSummary.backfilled.contains(type),
            let start = task.parameters["start"]?.int, let end = task.parameters["end"]?.int, start < end,
            end - start <= Self.backfillChunkSeconds
        else { throw .malformed("backfill task without a known type and a window of at most 30 days") }
        let metadata: Logger.Metadata = [
            "connection": "\(connection.id)", "type": "\(type)", "window": "\(start)-\(end)",
        ]
        let permissions = try await permissions(connection: connection, context: context)
        guard permissions.contains("HISTORICAL_DATA_EXPORT") else {
            context.logger.notice(
                "garmin: backfill skipped, the user did not share historical data (HISTORICAL_DATA_EXPORT)",
                metadata: metadata)
            return FetchOutcome()
        }
        let url = context.url(
            "api", path: "/backfill/\(type)",
            query: [("summaryStartTimeInSeconds", String(start)), ("summaryEndTimeInSeconds", String(end))])
        let response = try await context.http.send(
            OutboundRequest(method: .get, url: url, headers: [Self.bearer(connection)]), user: connection.id)
        switch response.status {
        case 200..<300:
            context.logger.info("garmin: backfill requested; the data arrives by push", metadata: metadata)
        case 409:
            context.logger.info("garmin: backfill of this window was requested before", metadata: metadata)
        case 400:
            context.logger.warning(
                "garmin: backfill window refused",
                metadata: metadata.merging(
                    ["answer": "\(String(decoding: response.body.prefix(200), as: UTF8.self))"],
                    uniquingKeysWith: { $1 }))
        case 403:
            context.logger.notice("garmin: backfill refused, permission not granted", metadata: metadata)
            if let userID = connection.vendorUserID {
                _ = try? await readPermissions(connection: connection, userID: userID, context: context)
            }
        default:
            try VendorContext.expectSuccess(response, url: url)
        }
        return FetchOutcome()
    }
}

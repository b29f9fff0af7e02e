import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit
import Synchronization

/// Vendor state kept in memory, for adapter unit tests (the daemon keeps it in the store).
public final class MemoryVendorState: VendorStateStore {
    public init() {}
    private let values = Mutex([String: JSONValue]())
    private let secrets = Mutex([String: Secret]())

    public func value(_ key: String) async throws(VendorError) -> JSONValue? { values.withLock { $0[key] } }
    public func setValue(_ key: String, _ value: JSONValue?) async throws(VendorError) {
        values.withLock { $0[key] = value }
    }
    public func secret(_ key: String) async throws(VendorError) -> Secret? { secrets.withLock { $0[key] } }
    public func setSecret(_ key: String, _ value: Secret?) async throws(VendorError) {
        secrets.withLock { $0[key] = value }
    }
}

/// An HTTP transport failure, for scripts.
public struct TransportFailure: Error {
    public init() {}
}

/// Answers requests from a script and records them: unit tests check the exact requests an adapter
/// builds and how it reads canned vendor answers. (End-to-end tests use the vendor emulators.)
public final class ScriptedTransport: HTTPTransport {
    /// Throwing stands for "no answer" (connection reset, timeout).
    public typealias Handler = @Sendable (OutboundRequest) throws -> InboundResponse
    private let handler: Handler
    public let sent = Mutex([OutboundRequest]())

    public init(_ handler: @escaping Handler) {
        self.handler = handler
    }

    public func execute(_ request: OutboundRequest, timeout: Duration) async throws -> InboundResponse {
        sent.withLock { $0.append(request) }
        return try handler(request)
    }
}

extension InboundResponse {
    public static func json(_ status: Int, _ text: String, headers: [(name: String, value: String)] = [])
        -> InboundResponse
    {
        InboundResponse(
            status: status, headers: [("Content-Type", "application/json")] + headers, body: Array(text.utf8))
    }
}

/// A context for `adapter` whose endpoints all point at `http://vendor.test` and whose HTTP goes to
/// `transport`.
public func makeContext(
    _ adapter: any VendorAdapter, transport: any HTTPTransport = ScriptedTransport { _ in .json(500, "{}") },
    secrets: [String: Secret] = [:], clientSecret: String = "test-secret",
    state: any VendorStateStore = MemoryVendorState(),
    now: Timestamp = .now
) -> VendorContext {
    let manifest = adapter.manifest
    var urls = [String: URL]()
    for (name, value) in manifest.urls {
        let real = URL(string: value)!
        urls[name] = URL(string: "http://vendor.test\(real.path)")!
    }
    let settings = VendorSettings(
        clientID: "test-client", clientSecret: Secret(clientSecret), urls: urls, scopes: manifest.oauth.scopes,
        redirectURI: "https://pulsegate.test/v1/oauth/\(manifest.id)/callback",
        webhookURL: "https://pulsegate.test/v1/webhooks/\(manifest.id)", secrets: secrets,
        allowedHosts: manifest.allowedHosts, rateLimits: manifest.rateLimits,
        backfillDays: manifest.backfill.defaultDays,
        silenceHours: manifest.silenceHours)
    let http = VendorHTTP(
        vendor: manifest.id, transport: transport, rules: [], headerReader: adapter.rateLimitHeaders,
        logger: Logger(label: "test"))
    return VendorContext(
        manifest: manifest, settings: settings, http: http, state: state, logger: Logger(label: "test"), clock: { now })
}

public func webhook(
    _ body: String, method: String = "POST", headers: [(name: String, value: String)] = [],
    query: [String: String] = [:],
    at now: Timestamp = .now
) -> WebhookRequest {
    WebhookRequest(method: method, query: query, headers: headers, body: Array(body.utf8), receivedAt: now)
}

public func connection(subject: String = "member-1", vendorUserID: String = "134815", token: String = "access-1")
    -> ConnectionContext
{
    ConnectionContext(id: "c1", subject: subject, vendorUserID: vendorUserID, scopes: [], accessToken: Secret(token))
}

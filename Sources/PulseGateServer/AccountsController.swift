import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PulseGateAccounts
import PulseGateCore
import PulseGateStore
import PulseGateVendorKit

/// The cloud-account surface: start a link, the vendors' OAuth callbacks, list and unlink connections,
/// and the vendors' webhooks.
public struct AccountsController: Sendable {
    let engine: AccountEngine
    let keyring: APIKeyring
    let logger: Logger

    public init(engine: AccountEngine, keyring: APIKeyring, logger: Logger) {
        self.engine = engine
        self.keyring = keyring
        self.logger = logger
    }

    public func register(on router: Router<some RequestContext>) {
        router.post("/v1/connections/authorize") { request, context in
            try await authorize(request, context: context)
        }
        router.get("/v1/connections") { request, _ in
            _ = try keyring.authorize(request, scope: .linksCreate)
            guard let subject = request.uri.queryParameters["subject"].map(String.init), !subject.isEmpty else {
                throw APIError(.badRequest, code: "missing_subject", message: "query parameter 'subject' is required")
            }
            let list = try await call { () async throws(AccountError) in try await engine.connections(subject: subject)
            }
            return try Response.json(ConnectionList(connections: list.map(ConnectionView.init)))
        }
        router.delete("/v1/connections/{id}") { request, context in
            _ = try keyring.authorize(request, scope: .linksCreate)
            let id = try context.parameters.require("id")
            try await call { () async throws(AccountError) in try await engine.unlink(connectionID: id) }
            return Response(status: .noContent)
        }
        router.get("/v1/oauth/{vendor}/callback") { request, context in
            let vendor = try context.parameters.require("vendor")
            var query = [String: String]()
            for (k, v) in request.uri.queryParameters { query[String(k)] = String(v) }
            let outcome = await engine.completeLink(vendor: vendor, query: query)
            return CallbackPage.response(outcome)
        }
        router.on("/v1/webhooks/{vendor}", method: .get) { request, context in
            try await webhook(request, context: context)
        }
        router.on("/v1/webhooks/{vendor}", method: .post) { request, context in
            try await webhook(request, context: context)
        }
        // Withings checks a callback URL with HEAD before it accepts a subscription.
        router.on("/v1/webhooks/{vendor}", method: .head) { request, context in
            try await webhook(request, context: context)
        }
    }

    /// Maps an engine error to the API's JSON error.
    func call<T>(_ body: () async throws(AccountError) -> T) async throws(APIError) -> T {
        do {
            return try await body()
        } catch {
            switch error.code {
            case .unknownVendor: throw APIError(.notFound, code: "unknown_vendor", message: error.message)
            case .notFound: throw APIError(.notFound, code: "not_found", message: error.message)
            case .vendorRefused: throw APIError(.badGateway, code: "vendor_refused", message: error.message)
            case .unavailable:
                throw APIError(.serviceUnavailable, code: "unavailable", message: error.message, retryAfterSeconds: 5)
            }
        }
    }

    struct AuthorizeRequest: Decodable {
        let vendor: String
        let subject: String
        let returnTo: String?
        enum CodingKeys: String, CodingKey {
            case vendor, subject, returnTo = "return_to"
        }
    }

    struct AuthorizeAnswer: Encodable {
        let authorizeURL: String
        let expiresAt: String
        enum CodingKeys: String, CodingKey {
            case authorizeURL = "authorize_url", expiresAt = "expires_at"
        }
    }

    func authorize(_ request: Request, context: some RequestContext) async throws -> Response {
        _ = try keyring.authorize(request, scope: .linksCreate)
        let body = try await request.body.collect(upTo: 16 * 1024)
        let input: AuthorizeRequest
        do {
            input = try JSONDecoder().decode(AuthorizeRequest.self, from: Data(body.readableBytesView))
        } catch {
            throw APIError(
                .badRequest, code: "malformed_body",
                message: "expected {\"vendor\": …, \"subject\": …, \"return_to\"?: …}")
        }
        guard !input.subject.isEmpty, input.subject.utf8.count <= 200 else {
            throw APIError(.badRequest, code: "invalid_subject", message: "subject must be 1–200 bytes")
        }
        if let returnTo = input.returnTo {
            guard let url = URL(string: returnTo), let scheme = url.scheme?.lowercased(),
                scheme == "https" || scheme == "http", url.host != nil
            else {
                throw APIError(
                    .badRequest, code: "invalid_return_to", message: "return_to must be an absolute http(s) URL")
            }
        }
        let (url, expires) = try await call { () async throws(AccountError) in
            try await engine.startLink(vendor: input.vendor, subject: input.subject, returnTo: input.returnTo)
        }
        return try Response.json(
            AuthorizeAnswer(authorizeURL: url.absoluteString, expiresAt: expires.description), status: .created)
    }

    func webhook(_ request: Request, context: some RequestContext) async throws -> Response {
        let vendorID = try context.parameters.require("vendor")
        guard let vendor = engine.vendor(vendorID) else {
            throw APIError(.notFound, code: "unknown_vendor", message: "no vendor '\(vendorID)' is configured here")
        }
        let limit = vendor.manifest.webhook.maxBodyBytes
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch {
            throw APIError(.contentTooLarge, code: "body_too_large", message: "webhook body exceeds \(limit) bytes")
        }
        var query = [String: String]()
        for (k, v) in request.uri.queryParameters { query[String(k)] = String(v) }
        let webhook = WebhookRequest(
            method: request.method.rawValue, query: query,
            headers: request.headers.map { ($0.name.rawName, $0.value) }, body: Array(buffer: buffer),
            receivedAt: .now)
        let answer = await engine.receiveWebhook(vendor: vendorID, request: webhook)
        var headers = HTTPFields()
        if let type = answer.contentType { headers[.contentType] = type }
        return Response(
            status: .init(code: answer.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }
}

struct ConnectionList: Encodable {
    let connections: [ConnectionView]
}

/// A connection as the API shows it: status and activity, never tokens.
struct ConnectionView: Encodable {
    let id: String
    let vendor: String
    let subject: String
    let status: String
    let statusReason: String?
    let scopes: [String]
    let linkedAt: String
    let lastWebhookAt: String?
    let lastSyncAt: String?
    let lastSampleAt: String?

    init(_ c: ConnectionRecord) {
        func time(_ ms: Int64?) -> String? { ms.map { Timestamp(millisecondsSinceEpoch: $0).description } }
        id = c.id
        vendor = c.vendor
        subject = c.subject
        status = c.status.rawValue
        statusReason = c.statusReason
        scopes = c.scopes
        linkedAt = Timestamp(millisecondsSinceEpoch: c.linkedAt).description
        lastWebhookAt = time(c.lastWebhookAt)
        lastSyncAt = time(c.lastSyncAt)
        lastSampleAt = time(c.lastSampleAt)
    }

    enum CodingKeys: String, CodingKey {
        case id, vendor, subject, status, statusReason = "status_reason", scopes, linkedAt = "linked_at"
        case lastWebhookAt = "last_webhook_at", lastSyncAt = "last_sync_at", lastSampleAt = "last_sample_at"
    }

    /// Every field is always present (`null` when unknown), so clients can rely on the shape.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(vendor, forKey: .vendor)
        try c.encode(subject, forKey: .subject)
        try c.encode(status, forKey: .status)
        try c.encode(statusReason, forKey: .statusReason)
        try c.encode(scopes, forKey: .scopes)
        try c.encode(linkedAt, forKey: .linkedAt)
        try c.encode(lastWebhookAt, forKey: .lastWebhookAt)
        try c.encode(lastSyncAt, forKey: .lastSyncAt)
        try c.encode(lastSampleAt, forKey: .lastSampleAt)
    }
}

/// Where the person lands after the vendor's consent page: back to the app that started the link
/// (with the outcome in the query) or, without one, a small page saying what happened — never a raw
/// error.
enum CallbackPage {
    static func response(_ outcome: LinkOutcome) -> Response {
        if let returnTo = outcome.returnTo, var components = URLComponents(string: returnTo) {
            var items = components.queryItems ?? []
            items.append(URLQueryItem(name: "pulsegate_vendor", value: outcome.vendor))
            if let failure = outcome.failureCode {
                items.append(URLQueryItem(name: "pulsegate_link", value: "failed"))
                items.append(URLQueryItem(name: "pulsegate_reason", value: failure))
            } else {
                items.append(URLQueryItem(name: "pulsegate_link", value: "connected"))
            }
            components.queryItems = items
            if let url = components.url {
                return Response(status: .seeOther, headers: [.location: url.absoluteString, .cacheControl: "no-store"])
            }
        }
        let title = outcome.failure == nil ? "\(outcome.displayName) connected" : "\(outcome.displayName) not connected"
        let message = outcome.failure ?? "Your \(outcome.displayName) account is linked. You can close this page."
        let html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title))</title>
            <style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#111;background:#fff}
            h1{font-size:1.4rem}</style></head>
            <body><main><h1>\(escape(title))</h1><p role="status">\(escape(message))</p></main></body></html>
            """
        return Response(
            status: outcome.failure == nil ? .ok : .badRequest,
            headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "'", with: "&#39;")
    }
}

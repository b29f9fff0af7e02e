import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit

/// How Withings answers and how it wants to be called: every service is a form-encoded POST naming an
/// `action`, and every answer — errors included — is HTTP 200 with a `{"status", "body", "error"}`
/// envelope. The HTTP status alone says nothing, so nothing generic may read these answers.
public enum WithingsClient {
    /// The families of the "Response Status" table of the API reference. Withings shares only
    /// families ("for security reasons"), so the family decides what a caller does next.
    public enum Family: Sendable, Equatable {
        case success
        case authenticationFailed
        case invalidParams
        case unauthorized
        case notImplemented
        case tooManyRequests
        case timeout
        /// "An error occurred" (and 524 "Bad state"): retry.
        case failed
    }

    static let authenticationFailed: [ClosedRange<Int64>] = [100...102, 200...200, 401...401]
    static let invalidParams: [ClosedRange<Int64>] = [
        201...213, 216...218, 220...221, 223...223, 225...225, 227...230, 234...236, 238...238, 240...252,
        254...254, 260...267, 271...272, 275...276, 283...288, 290...290, 293...295, 297...297, 300...304,
        321...321, 323...353, 380...382, 400...400, 501...511, 523...523, 532...532, 3017...3019,
    ]
    static let unauthorized: [ClosedRange<Int64>] = [214...214, 277...277, 2553...2553, 2555...2555]

    /// The family of an envelope status; an unlisted status is `.failed` (retried), never a refusal.
    public static func family(_ status: Int64) -> Family {
        if status == 0 { return .success }
        if authenticationFailed.contains(where: { $0.contains(status) }) { return .authenticationFailed }
        if invalidParams.contains(where: { $0.contains(status) }) { return .invalidParams }
        if unauthorized.contains(where: { $0.contains(status) }) { return .unauthorized }
        switch status {
        case 2554: return .notImplemented
        case 601: return .tooManyRequests
        case 522: return .timeout
        default: return .failed
        }
    }

    /// Withings counts 120 requests a minute and says no more than "Too many request" (601): waiting a
    /// minute is the only sure way into a new window.
    public static let rateLimitPause: Duration = .seconds(60)

    /// A parsed envelope.
    public struct Envelope: Sendable {
        /// 0 for success, else a code of the "Response Status" table.
        public var status: Int64
        /// The service's answer (`{}` on errors).
        public var body: JSONValue
        /// Withings' error text, present on most refusals.
        public var error: String?

        /// The error text for logs: bounded, and never anything but what Withings wrote.
        public var detail: String { "status \(status)\(error.map { ": \($0.prefix(200))" } ?? "")" }
    }

    /// The envelope of an answer, or `nil` when the bytes are not one (a proxy's page, a truncation).
    public static func envelope(_ bytes: [UInt8]) -> Envelope? {
        guard let json = try? JSONValue.parse(bytes), let status = json["status"]?.int else { return nil }
        return Envelope(status: status, body: json["body"] ?? .null, error: json["error"]?.string)
    }

    /// Whether an answer is the 601 envelope. Error envelopes are small; big answers are data and are not
    /// parsed here (this runs on every response, before the caller reads it).
    static func isTooManyRequests(_ response: InboundResponse) -> Bool {
        guard response.isSuccess, response.body.count <= 1024, let envelope = envelope(response.body) else {
            return false
        }
        return family(envelope.status) == .tooManyRequests
    }

    // MARK: data services

    /// POSTs `fields` to `path` with the connection's Bearer token and returns the envelope's body.
    /// Reads are safe to repeat, so the HTTP client may retry them after a transport error.
    static func call(
        _ path: String, _ fields: [(String, String)], connection: ConnectionContext, context: VendorContext,
        idempotent: Bool = true
    ) async throws(VendorError) -> JSONValue {
        let url = context.url("api", path: path)
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: url,
                headers: [
                    ("Authorization", "Bearer \(connection.accessToken.text)"),
                    ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"),
                ],
                body: FormEncoding.encode(fields), idempotent: idempotent),
            user: connection.id)
        return try read(response, what: "\(path) \(fields.first { $0.0 == "action" }?.1 ?? "?")")
    }

    /// Unwraps an answer of a data service, sorting failures into what the engine does next.
    static func read(_ response: InboundResponse, what: String) throws(VendorError) -> JSONValue {
        guard response.isSuccess else {
            switch response.status {
            case 401: throw .unauthorized("\(what) answered HTTP 401")
            case 400, 403, 404, 405, 409, 410, 422: throw .rejected("\(what) answered HTTP \(response.status)")
            default: throw .unavailable("\(what) answered HTTP \(response.status)", retryAfter: nil)
            }
        }
        guard let envelope = envelope(response.body) else {
            throw .unavailable("\(what) answered without a Withings envelope", retryAfter: nil)
        }
        switch family(envelope.status) {
        case .success: return envelope.body
        case .authenticationFailed: throw .unauthorized("\(what): \(envelope.detail)")
        case .tooManyRequests: throw .rateLimited("\(what): \(envelope.detail)", retryAfter: rateLimitPause)
        case .invalidParams, .unauthorized, .notImplemented: throw .rejected("\(what): \(envelope.detail)")
        case .timeout, .failed: throw .unavailable("\(what): \(envelope.detail)", retryAfter: nil)
        }
    }

    // MARK: token endpoint

    /// Sorts a token-endpoint refusal. Only a refusal that names the grant (the code or the refresh
    /// token) ends a connection; one that names our client is an operator problem; anything else —
    /// including an unrecognised "Invalid params" — is retried, because one odd answer must never
    /// unlink users.
    public static func tokenError(_ envelope: Envelope) -> OAuthError {
        let family = family(envelope.status)
        let text = (envelope.error ?? "").lowercased()
        let detail = "Withings \(envelope.detail)"
        if family == .tooManyRequests { return .transient(detail, retryAfter: rateLimitPause) }
        if family == .invalidParams || family == .authenticationFailed {
            if namesDeadGrant(text) { return .grantRejected(detail) }
        }
        if namesClient(text) { return .clientRejected(detail) }
        switch family {
        case .authenticationFailed, .unauthorized:
            // Nothing at the token endpoint authenticates but our client.
            return .clientRejected(detail)
        case .notImplemented:
            // Withings did not see `action=requesttoken`: the configured token URL is not its OAuth
            // endpoint, or something on the way dropped the form body.
            return .clientRejected("\(detail) (is urls.token Withings' /v2/oauth2 endpoint?)")
        default:
            return .transient(detail, retryAfter: nil)
        }
    }

    /// "Invalid Params: invalid refresh_token", "… invalid code", RFC 6749's invalid_grant. A missing
    /// parameter is our bug, not a dead grant.
    static func namesDeadGrant(_ text: String) -> Bool {
        guard !text.contains("missing"), !text.contains("not specified") else { return false }
        if text.contains("invalid_grant") { return true }
        let aboutGrant = text.contains("refresh_token") || text.contains("refresh token") || text.contains("code")
        let dead =
            text.contains("invalid") || text.contains("expired") || text.contains("revoked")
            || text.contains("unknown")
        return aboutGrant && dead && !text.contains("client")
    }

    static func namesClient(_ text: String) -> Bool {
        ["invalid_client", "client_id", "client id", "clientid", "client_secret", "client secret", "redirect_uri"]
            .contains { text.contains($0) }
    }

    // MARK: signed requests

    /// Withings' request signature: the values of the signed parameters in the order of their names,
    /// joined with commas, HMAC-SHA256 with the client secret, lower-case hex (vendor-vectors B7).
    public static func signature(secret: Secret, signed parameters: [String: String]) -> String {
        let data = parameters.sorted { $0.key < $1.key }.map(\.value).joined(separator: ",")
        return WebhookSignature.hmacSHA256(key: secret.bytes, Array(data.utf8)).hexString
    }

    /// `POST /v2/signature action=getnonce`: a single-use nonce, valid 30 minutes, for one signed call.
    static func nonce(context: VendorContext) async throws(VendorError) -> String {
        let timestamp = String(context.now.millisecondsSinceEpoch / 1000)
        let clientID = context.settings.clientID
        let signed = ["action": "getnonce", "client_id": clientID, "timestamp": timestamp]
        let fields = [
            ("action", "getnonce"), ("client_id", clientID), ("timestamp", timestamp),
            ("signature", signature(secret: context.settings.clientSecret, signed: signed)),
        ]
        let body = try await post("/v2/signature", fields, context: context, what: "/v2/signature getnonce")
        guard let nonce = body["nonce"]?.string, !nonce.isEmpty else {
            throw .malformed("/v2/signature getnonce answered without a nonce")
        }
        return nonce
    }

    /// An app-level call (no user token): signed services.
    static func post(_ path: String, _ fields: [(String, String)], context: VendorContext, what: String)
        async throws(VendorError) -> JSONValue
    {
        let response = try await context.http.send(
            OutboundRequest(
                method: .post, url: context.url("api", path: path),
                headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                body: FormEncoding.encode(fields), idempotent: false),
            user: nil)
        return try read(response, what: what)
    }
}

import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PulseGateCore
import PulseGateStore

/// Posts each batch as NDJSON to one URL, signed with HMAC-SHA256 over `timestamp + "." + body`.
///
/// The wire format (headers, signature, status handling) is documented in README.md, "Sink wire
/// format", for the teams that write receivers; keep the two in step.
public final class HTTPSink: Sink {
    public let id: String
    public var kind: String { "http" }
    public let url: String
    private let secret: Secret?
    private let timeout: Duration
    private let client: HTTPClient
    private let logger: Logger

    /// - Parameter client: shared by all HTTP sinks; its lifetime is the caller's.
    public init(id: String, url: String, secret: Secret?, timeout: Duration, client: HTTPClient, logger: Logger) {
        self.id = id
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.client = client
        self.logger = logger
    }

    /// `v1=` + hex HMAC-SHA256(secret, "<timestamp>.<body>"), the value of `Pulsegate-Signature`.
    public static func signature(secret: Secret, timestamp: Int64, body: [UInt8]) -> String {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: secret.bytes))
        mac.update(data: Array("\(timestamp).".utf8))
        mac.update(data: body)
        return "v1=" + Array(mac.finalize()).hexString
    }

    public func deliver(_ batch: OutboxBatch, batchID: String) async throws(SinkError) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        let timestamp = Int64(Date().timeIntervalSince1970)
        request.headers.add(name: "Content-Type", value: "application/x-ndjson")
        request.headers.add(name: "Pulsegate-Batch-Id", value: batchID)
        request.headers.add(name: "Pulsegate-Sample-Count", value: String(batch.count))
        request.headers.add(name: "Pulsegate-Schema", value: String(Sample.schemaVersion))
        request.headers.add(name: "Pulsegate-Timestamp", value: String(timestamp))
        if let secret {
            request.headers.add(
                name: "Pulsegate-Signature",
                value: Self.signature(secret: secret, timestamp: timestamp, body: batch.body))
        }
        request.body = .bytes(ByteBuffer(bytes: batch.body))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .init(timeout))
        } catch {
            throw .retryable("POST \(url) failed: \(Self.describe(error))")
        }
        let status = response.status.code
        // Read (a bounded part of) the answer so the connection can be reused, and for the reason text.
        let answer = (try? await response.body.collect(upTo: 64 * 1024)).map { String(buffer: $0) } ?? ""
        let excerpt = String(answer.prefix(200)).replacingOccurrences(of: "\n", with: " ")
        switch status {
        case 200..<300:
            return
        case 429, 503:
            throw .retryable(
                "receiver answered \(status)", retryAfter: Self.retryAfter(response.headers.first(name: "Retry-After")))
        case 408, 500..<600:
            throw .retryable("receiver answered \(status): \(excerpt)")
        case 400..<500:
            throw .poison("receiver refused the batch with \(status): \(excerpt)")
        default:
            throw .retryable("receiver answered unexpected status \(status)")
        }
    }

    /// Reachable means the receiver answers HTTP at all (any status): a HEAD on the URL.
    public func healthCheck() async -> String? {
        var request = HTTPClientRequest(url: url)
        request.method = .HEAD
        do {
            _ = try await client.execute(request, timeout: .seconds(2))
            return nil
        } catch {
            return "\(url) unreachable: \(Self.describe(error))"
        }
    }

    public func shutdown() async {}

    /// Parses `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), capped at one hour.
    static func retryAfter(_ value: String?) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int(value), seconds >= 0 { return .seconds(min(seconds, 3600)) }
        guard let date = Timestamp(httpDate: value) else { return nil }
        let ms = max(0, min(3_600_000, date.millisecondsSinceEpoch - Timestamp.now.millisecondsSinceEpoch))
        return .milliseconds(ms)
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError { return "\(e)" }
        return String(describing: error)
    }
}

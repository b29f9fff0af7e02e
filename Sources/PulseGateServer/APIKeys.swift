import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import PulseGateCore
import Synchronization

/// What an API key may do. Keys carry scopes; each route asks for one (`admin` passes every check).
public enum Scope: String, Sendable, Hashable, Codable, CaseIterable {
    case samplesWrite = "samples:write"
    case streamRead = "stream:read"
    case linksCreate = "links:create"
    case kioskBind = "kiosk:bind"
    case admin
}

/// An API key as configured: only the SHA-256 of the key is ever stored, so a leaked config file does
/// not leak working keys.
public struct APIKey: Sendable {
    public let name: String
    /// Lowercase hex SHA-256 of the key's UTF-8 bytes.
    public let sha256: String
    public let scopes: Set<Scope>
    public let rateLimit: RateLimit?

    public struct RateLimit: Sendable, Equatable {
        public let requestsPerSecond: Double
        public let burst: Double
        public init(requestsPerSecond: Double, burst: Double) {
            self.requestsPerSecond = requestsPerSecond
            self.burst = burst
        }
    }

    public init(name: String, sha256: String, scopes: Set<Scope>, rateLimit: RateLimit?) {
        self.name = name
        self.sha256 = sha256.lowercased()
        self.scopes = scopes
        self.rateLimit = rateLimit
    }

    /// The hex SHA-256 a config entry holds for `key`.
    public static func hash(_ key: String) -> String {
        SHA256.hash(data: Array(key.utf8)).hexString
    }

    /// A new random key: `pgk_` + 43 base64url characters (256 bits).
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let b64 = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return "pgk_" + b64
    }
}

/// Authenticates bearer keys and enforces scopes and per-key rate limits (token buckets).
public final class APIKeyring: Sendable {
    private let byHash: [String: APIKey]
    private let buckets = Mutex([String: Bucket]())

    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    public init(keys: [APIKey]) {
        byHash = Dictionary(keys.map { ($0.sha256, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The key behind the request's `Authorization: Bearer` header, checked for `scope` and its rate
    /// limit. Throws the 401/403/429 the client should see.
    public func authorize(_ request: Request, scope: Scope) throws(APIError) -> APIKey {
        guard let header = request.headers[.authorization] else {
            throw APIError(
                .unauthorized, code: "unauthenticated", message: "missing Authorization: Bearer <api key>",
                headers: [.wwwAuthenticate: "Bearer"])
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else {
            throw APIError(
                .unauthorized, code: "unauthenticated", message: "Authorization must be 'Bearer <api key>'",
                headers: [.wwwAuthenticate: "Bearer"])
        }
        // The lookup is by hash, so timing reveals nothing about the stored keys themselves.
        guard let key = byHash[APIKey.hash(String(parts[1]))] else {
            throw APIError(
                .unauthorized, code: "unauthenticated", message: "unknown API key",
                headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        guard key.scopes.contains(scope) || key.scopes.contains(.admin) else {
            throw APIError(
                .forbidden, code: "insufficient_scope",
                message: "API key '\(key.name)' lacks the scope '\(scope.rawValue)'")
        }
        if let limit = key.rateLimit, let wait = take(key: key.name, limit: limit) {
            throw APIError(
                .tooManyRequests, code: "rate_limited",
                message: "API key '\(key.name)' is over its limit of \(limit.requestsPerSecond) requests/s",
                retryAfterSeconds: max(1, Int(wait.rounded(.up))))
        }
        return key
    }

    /// Takes one token; returns the seconds until one is available when the bucket is empty.
    private func take(key: String, limit: APIKey.RateLimit) -> Double? {
        let now = ContinuousClock.now
        return buckets.withLock { buckets -> Double? in
            var bucket = buckets[key] ?? Bucket(tokens: limit.burst, updated: now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(limit.burst, bucket.tokens + seconds * limit.requestsPerSecond)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / limit.requestsPerSecond
        }
    }
}

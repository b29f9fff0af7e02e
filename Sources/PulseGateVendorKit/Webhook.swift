import Crypto
import Foundation
import PulseGateCore

/// A webhook request as the adapter sees it: raw body bytes (signatures are over these, never over
/// re-serialized JSON), headers, query.
public struct WebhookRequest: Sendable {
    public var method: String
    public var query: [String: String]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var receivedAt: Timestamp

    public init(
        method: String, query: [String: String], headers: [(name: String, value: String)], body: [UInt8],
        receivedAt: Timestamp
    ) {
        self.method = method
        self.query = query
        self.headers = headers
        self.body = body
        self.receivedAt = receivedAt
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var bodyDigest: String { Array(SHA256.hash(data: body)).hexString }
}

/// An answer to a handshake (or to a rejected request).
public struct WebhookAnswer: Sendable, Equatable {
    public var status: Int
    public var contentType: String?
    public var body: [UInt8]

    public init(status: Int, contentType: String? = nil, body: [UInt8] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func json(_ status: Int, _ value: JSONValue) -> WebhookAnswer {
        WebhookAnswer(status: status, contentType: "application/json", body: value.bytes)
    }
}

public enum WebhookVerdict: Sendable, Equatable {
    case authentic
    /// Refused with a reason for the log and a short label for the metric.
    case rejected(reason: String, label: String)
}

/// Signature primitives shared by the adapters. Every comparison is constant-time.
public enum WebhookSignature {
    public static func hmacSHA256(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    public static func hmacSHA1(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    /// Compares two byte strings in time that depends only on their lengths.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// Checks a hex-encoded MAC (case-insensitive) against the expected bytes.
    public static func matchesHex(_ provided: String?, _ expected: [UInt8]) -> Bool {
        guard let provided, let bytes = [UInt8](hex: provided.trimmingCharacters(in: .whitespaces)) else {
            return false
        }
        return constantTimeEqual(bytes, expected)
    }

    /// Checks a base64-encoded MAC against the expected bytes.
    public static func matchesBase64(_ provided: String?, _ expected: [UInt8]) -> Bool {
        guard let provided, let data = Data(base64Encoded: provided.trimmingCharacters(in: .whitespaces)) else {
            return false
        }
        return constantTimeEqual(Array(data), expected)
    }

    /// Compares a shared secret sent in a header (Google's subscriber Authorization value).
    public static func matchesSecret(_ provided: String?, _ expected: Secret) -> Bool {
        guard let provided else { return false }
        return constantTimeEqual(
            Array(SHA256.hash(data: Array(provided.utf8))), Array(SHA256.hash(data: expected.bytes)))
    }

    /// Verifies an ECDSA P-256 / SHA-256 signature, given DER or raw (r‖s) bytes.
    public static func verifyP256(signature: [UInt8], message: [UInt8], publicKey: P256.Signing.PublicKey) -> Bool {
        if let der = try? P256.Signing.ECDSASignature(derRepresentation: signature),
            publicKey.isValidSignature(der, for: message)
        {
            return true
        }
        if signature.count == 64, let raw = try? P256.Signing.ECDSASignature(rawRepresentation: signature) {
            return publicKey.isValidSignature(raw, for: message)
        }
        return false
    }

    /// Whether a signed timestamp is within `tolerance` of `now` (replay protection).
    public static func isFresh(_ signed: Timestamp, now: Timestamp, toleranceSeconds: Int64) -> Bool {
        abs(signed.millisecondsSinceEpoch - now.millisecondsSinceEpoch) <= toleranceSeconds * 1000
    }
}

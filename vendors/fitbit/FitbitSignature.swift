import Crypto
import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit
import Synchronization

/// A key Google may have signed a webhook payload with.
///
/// Google signs with Tink, so a signature normally starts with Tink's five-byte output prefix (a
/// version byte and the key id) before the DER signature; keys read from Google's keyset say which
/// prefix they use, a key from a PEM says nothing, so both forms are tried with it.
public struct FitbitWebhookKey: Sendable {
    /// Tink's output prefix types (tink `OutputPrefixType`), plus `unknown` for a bare PEM key.
    public enum Prefix: Sendable, Equatable {
        /// `0x01` + key id; the body is signed as is (what Google publishes).
        case tink
        /// `0x00` + key id; the body is signed as is.
        case crunchy
        /// `0x00` + key id; the body is signed with a `0x00` byte appended.
        case legacy
        /// No prefix.
        case raw
        /// A PEM key: accept a `0x01`-prefixed or an unprefixed signature.
        case unknown
    }

    /// The uncompressed point (`04 ‖ x ‖ y`): swift-crypto's key type is not `Sendable`, its bytes are.
    public let x963: [UInt8]
    public let keyID: UInt32?
    public let prefix: Prefix

    public init(publicKey: P256.Signing.PublicKey, keyID: UInt32? = nil, prefix: Prefix = .unknown) {
        self.x963 = Array(publicKey.x963Representation)
        self.keyID = keyID
        self.prefix = prefix
    }

    public var publicKey: P256.Signing.PublicKey? { try? P256.Signing.PublicKey(x963Representation: x963) }
}

/// Reading Google's key material and checking `X-HEALTHAPI-SIGNATURE` with it.
public enum FitbitWebhookSignature {
    /// Google's reference calls the header `X-HEALTHAPI-SIGNATURE`; some of its client docs call it
    /// `GOOGLE-HEALTH-API-SIGNATURE`. Either is read; both are checked the same way.
    public static let headerNames = ["X-HEALTHAPI-SIGNATURE", "GOOGLE-HEALTH-API-SIGNATURE"]

    /// Verifies a decoded signature over the raw body against any of `keys`.
    public static func verify(signature: [UInt8], body: [UInt8], keys: [FitbitWebhookKey]) -> Bool {
        let hinted: UInt32? =
            signature.count > 5 ? signature[1...4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : nil
        for key in keys {
            guard let publicKey = key.publicKey else { continue }
            switch key.prefix {
            case .raw:
                if WebhookSignature.verifyP256(signature: signature, message: body, publicKey: publicKey) {
                    return true
                }
            case .tink, .crunchy, .legacy:
                let version: UInt8 = key.prefix == .tink ? 0x01 : 0x00
                guard signature.count > 5, signature[0] == version, key.keyID == nil || key.keyID == hinted else {
                    continue
                }
                let message = key.prefix == .legacy ? body + [0x00] : body
                if WebhookSignature.verifyP256(
                    signature: Array(signature[5...]), message: message, publicKey: publicKey)
                {
                    return true
                }
            case .unknown:
                if signature.count > 5, signature[0] == 0x01,
                    WebhookSignature.verifyP256(
                        signature: Array(signature[5...]), message: body, publicKey: publicKey)
                {
                    return true
                }
                if WebhookSignature.verifyP256(signature: signature, message: body, publicKey: publicKey) {
                    return true
                }
            }
        }
        return false
    }

    /// Reads the operator's `public_key_pem`: one or more PEM public keys, or a Tink JSON keyset as
    /// Google publishes it. `nil` when the text holds no usable P-256 key (a configuration error, not
    /// a forged request).
    public static func configuredKeys(_ text: String) -> [FitbitWebhookKey]? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("{") {
            guard let json = try? JSONValue.parse(Array(trimmed.utf8)) else { return nil }
            let keys = keys(tinkKeyset: json)
            return keys.isEmpty ? nil : keys
        }
        let end = "-----END PUBLIC KEY-----"
        var keys = [FitbitWebhookKey]()
        for block in trimmed.components(separatedBy: end) {
            let body = block.trimmingCharacters(in: .whitespacesAndNewlines)
            if body.isEmpty { continue }
            guard let key = try? P256.Signing.PublicKey(pemRepresentation: body + "\n" + end) else { return nil }
            keys.append(FitbitWebhookKey(publicKey: key))
        }
        return keys.isEmpty ? nil : keys
    }

    /// The enabled ECDSA P-256 / SHA-256 keys of a Tink JSON keyset
    /// (`{"primaryKeyId":…,"key":[{"keyData":{"typeUrl":…,"value":…},"status":"ENABLED","keyId":…,
    /// "outputPrefixType":"TINK"}]}`); anything else in it is skipped, never trusted.
    public static func keys(tinkKeyset json: JSONValue) -> [FitbitWebhookKey] {
        var keys = [FitbitWebhookKey]()
        for entry in json["key"]?.array ?? [] {
            guard (entry["status"]?.string ?? "ENABLED") == "ENABLED",
                entry["keyData"]?["typeUrl"]?.string == "type.googleapis.com/google.crypto.tink.EcdsaPublicKey",
                let value = entry["keyData"]?["value"]?.string, let bytes = decodeBase64(value),
                let publicKey = ecdsaPublicKey(protobuf: bytes)
            else { continue }
            let prefix: FitbitWebhookKey.Prefix =
                switch entry["outputPrefixType"]?.string {
                case "RAW": .raw
                case "LEGACY": .legacy
                case "CRUNCHY": .crunchy
                default: .tink
                }
            let keyID = entry["keyId"]?.int.flatMap { UInt32(exactly: $0) }
            keys.append(FitbitWebhookKey(publicKey: publicKey, keyID: keyID, prefix: prefix))
        }
        return keys
    }

    /// Tink's `EcdsaPublicKey` message: `params` (2) with `hash_type` (1, SHA256 = 3) and `curve`
    /// (2, NIST_P256 = 2), then the coordinates `x` (3) and `y` (4) as big-endian integers, which carry a
    /// leading zero byte whenever their top bit is set.
    static func ecdsaPublicKey(protobuf: [UInt8]) -> P256.Signing.PublicKey? {
        guard let fields = ProtobufFields(protobuf), let params = fields.bytes[2].flatMap(ProtobufFields.init),
            params.varints[1] == 3, params.varints[2] == 2,
            let x = fields.bytes[3].flatMap(coordinate), let y = fields.bytes[4].flatMap(coordinate)
        else { return nil }
        return try? P256.Signing.PublicKey(x963Representation: [0x04] + x + y)
    }

    static func coordinate(_ bytes: [UInt8]) -> [UInt8]? {
        let significant = bytes.drop { $0 == 0 }
        guard significant.count <= 32 else { return nil }
        return [UInt8](repeating: 0, count: 32 - significant.count) + significant
    }

    /// Standard or URL-safe base64, padded or not.
    public static func decodeBase64(_ text: String) -> [UInt8]? {
        var text = text.trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text).map { Array($0) }
    }
}

/// The varint and length-delimited fields of one protobuf message (first occurrence of each); enough
/// for Tink's key messages without a protobuf dependency. `nil` for bytes that are not a message.
struct ProtobufFields {
    var varints = [Int: UInt64]()
    var bytes = [Int: [UInt8]]()

    init?(_ message: [UInt8]) {
        var i = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while i < message.count, shift < 64 {
                let byte = message[i]
                i += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while i < message.count {
            guard let tag = varint(), tag >> 3 > 0, tag >> 3 < 1 << 29 else { return nil }
            let field = Int(tag >> 3)
            switch tag & 7 {
            case 0:
                guard let value = varint() else { return nil }
                if varints[field] == nil { varints[field] = value }
            case 1:
                guard message.count - i >= 8 else { return nil }
                i += 8
            case 2:
                guard let length = varint(), length <= UInt64(message.count - i) else { return nil }
                if bytes[field] == nil { bytes[field] = Array(message[i..<i + Int(length)]) }
                i += Int(length)
            case 5:
                guard message.count - i >= 4 else { return nil }
                i += 4
            default:
                return nil
            }
        }
    }
}

/// Google's published keyset, fetched when first needed and kept for hours. Google rotates the signing
/// key (about every 30 days, by third-party accounts), so a signature that fails against the kept keys
/// triggers one refetch — at most one a minute, so forged requests cannot turn pulsegate into a
/// request amplifier against gstatic.com.
final class FitbitKeysetCache: Sendable {
    struct State {
        var keys = [FitbitWebhookKey]()
        var fetchedAt: Int64?
        var lastAttempt: Int64?
    }

    static let lifetime: Int64 = 6 * 3_600_000
    /// Kept keys still verify this long when a refetch fails; older ones are no evidence of anything.
    static let staleLimit: Int64 = 24 * 3_600_000
    static let retryInterval: Int64 = 60_000

    private let state = Mutex(State())

    /// The keys to verify with and, when there are none (or only stale ones), why. `refresh`: a
    /// signature failed against the kept keys, so the key may have rotated.
    func keys(context: VendorContext, refresh: Bool) async -> (keys: [FitbitWebhookKey], problem: String?) {
        let now = context.now.millisecondsSinceEpoch
        let kept = state.withLock { $0 }
        func usable(_ problem: String) -> (keys: [FitbitWebhookKey], problem: String?) {
            guard let at = kept.fetchedAt, now - at < Self.staleLimit else { return ([], problem) }
            return (kept.keys, nil)
        }
        if !refresh, let at = kept.fetchedAt, now - at < Self.lifetime { return (kept.keys, nil) }
        if let last = kept.lastAttempt, now - last < Self.retryInterval {
            return usable("Google's keyset was fetched less than a minute ago")
        }
        guard let url = context.settings.urls["webhook_keyset"] else { return usable("no urls.webhook_keyset") }
        state.withLock { $0.lastAttempt = now }
        let response: InboundResponse
        do {
            response = try await context.http.send(
                OutboundRequest(method: .get, url: url, headers: [("Accept", "application/json")]), user: nil)
        } catch {
            return usable("fetching Google's keyset failed: \(error)")
        }
        guard response.isSuccess, let json = try? JSONValue.parse(response.body) else {
            return usable("Google's keyset answered \(response.status) without a JSON keyset")
        }
        let keys = FitbitWebhookSignature.keys(tinkKeyset: json)
        guard !keys.isEmpty else { return usable("Google's keyset holds no P-256 key") }
        state.withLock {
            $0.keys = keys
            $0.fetchedAt = now
        }
        return (keys, nil)
    }
}

import Foundation
import PulseGateCore

/// The claims pulsegate reads from a Suunto access token.
///
/// Suunto's access token is a JWT (`/oauth/token`: "JWT token (access and refresh) … Token expiration
/// time … is in the `exp` token attribute"), and its custom `user` claim is the Suunto App username
/// every webhook names its user by. pulsegate reads the payload **without verifying the signature**,
/// and only to learn those two values. That is sound because of where the token comes from: pulsegate
/// received it a moment ago over TLS from Suunto's own token endpoint, in answer to a request
/// authenticated with our client secret, so nobody but Suunto could have chosen its contents. A token
/// that arrives any other way (a webhook, a user) is never read like this. Suunto publishes no key set
/// for these tokens either, so the signature could not be checked honestly anyway.
struct SuuntoTokenClaims: Sendable, Equatable {
    /// The `user` claim: the Suunto username.
    var user: String?
    /// The `exp` claim (seconds since the epoch).
    var expiresAt: Timestamp?

    /// Longest token read: a JWT of a few hundred bytes, with ample room.
    static let maxTokenBytes = 64 * 1024

    /// Reads the payload segment of `token`; `nil` when `token` is not a JWT at all.
    static func read(_ token: String) -> SuuntoTokenClaims? {
        guard token.utf8.count <= maxTokenBytes else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = base64URLDecode(parts[1]),
            let json = try? JSONValue.parse(payload), json.object != nil
        else { return nil }
        return SuuntoTokenClaims(
            user: json["user"]?.string, expiresAt: json["exp"]?.double.map { Timestamp(secondsSinceEpoch: $0) })
    }

    /// base64url without padding (RFC 7515 §2), as JWT segments are written.
    static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        guard !text.isEmpty,
            text.utf8.allSatisfy({ $0.isBase64URL })
        else { return nil }
        var standard = String(text.prefix { $0 != "=" }).replacingOccurrences(of: "-", with: "+")
            .replacingOccurrences(of: "_", with: "/")
        while standard.utf8.count % 4 != 0 { standard += "=" }
        return Data(base64Encoded: standard).map(Array.init)
    }

    /// A username pulsegate accepts as a vendor user id: 1–200 bytes without whitespace or control
    /// characters. Suunto documents no alphabet for usernames, so only what cannot be a name (and would
    /// garble logs and lookups) is refused.
    static func isUsername(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 200
            && text.unicodeScalars.allSatisfy {
                !CharacterSet.whitespacesAndNewlines.contains($0) && !CharacterSet.controlCharacters.contains($0)
            }
    }
}

extension UInt8 {
    fileprivate var isBase64URL: Bool {
        switch self {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "="):
            true
        default: false
        }
    }
}

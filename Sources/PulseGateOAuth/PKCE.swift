import Crypto
import Foundation

/// Proof Key for Code Exchange (RFC 7636), S256 only: the `plain` method protects nothing against an
/// attacker who can read the authorization request, so pulsegate never offers it.
public struct PKCE: Sendable, Hashable {
    /// 43–128 characters from the unreserved set; kept secret until the code exchange.
    public let verifier: String

    /// A fresh verifier: 32 random bytes, base64url without padding (43 characters, 256 bits).
    public init() {
        var rng = SystemRandomNumberGenerator()
        verifier = Base64URL.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    public init(verifier: String) {
        self.verifier = verifier
    }

    /// `BASE64URL(SHA256(ASCII(verifier)))`, the value sent as `code_challenge`.
    public var challenge: String { Base64URL.encode(Array(SHA256.hash(data: Array(verifier.utf8)))) }

    public static let method = "S256"
}

/// Base64url without padding (RFC 4648 §5), as OAuth uses it for PKCE and `state` values.
public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Random url-safe text with `bytes` bytes of entropy.
    public static func random(bytes: Int = 32) -> String {
        var rng = SystemRandomNumberGenerator()
        return encode((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }
}

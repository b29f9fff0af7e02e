import Foundation
import PulseGateOAuth

/// Checks on text that comes from vendor payloads before it is used in a URL path or a record key.
public enum PayloadText {
    /// Whether `text` is safe as one URL path segment or record key: letters, digits, `-` and `_`
    /// only, 1–64 bytes. Ids from payloads go into request paths; anything else (a `/`, `..`, `%2F`) is
    /// refused rather than escaped, because no vendor issues such ids.
    public static func isPathSegment(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64
            && text.utf8.allSatisfy {
                switch $0 {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                    true
                default: false
                }
            }
    }
}

extension InboundResponse {
    /// A header holding a comma-separated list of integers, one per rate-limit window (Polar's
    /// `RateLimit-*`, Wahoo's `X-RateLimit-*`); entries that are not integers are skipped.
    public func integerList(_ name: String) -> [Int] {
        (header(name) ?? "").split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }
}

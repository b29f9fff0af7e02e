/// A secret value (HMAC key, API key, token) that never prints itself.
///
/// Logging a configuration or an error that holds one shows `[redacted]`; the bytes are reachable only
/// through ``bytes`` at the single place that uses them.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public let bytes: [UInt8]

    public init(_ text: String) { bytes = Array(text.utf8) }
    public init(bytes: [UInt8]) { self.bytes = bytes }

    public var isEmpty: Bool { bytes.isEmpty }
    public var description: String { "[redacted]" }
    public var debugDescription: String { "[redacted]" }
}

/// The 8-byte key of ANT network 0, which a stick must be given before it hears any ANT+ sensor.
///
/// The ANT+ network key is licensed through the ANT+ adopter agreement, so pulsegate never ships it:
/// the operator puts it in the configuration, and ``ANTBackend`` refuses to start without one. Like
/// ``Secret``, it never prints its bytes (a logged configuration or error shows `[redacted]`).
public struct ANTNetworkKey: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The key as the Set Network Key message (0x46) carries it.
    public let bytes: [UInt8]

    /// Refuses anything but exactly 8 bytes.
    public init(bytes: [UInt8]) throws(SensorBackendError) {
        guard bytes.count == 8 else {
            throw Self.malformed("it has \(bytes.count) bytes")
        }
        self.bytes = bytes
    }

    /// Reads the key as configuration files write it: 16 hex digits, optionally separated by spaces,
    /// colons, commas or dashes, each byte optionally prefixed `0x` (`01 23 …`, `0123…`,
    /// `0x01,0x23,…`). The error never repeats the text, which may be a near-miss of the real key.
    public init(hex text: String) throws(SensorBackendError) {
        guard let bytes = Hex.bytes(text) else {
            throw Self.malformed("it is not hexadecimal")
        }
        try self.init(bytes: bytes)
    }

    public var description: String { "[redacted]" }
    public var debugDescription: String { "[redacted]" }

    private static func malformed(_ why: String) -> SensorBackendError {
        SensorBackendError(
            backend: "ant", .notConfigured,
            "the ANT+ network key must be 8 bytes written as 16 hex digits (spaces, colons or 0x prefixes "
                + "allowed), but \(why)"
        )
    }
}

/// Why a FIT stream was refused, and where.
///
/// A struct, like the rest of the house errors, so callers can match on ``reason`` while logs get the
/// byte offset and a human sentence. `offset` counts from the start of the whole stream (chained files
/// included), so an operator can open the file in a hex editor at that position.
public struct FITError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The closed list of ways a FIT stream can be wrong.
    public enum Reason: String, Sendable {
        /// Zero bytes, or a header and nothing else: there is nothing to import.
        case empty
        /// The header is not a FIT header (size, `.FIT` signature).
        case badHeader
        /// The 14-byte header carries a CRC that is neither 0 ("not computed") nor right.
        case badHeaderCRC
        /// The CRC after the data records does not match the bytes.
        case badFileCRC
        /// The stream ends inside a header, a message, or before the file CRC.
        case truncated
        /// A message runs past the end of the data the file header declares (the header's data size and
        /// the messages disagree).
        case overrun
        /// A data message uses a local message type that no definition introduced.
        case undefinedLocalMessage
        /// A definition message that cannot be right (architecture byte, field size 0).
        case badDefinition
        /// A timestamp that cannot be a real recording time: before 1980, in the future, or
        /// device-relative with no absolute time in the file to anchor it on.
        case implausibleTimestamp
    }

    public var reason: Reason
    /// Byte offset in the stream where the damage was found.
    public var offset: Int
    public var detail: String

    public init(_ reason: Reason, at offset: Int, _ detail: String) {
        self.reason = reason
        self.offset = offset
        self.detail = detail
    }

    public var description: String { "\(reason.rawValue) at byte \(offset): \(detail)" }
}

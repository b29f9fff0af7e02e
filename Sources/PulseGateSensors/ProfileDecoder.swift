import Foundation
import PulseGateCore

/// What a profile decoder reads from one payload, before the sensor manager gives it a subject,
/// a station and a device.
public enum Reading: Sendable, Equatable {
    /// A measurement in canonical terms. `offsetMillis` places it relative to the payload's arrival:
    /// 0 for "now", negative for beats that happened earlier (RR intervals carried in one payload).
    case measurement(Metric, Double, unit: String, quality: Quality = [], offsetMillis: Int64 = 0)
    /// Battery level in percent (Battery Level characteristic, ANT+ common page 82).
    case battery(Int)
}

/// Why a payload was refused: truncated, a reserved value, an impossible combination of flags. The
/// payload is dropped and counted; the decoder's state is left as it was before the payload.
public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public let profile: String
    public let reason: String
    /// Byte offset where decoding stopped, when it is about a position.
    public let offset: Int?

    public init(profile: String, _ reason: String, offset: Int? = nil) {
        self.profile = profile
        self.reason = reason
        self.offset = offset
    }

    public var description: String {
        "\(profile): \(reason)\(offset.map { " (at byte \($0))" } ?? "")"
    }
}

/// Decodes one sensor profile's payloads, in order. Decoders hold the state that values derived
/// across payloads need (cumulative crank and wheel revolutions and their event times, with 16-bit
/// rollover), so one decoder instance serves one sensor.
public protocol ProfileDecoder: Sendable {
    /// The profile's name as the CLI and logs show it: `ble:2a37`, `ant:hrm`.
    var profile: String { get }

    /// Decodes one payload received at `time`.
    mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading]
}

/// Little-endian reads with bounds checks that become ``DecodeError``s naming the field.
public struct ByteReader {
    public let bytes: [UInt8]
    public private(set) var index = 0
    let profile: String

    public init(_ bytes: [UInt8], profile: String) {
        self.bytes = bytes
        self.profile = profile
    }

    public var remaining: Int { bytes.count - index }

    mutating func need(_ n: Int, _ field: String) throws(DecodeError) {
        guard remaining >= n else {
            throw DecodeError(
                profile: profile, "truncated: \(field) needs \(n) bytes, \(remaining) left", offset: index)
        }
    }

    public mutating func u8(_ field: String) throws(DecodeError) -> UInt8 {
        try need(1, field)
        defer { index += 1 }
        return bytes[index]
    }

    public mutating func u16(_ field: String) throws(DecodeError) -> UInt16 {
        try need(2, field)
        defer { index += 2 }
        return UInt16(bytes[index]) | UInt16(bytes[index + 1]) << 8
    }

    public mutating func s16(_ field: String) throws(DecodeError) -> Int16 {
        Int16(bitPattern: try u16(field))
    }

    public mutating func u24(_ field: String) throws(DecodeError) -> UInt32 {
        try need(3, field)
        defer { index += 3 }
        return UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16
    }

    public mutating func u32(_ field: String) throws(DecodeError) -> UInt32 {
        try need(4, field)
        defer { index += 4 }
        return UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16
            | UInt32(bytes[index + 3]) << 24
    }

    public mutating func skip(_ n: Int, _ field: String) throws(DecodeError) {
        try need(n, field)
        index += n
    }
}

/// Parses hex as installers paste it: `16 48 00 04`, `16480004`, `16:48:00:04`, `0x16,0x48`.
public enum Hex {
    public static func bytes(_ text: String) -> [UInt8]? {
        var digits = text.replacingOccurrences(of: "0x", with: "").replacingOccurrences(of: "0X", with: "")
        digits.removeAll { $0 == " " || $0 == ":" || $0 == "," || $0 == "-" || $0 == "\t" }
        return [UInt8](hex: digits)
    }
}

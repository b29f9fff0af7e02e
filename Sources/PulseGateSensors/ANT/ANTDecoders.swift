/// The ANT+ profile names pulsegate decodes, as the CLI and the configuration spell them.
public let antProfileNames: [String] = ["ant:hrm", "ant:power", "ant:speed-cadence", "ant:speed", "ant:cadence"]

/// A fresh decoder for one ANT+ sensor, or `nil` for a name outside ``antProfileNames``.
///
/// Every decoder takes the 8-byte data page of a broadcast (``ANTBroadcast/page``) as its payload.
/// `wheelCircumference` (metres) is used by `ant:speed-cadence` and `ant:speed`; a value that is not
/// positive and finite falls back to 2.096 m (700×23C).
public func antDecoder(_ profile: String, wheelCircumference: Double) -> (any ProfileDecoder)? {
    let wheel = wheelCircumference.isFinite && wheelCircumference > 0 ? wheelCircumference : 2.096
    switch profile {
    case "ant:hrm": return ANTHeartRateDecoder()
    case "ant:power": return ANTPowerDecoder()
    case "ant:speed-cadence": return ANTSpeedCadenceDecoder(wheelCircumference: wheel)
    case "ant:speed": return ANTSpeedDecoder(wheelCircumference: wheel)
    case "ant:cadence": return ANTCadenceDecoder()
    default: return nil
    }
}

/// The profile name for an ANT+ device type as it appears in a channel ID (the pairing bit, bit 7,
/// is ignored): 120 HRM, 11 bicycle power, 121 speed and cadence, 122 cadence, 123 speed.
public func antProfileName(deviceType: UInt8) -> String? {
    switch deviceType & 0x7F {
    case 120: "ant:hrm"
    case 11: "ant:power"
    case 121: "ant:speed-cadence"
    case 122: "ant:cadence"
    case 123: "ant:speed"
    default: nil
    }
}

enum ANTPage {
    /// Every ANT+ data page is exactly 8 bytes; anything else is refused before a field is read.
    static func reader(_ payload: [UInt8], profile: String) throws(DecodeError) -> ByteReader {
        guard payload.count >= 8 else {
            throw DecodeError(
                profile: profile, "truncated: a data page needs 8 bytes, \(payload.count) given",
                offset: payload.count)
        }
        guard payload.count == 8 else {
            throw DecodeError(profile: profile, "a data page is 8 bytes, \(payload.count) given", offset: 8)
        }
        return ByteReader(payload, profile: profile)
    }

    /// Big-endian uint16 (bicycle power page 0x20 and its calibration page).
    static func u16BigEndian(_ r: inout ByteReader, _ field: String) throws(DecodeError) -> UInt16 {
        let v = try r.u16(field)
        return v.byteSwapped
    }
}

/// One cumulative revolution count with its event time (1/1024 s), both uint16 with rollover, as the
/// speed and cadence sensors send them. Shared by the three S&C decoders.
struct RevolutionEvent: Sendable, Equatable {
    var time: UInt16
    var revolutions: UInt16

    /// Revolutions per second since `previous`, or `nil` when the event time did not move (no new
    /// revolution; never a division by zero).
    func revolutionsPerSecond(since previous: RevolutionEvent) -> Double? {
        let dt = time &- previous.time
        guard dt != 0 else { return nil }
        let dr = revolutions &- previous.revolutions
        return Double(dr) * 1024 / Double(dt)
    }
}

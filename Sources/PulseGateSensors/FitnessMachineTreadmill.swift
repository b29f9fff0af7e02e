import PulseGateCore

/// FTMS Treadmill Data (0x2ACD): speed, heart rate and power from a treadmill.
///
/// Flags are uint16 and fields follow in bit order: speed (present when bit 0, "More Data", is
/// **0**; uint16, 0.01 km/h), average speed, total distance (uint24), inclination and ramp angle
/// (2 × sint16), elevation gain (2 × uint16), instantaneous and average pace (uint8 each, 0.1 km/min,
/// the FTMS v1.0 layout), expended energy (5 bytes), heart rate (uint8), MET (uint8), elapsed and
/// remaining time (uint16 each), force on belt and power output (2 × sint16). Speed is emitted in
/// `km/h` (the intake converts), heart rate in `/min` (0, "no sensor", is not emitted), power in `W`.
/// Stateless.
public struct TreadmillDataDecoder: ProfileDecoder {
    public let profile = "ble:2acd"

    public init() {}

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = ByteReader(payload, profile: profile)
        let flags = try r.u16("flags")
        var readings = [Reading]()
        if flags & 0x0001 == 0 {
            let speed = try r.u16("instantaneous speed")
            readings.append(.measurement(.speed, Double(speed) / 100, unit: "km/h"))
        }
        if flags & 0x0002 != 0 { _ = try r.u16("average speed") }
        if flags & 0x0004 != 0 { _ = try r.u24("total distance") }
        if flags & 0x0008 != 0 {
            _ = try r.s16("inclination")
            _ = try r.s16("ramp angle setting")
        }
        if flags & 0x0010 != 0 {
            _ = try r.u16("positive elevation gain")
            _ = try r.u16("negative elevation gain")
        }
        if flags & 0x0020 != 0 { _ = try r.u8("instantaneous pace") }
        if flags & 0x0040 != 0 { _ = try r.u8("average pace") }
        if flags & 0x0080 != 0 {
            _ = try r.u16("total energy")
            _ = try r.u16("energy per hour")
            _ = try r.u8("energy per minute")
        }
        if flags & 0x0100 != 0 {
            let bpm = try r.u8("heart rate")
            if bpm != 0 { readings.append(.measurement(.heartRate, Double(bpm), unit: "/min")) }
        }
        if flags & 0x0200 != 0 { _ = try r.u8("metabolic equivalent") }
        if flags & 0x0400 != 0 { _ = try r.u16("elapsed time") }
        if flags & 0x0800 != 0 { _ = try r.u16("remaining time") }
        if flags & 0x1000 != 0 {
            _ = try r.s16("force on belt")
            let power = try r.s16("power output")
            readings.append(.measurement(.power, Double(power), unit: "W"))
        }
        try r.finish(reservedFlagsSet: flags & 0xE000 != 0)
        return readings
    }
}

import PulseGateCore

/// RSC Measurement (0x2A53): speed (uint16, 1/256 m/s) and cadence (uint8, steps per minute).
///
/// Stride length (bit 0) and total distance (bit 1) are read and skipped: stride has no registry
/// metric, and total distance is a cumulative counter while `distance` is an interval metric.
/// Stateless.
public struct RunningSpeedCadenceDecoder: ProfileDecoder {
    public let profile = "ble:2a53"

    public init() {}

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = ByteReader(payload, profile: profile)
        let flags = try r.u8("flags")
        let speed = try r.u16("instantaneous speed")
        let cadence = try r.u8("instantaneous cadence")
        if flags & 0x01 != 0 { _ = try r.u16("instantaneous stride length") }
        if flags & 0x02 != 0 { _ = try r.u32("total distance") }
        try r.finish(reservedFlagsSet: flags & 0xF8 != 0)
        return [
            .measurement(.speed, Double(speed) / 256, unit: "m/s"),
            .measurement(.cadence, Double(cadence), unit: "/min"),
        ]
    }
}

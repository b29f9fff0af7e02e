import PulseGateCore

/// FTMS Indoor Bike Data (0x2AD2): speed, cadence, power and heart rate from a smart bike or trainer.
///
/// Flags are uint16 and fields follow in bit order. Bit 0 is inverted ("More Data"): instantaneous
/// speed (0.01 km/h) is present when it is **0**. Resistance level is read as sint16, the FTMS v1.0
/// layout that devices send (the newer GSS YAML's uint8 would misalign every later field). Speed is
/// emitted in `km/h` (exact in the device's resolution; the intake converts to m/s), cadence in
/// `/min` (0.5 rpm resolution), power in `W`. A heart rate of 0 means "no HR sensor" on these
/// machines and is not emitted. Averages, distance, energy, MET and times are read and skipped.
/// Stateless.
public struct IndoorBikeDataDecoder: ProfileDecoder {
    public let profile = "ble:2ad2"

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
        if flags & 0x0004 != 0 {
            let cadence = try r.u16("instantaneous cadence")
            readings.append(.measurement(.cadence, Double(cadence) / 2, unit: "/min"))
        }
        if flags & 0x0008 != 0 { _ = try r.u16("average cadence") }
        if flags & 0x0010 != 0 { _ = try r.u24("total distance") }
        if flags & 0x0020 != 0 { _ = try r.s16("resistance level") }
        if flags & 0x0040 != 0 {
            let power = try r.s16("instantaneous power")
            readings.append(.measurement(.power, Double(power), unit: "W"))
        }
        if flags & 0x0080 != 0 { _ = try r.s16("average power") }
        if flags & 0x0100 != 0 {
            _ = try r.u16("total energy")
            _ = try r.u16("energy per hour")
            _ = try r.u8("energy per minute")
        }
        if flags & 0x0200 != 0 {
            let bpm = try r.u8("heart rate")
            if bpm != 0 { readings.append(.measurement(.heartRate, Double(bpm), unit: "/min")) }
        }
        if flags & 0x0400 != 0 { _ = try r.u8("metabolic equivalent") }
        if flags & 0x0800 != 0 { _ = try r.u16("elapsed time") }
        if flags & 0x1000 != 0 { _ = try r.u16("remaining time") }
        try r.finish(reservedFlagsSet: flags & 0xE000 != 0)
        return readings
    }
}

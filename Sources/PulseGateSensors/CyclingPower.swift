import PulseGateCore

/// Cycling Power Measurement (0x2A63): instantaneous power, plus cadence and speed derived from the
/// cumulative crank and wheel counters across payloads.
///
/// Every optional field is read in specification order (balance, accumulated torque, wheel, crank,
/// extreme force, extreme torque, extreme angles, top and bottom dead spot, accumulated energy);
/// only power, crank and wheel data become readings. Accumulated energy (cumulative kJ) is skipped
/// for the same reason as in ``HeartRateMeasurementDecoder``.
///
/// Cadence (`/min`) and speed (`m/s`, wheel revolutions × `wheelCircumference` over event time in
/// 1/2048 s) carry ``Quality/derived`` and follow ``CumulativeRate``'s rules: nothing from the first
/// payload, the last value while coasting, 0 after 3 s without a new event. A refused payload leaves
/// the counters as they were.
public struct CyclingPowerDecoder: ProfileDecoder {
    public let profile = "ble:2a63"
    /// Wheel circumference in metres (a station setting; 2.096 m is 700x23c).
    public let wheelCircumference: Double
    var crank = CumulativeRate(ticksPerSecond: 1024, revsModulus: 1 << 16, maxPerSecond: 500 / 60)
    var wheel: CumulativeRate

    public init(wheelCircumference: Double = 2.096) {
        self.wheelCircumference = wheelCircumference
        wheel = CumulativeRate(ticksPerSecond: 2048, revsModulus: 1 << 32, maxPerSecond: 150 / wheelCircumference)
    }

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = ByteReader(payload, profile: profile)
        let flags = try r.u16("flags")
        let power = try r.s16("instantaneous power")
        if flags & 0x0001 != 0 { _ = try r.u8("pedal power balance") }
        if flags & 0x0004 != 0 { _ = try r.u16("accumulated torque") }
        var wheelData: (revs: UInt32, time: UInt16)?
        if flags & 0x0010 != 0 {
            wheelData = (try r.u32("cumulative wheel revolutions"), try r.u16("last wheel event time"))
        }
        var crankData: (revs: UInt16, time: UInt16)?
        if flags & 0x0020 != 0 {
            crankData = (try r.u16("cumulative crank revolutions"), try r.u16("last crank event time"))
        }
        if flags & 0x0040 != 0 {
            _ = try r.s16("maximum force magnitude")
            _ = try r.s16("minimum force magnitude")
        }
        if flags & 0x0080 != 0 {
            _ = try r.s16("maximum torque magnitude")
            _ = try r.s16("minimum torque magnitude")
        }
        if flags & 0x0100 != 0 { _ = try r.u24("extreme angles") }
        if flags & 0x0200 != 0 { _ = try r.u16("top dead spot angle") }
        if flags & 0x0400 != 0 { _ = try r.u16("bottom dead spot angle") }
        if flags & 0x0800 != 0 { _ = try r.u16("accumulated energy") }
        try r.finish(reservedFlagsSet: flags & 0xE000 != 0)

        // The payload is good: derive into copies, then commit.
        var readings: [Reading] = [.measurement(.power, Double(power), unit: "W")]
        var crank = self.crank
        var wheel = self.wheel
        if let crankData,
            let perSecond = crank.update(revs: UInt64(crankData.revs), eventTime: crankData.time, at: time)
        {
            readings.append(.measurement(.cadence, perSecond * 60, unit: "/min", quality: .derived))
        }
        if let wheelData,
            let perSecond = wheel.update(revs: UInt64(wheelData.revs), eventTime: wheelData.time, at: time)
        {
            readings.append(.measurement(.speed, perSecond * wheelCircumference, unit: "m/s", quality: .derived))
        }
        self.crank = crank
        self.wheel = wheel
        return readings
    }
}

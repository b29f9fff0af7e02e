import PulseGateCore

/// CSC Measurement (0x2A5B): speed and cadence derived from cumulative wheel (uint32 revolutions,
/// event time 1/1024 s — not CPS's 1/2048) and crank (uint16, 1/1024 s) data across payloads.
///
/// Both values carry ``Quality/derived`` and follow ``CumulativeRate``'s rules (rollover, coasting,
/// 0 after 3 s without a new event). Cumulative distance is not emitted: `distance` is an interval
/// metric and a reading has no end. A refused payload leaves the counters as they were.
public struct CyclingSpeedCadenceDecoder: ProfileDecoder {
    public let profile = "ble:2a5b"
    /// Wheel circumference in metres (a station setting; 2.096 m is 700x23c).
    public let wheelCircumference: Double
    var crank = CumulativeRate(ticksPerSecond: 1024, revsModulus: 1 << 16, maxPerSecond: 500 / 60)
    var wheel: CumulativeRate

    public init(wheelCircumference: Double = 2.096) {
        self.wheelCircumference = wheelCircumference
        wheel = CumulativeRate(ticksPerSecond: 1024, revsModulus: 1 << 32, maxPerSecond: 150 / wheelCircumference)
    }

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = ByteReader(payload, profile: profile)
        let flags = try r.u8("flags")
        var wheelData: (revs: UInt32, time: UInt16)?
        if flags & 0x01 != 0 {
            wheelData = (try r.u32("cumulative wheel revolutions"), try r.u16("last wheel event time"))
        }
        var crankData: (revs: UInt16, time: UInt16)?
        if flags & 0x02 != 0 {
            crankData = (try r.u16("cumulative crank revolutions"), try r.u16("last crank event time"))
        }
        try r.finish(reservedFlagsSet: flags & 0xFC != 0)

        var readings = [Reading]()
        var crank = self.crank
        var wheel = self.wheel
        if let wheelData,
            let perSecond = wheel.update(revs: UInt64(wheelData.revs), eventTime: wheelData.time, at: time)
        {
            readings.append(.measurement(.speed, perSecond * wheelCircumference, unit: "m/s", quality: .derived))
        }
        if let crankData,
            let perSecond = crank.update(revs: UInt64(crankData.revs), eventTime: crankData.time, at: time)
        {
            readings.append(.measurement(.cadence, perSecond * 60, unit: "/min", quality: .derived))
        }
        self.crank = crank
        self.wheel = wheel
        return readings
    }
}

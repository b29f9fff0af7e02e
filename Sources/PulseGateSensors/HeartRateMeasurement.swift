import PulseGateCore

/// Heart Rate Measurement (0x2A37): heart rate, sensor contact and RR intervals.
///
/// - Heart rate is uint8 or uint16 (flag bit 0), reported as `heart_rate` in `/min`. When the
///   sensor supports contact detection (bit 2) and reports no contact (bit 1 clear), the reading
///   carries ``Quality/contactLost``.
/// - Energy expended (bit 3, cumulative kJ since the sensor's reset) is read and skipped: the
///   registry's `active_energy` is an interval metric in kcal, and a cumulative counter that the
///   user can reset gives neither a start nor an honest interval.
/// - Every RR interval (bit 4; 1/1024 s, one or more to the end) becomes an `rr_interval` reading in
///   ms. The last beat is at offset 0, each earlier one at minus the sum of the intervals after it.
///   Values are passed through as decoded; the intake rejects those outside the metric's range.
/// Stateless.
public struct HeartRateMeasurementDecoder: ProfileDecoder {
    public let profile = "ble:2a37"

    public init() {}

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = ByteReader(payload, profile: profile)
        let flags = try r.u8("flags")
        let bpm: Int = flags & 0x01 != 0 ? Int(try r.u16("heart rate (uint16)")) : Int(try r.u8("heart rate (uint8)"))
        let contactSupported = flags & 0x04 != 0
        let contactDetected = flags & 0x02 != 0
        if flags & 0x08 != 0 {
            _ = try r.u16("energy expended")
        }
        var rawRR = [UInt16]()
        if flags & 0x10 != 0 {
            rawRR.append(try r.u16("RR interval"))
            while r.remaining > 0 {
                rawRR.append(try r.u16("RR interval"))
            }
        }
        try r.finish(reservedFlagsSet: flags & 0xE0 != 0)

        var readings: [Reading] = [
            .measurement(
                .heartRate, Double(bpm), unit: "/min",
                quality: contactSupported && !contactDetected ? .contactLost : [])
        ]
        let millis = rawRR.map { Double($0) * 1000 / 1024 }
        var after = 0.0
        var rrReadings = [Reading]()
        for ms in millis.reversed() {
            rrReadings.append(.measurement(.rrInterval, ms, unit: "ms", offsetMillis: -Int64(after.rounded())))
            after += ms
        }
        readings += rrReadings.reversed()
        return readings
    }
}

import PulseGateCore

/// ANT+ heart rate monitor (device type 120), profile `ant:hrm`.
///
/// Every page ends with the same four bytes: beat event time (bytes 4–5, uint16, 1/1024 s), beat
/// count (byte 6, uint8) and computed heart rate (byte 7, bpm, 0 = invalid). Byte 0 is the page
/// number; bit 7 is the page-change toggle and is masked off.
///
/// Readings:
/// - `heart_rate` from byte 7 on every page, unless 0.
/// - `rr_interval` once per new beat (the beat count differs from the previous payload's):
///   - page 4 carries the previous beat's event time (bytes 2–3), so RR = (event time − previous)
///     mod 2^16 / 1024 s comes from the page alone, even on the first payload or after missed
///     beats; no quality flag.
///   - any other page: only when the count advanced by exactly one since the previous payload,
///     from the two payloads' event times; quality `.derived`.
///   - a zero interval is not reported.
/// - `.battery` from page 7 byte 1 when it is a percentage (0–100).
///
/// Legacy HRMs have no page byte; bytes 0–3 are then undefined. The decoder does not detect them by
/// watching the toggle bit, so a legacy HRM whose byte 0 happens to read 4 or 7 would be misread.
public struct ANTHeartRateDecoder: ProfileDecoder {
    public let profile = "ant:hrm"

    private var lastEventTime: UInt16?
    private var lastBeatCount: UInt8?

    public init() {}

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = try ANTPage.reader(payload, profile: profile)
        let page = try r.u8("page number") & 0x7F
        let b1 = try r.u8("page byte 1")
        let b2b3 = try r.u16("page bytes 2-3")
        let eventTime = try r.u16("heart beat event time")
        let beatCount = try r.u8("heart beat count")
        let heartRate = try r.u8("computed heart rate")

        var readings: [Reading] = []
        if heartRate != 0 {
            readings.append(.measurement(.heartRate, Double(heartRate), unit: "/min"))
        }
        let newBeat = lastBeatCount.map { beatCount != $0 } ?? true
        if newBeat {
            if page == 4 {
                let ticks = eventTime &- b2b3
                if ticks != 0 {
                    readings.append(.measurement(.rrInterval, Self.millis(ticks), unit: "ms"))
                }
            } else if let lastBeatCount, let lastEventTime, beatCount &- lastBeatCount == 1 {
                let ticks = eventTime &- lastEventTime
                if ticks != 0 {
                    readings.append(.measurement(.rrInterval, Self.millis(ticks), unit: "ms", quality: .derived))
                }
            }
        }
        if page == 7, b1 <= 100 {
            readings.append(.battery(Int(b1)))
        }

        lastEventTime = eventTime
        lastBeatCount = beatCount
        return readings
    }

    static func millis(_ ticks: UInt16) -> Double {
        Double(ticks) * 1000 / 1024
    }
}

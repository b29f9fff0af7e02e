import PulseGateCore

/// FIT time: seconds since 1989-12-31T00:00:00Z in a uint32 — unless the value is below 0x10000000,
/// which the protocol reserves for "seconds since the device powered on" (FR70 and other devices
/// without a clock fix).
///
/// Device-relative times are placed on the calendar only through a `timestamp_correlation` message in
/// the same file (its `timestamp` is UTC, its `system_timestamp` the device clock at the same instant).
/// Without one they are refused (``FITError/Reason/implausibleTimestamp``): `activity.local_timestamp`
/// would be the only other clue, and it is wall-clock time in an unknown time zone, so every sample
/// would be off by the zone's offset.
public enum FITTime {
    /// 1989-12-31T00:00:00Z in Unix seconds.
    public static let epoch: Int64 = 631_065_600
    /// Values below this are device-relative.
    public static let relativeLimit: UInt32 = 0x1000_0000

    /// Unix milliseconds of a FIT time; `nil` for a device-relative one without an anchor.
    /// - Parameter anchor: Unix milliseconds of device-relative second 0, from `timestamp_correlation`.
    public static func unixMillis(_ seconds: UInt32, anchor: Int64?) -> Int64? {
        if seconds >= relativeLimit { return (Int64(seconds) + epoch) * 1000 }
        guard let anchor else { return nil }
        return anchor + Int64(seconds) * 1000
    }

    /// The anchor a `timestamp_correlation` message gives, or `nil` when it lacks either clock.
    static func anchor(from m: FITMessage) -> Int64? {
        typealias C = FITProfile.TimestampCorrelation
        guard let utc = m.raw(253), UInt32(truncatingIfNeeded: utc) >= relativeLimit,
            let system = m.raw(C.systemTimestamp.number)
        else { return nil }
        let utcMillis = (Int64(utc) + epoch) * 1000 + Int64(((m.value(C.fractionalTimestamp) ?? 0) * 1000).rounded())
        let systemMillis =
            Int64(system) * 1000 + Int64(((m.value(C.fractionalSystemTimestamp) ?? 0) * 1000).rounded())
        return utcMillis - systemMillis
    }
}

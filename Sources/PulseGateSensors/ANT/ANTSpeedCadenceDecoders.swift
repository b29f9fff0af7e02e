import PulseGateCore

/// ANT+ combined bike speed and cadence sensor (device type 121), profile `ant:speed-cadence`.
///
/// The page has no page byte: cadence event time (bytes 0–1, 1/1024 s), cumulative crank
/// revolutions (2–3), speed event time (4–5), cumulative wheel revolutions (6–7), all uint16 with
/// rollover. `cadence` = 60·Δrevolutions·1024/Δtime and `speed` = circumference·Δrevolutions·1024/Δtime,
/// both `.derived`, each once its event time moved since the previous payload. An unchanged event
/// time means no new revolution: no reading (the decoder does not synthesise 0 after a silence). The
/// first payload only sets the state.
public struct ANTSpeedCadenceDecoder: ProfileDecoder {
    public let profile = "ant:speed-cadence"
    /// Wheel circumference in metres.
    public let wheelCircumference: Double

    private var crank: RevolutionEvent?
    private var wheel: RevolutionEvent?

    public init(wheelCircumference: Double = 2.096) {
        self.wheelCircumference = wheelCircumference
    }

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = try ANTPage.reader(payload, profile: profile)
        let crankNow = RevolutionEvent(
            time: try r.u16("cadence event time"), revolutions: try r.u16("cumulative cadence revolutions"))
        let wheelNow = RevolutionEvent(
            time: try r.u16("speed event time"), revolutions: try r.u16("cumulative wheel revolutions"))

        var readings: [Reading] = []
        if let crank, let rps = crankNow.revolutionsPerSecond(since: crank) {
            readings.append(.measurement(.cadence, rps * 60, unit: "/min", quality: .derived))
        }
        if let wheel, let rps = wheelNow.revolutionsPerSecond(since: wheel) {
            readings.append(.measurement(.speed, rps * wheelCircumference, unit: "m/s", quality: .derived))
        }
        crank = crankNow
        wheel = wheelNow
        return readings
    }
}

/// ANT+ bike speed sensor (device type 123), profile `ant:speed`.
///
/// Byte 0 is the page number (bit 7 toggle); on every page bytes 4–5 are the event time (1/1024 s)
/// and bytes 6–7 the cumulative wheel revolutions, uint16 with rollover. `speed` =
/// circumference·Δrevolutions·1024/Δtime, `.derived`, once the event time moved. Battery page 4
/// reports voltage and a status, not a percentage, and gives no `.battery`.
public struct ANTSpeedDecoder: ProfileDecoder {
    public let profile = "ant:speed"
    /// Wheel circumference in metres.
    public let wheelCircumference: Double

    private var last: RevolutionEvent?

    public init(wheelCircumference: Double = 2.096) {
        self.wheelCircumference = wheelCircumference
    }

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        let now = try readEvent(payload, profile: profile, field: "cumulative wheel revolutions")
        var readings: [Reading] = []
        if let last, let rps = now.revolutionsPerSecond(since: last) {
            readings.append(.measurement(.speed, rps * wheelCircumference, unit: "m/s", quality: .derived))
        }
        last = now
        return readings
    }
}

/// ANT+ bike cadence sensor (device type 122), profile `ant:cadence`.
///
/// The same layout as the speed sensor, with cumulative crank revolutions: `cadence` =
/// 60·Δrevolutions·1024/Δtime, `.derived`, once the event time moved.
public struct ANTCadenceDecoder: ProfileDecoder {
    public let profile = "ant:cadence"

    private var last: RevolutionEvent?

    public init() {}

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        let now = try readEvent(payload, profile: profile, field: "cumulative cadence revolutions")
        var readings: [Reading] = []
        if let last, let rps = now.revolutionsPerSecond(since: last) {
            readings.append(.measurement(.cadence, rps * 60, unit: "/min", quality: .derived))
        }
        last = now
        return readings
    }
}

/// Bytes 4–7 of a speed-only or cadence-only page.
private func readEvent(_ payload: [UInt8], profile: String, field: String) throws(DecodeError) -> RevolutionEvent {
    var r = try ANTPage.reader(payload, profile: profile)
    try r.skip(4, "page number and page bytes 1-3")
    return RevolutionEvent(time: try r.u16("event time"), revolutions: try r.u16(field))
}

import PulseGateCore

/// Turns a cumulative revolution counter and its event time (both as a sensor reports them, with
/// rollover) into revolutions per second, across payloads.
///
/// Used for crank cadence (CPS, CSC) and wheel speed (CPS, CSC). The rules:
/// - The first reading only sets the baseline; nothing is derived from it.
/// - Counters wrap: Δrevs is taken modulo `revsModulus` (2^16 crank, 2^32 wheel), Δtime modulo 2^16.
/// - An event time equal to the previous one means no new revolution (coasting): the last rate is
///   kept until `timeoutMillis` of arrival time has passed since the last new event, then the rate
///   reads 0. Nothing is ever divided by a zero Δtime.
/// - If more arrival time has passed than the event-time counter can represent (it may have
///   wrapped more than once), or the rate is implausible (`maxPerSecond`, e.g. a sensor reset), the
///   new reading becomes the baseline and nothing is derived from it.
///
/// The type is a value: decoders compute the next state into a local and commit it only when the
/// whole payload decoded.
struct CumulativeRate: Sendable, Equatable {
    /// Event time ticks per second: 1024 (crank, CSC wheel) or 2048 (CPS wheel).
    let ticksPerSecond: Double
    /// 1 << 16 for uint16 counters, 1 << 32 for uint32 counters.
    let revsModulus: UInt64
    /// Above this many revolutions per second the value is taken for a counter reset.
    let maxPerSecond: Double
    /// Arrival time without a new event after which the rate reads 0.
    let timeoutMillis: Int64

    /// The last reading with a new event: where the next Δ is taken from.
    struct Baseline: Sendable, Equatable {
        var revs: UInt64
        var eventTime: UInt16
        var arrival: Timestamp
    }

    private(set) var baseline: Baseline?
    private(set) var lastRate: Double?

    init(ticksPerSecond: Double, revsModulus: UInt64, maxPerSecond: Double, timeoutMillis: Int64 = 3000) {
        self.ticksPerSecond = ticksPerSecond
        self.revsModulus = revsModulus
        self.maxPerSecond = maxPerSecond
        self.timeoutMillis = timeoutMillis
    }

    /// The longest arrival gap over which Δtime modulo 2^16 is still unambiguous, with a margin
    /// for notification jitter.
    private var maxGapMillis: Int64 { Int64(65536 / ticksPerSecond * 1000) - 2000 }

    /// Feeds one reading; returns revolutions per second to report, or `nil` when there is nothing
    /// to report yet.
    mutating func update(revs: UInt64, eventTime: UInt16, at arrival: Timestamp) -> Double? {
        guard let previous = baseline else {
            baseline = Baseline(revs: revs % revsModulus, eventTime: eventTime, arrival: arrival)
            return nil
        }
        let gap = arrival.millisecondsSinceEpoch - previous.arrival.millisecondsSinceEpoch
        if eventTime == previous.eventTime {
            // No new revolution since the previous event.
            if gap >= timeoutMillis { return 0 }
            return lastRate
        }
        let revs = revs % revsModulus
        let deltaTicks = eventTime &- previous.eventTime
        let deltaRevs = (revs &+ revsModulus &- previous.revs) % revsModulus
        baseline = Baseline(revs: revs, eventTime: eventTime, arrival: arrival)
        guard gap <= maxGapMillis else {
            lastRate = nil
            return nil
        }
        let rate = Double(deltaRevs) / (Double(deltaTicks) / ticksPerSecond)
        guard rate <= maxPerSecond else {
            lastRate = nil
            return nil
        }
        lastRate = rate
        return rate
    }
}

/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"):
/// a retry waits a uniformly random time in `0 ... min(max, initial × 2^attempt)`, so many pumps
/// failing together do not hammer a recovering receiver in lockstep.
public struct Backoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(60)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The wait before retry number `attempt` (0-based).
    public func delay(attempt: Int, using rng: inout some RandomNumberGenerator) -> Duration {
        let cap = ceiling(attempt: attempt)
        let ms = cap.components.seconds * 1000 + cap.components.attoseconds / 1_000_000_000_000_000
        guard ms > 0 else { return .zero }
        return .milliseconds(Int64.random(in: 0...ms, using: &rng))
    }

    /// The upper bound of the jittered wait for `attempt`.
    public func ceiling(attempt: Int) -> Duration {
        let factor = 1 << min(attempt, 30)
        let grown = initial * factor
        return grown > maximum ? maximum : grown
    }
}

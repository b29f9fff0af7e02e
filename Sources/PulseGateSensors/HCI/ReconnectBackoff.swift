/// How long a backend waits before trying a sensor again after a failed connection or a lost link:
/// doubling from ``initial`` up to ``maximum``, so a strap that left the gym does not keep the
/// controller busy initiating, while one that blipped is back within a second.
public struct ReconnectBackoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    /// A link that streamed at least this long counts as healthy: its loss starts again at ``initial``.
    public var resetAfter: Duration

    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(60), resetAfter: Duration = .seconds(30))
    {
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.resetAfter = resetAfter
    }

    /// The wait after `failures` consecutive failures: zero for none, then initial × 2^(failures − 1),
    /// never more than ``maximum``.
    public func delay(afterFailures failures: Int) -> Duration {
        guard failures > 0 else { return .zero }
        var delay = initial
        for _ in 1..<min(failures, 32) {
            delay *= 2
            if delay >= maximum { return maximum }
        }
        return min(delay, maximum)
    }
}

import PulseGateStore

/// A destination for the sample stream. Implement this to add a sink; the ``SinkPump`` does the rest
/// (reading batches from the outbox, retries with backoff, acknowledgements, dead letters, metrics).
///
/// Contract for implementers:
/// - ``deliver(_:batchID:)`` returns only once the receiver has *durably* accepted every sample of the
///   batch (HTTP 2xx, fsync, publisher confirm). Returning early loses data on a crash.
/// - It throws ``SinkError/retryable(_:retryAfter:)`` for anything that may pass by itself (network,
///   5xx, 429, a full disk) and ``SinkError/poison(_:)`` only when the receiver refuses this batch for
///   good (it then goes to the dead-letter table and delivery moves on).
/// - Delivery is at least once: the same batch (same `batchID`) can arrive again after a crash or a
///   lost answer. Receivers dedupe on sample ids.
/// - It is called by one pump at a time, never concurrently for one sink.
public protocol Sink: Sendable {
    /// Stable id from the configuration; cursors and dead letters are keyed by it.
    var id: String { get }
    /// `http`, `file`, `stdout`: the config `type`.
    var kind: String { get }
    /// Delivers one batch; see the protocol's contract.
    func deliver(_ batch: OutboxBatch, batchID: String) async throws(SinkError)
    /// Whether the receiver is reachable right now, for `/readyz` and `pulsegate doctor`. Cheap and
    /// side-effect free; `nil` means healthy, otherwise the reason.
    func healthCheck() async -> String?
    /// Releases connections and files. Called once, after the last delivery.
    func shutdown() async
}

/// Why a delivery failed, and what the pump should do about it.
public struct SinkError: Error, Sendable, CustomStringConvertible {
    public enum Disposition: Sendable, Equatable {
        /// Try again after a backoff (or after `retryAfter` when the receiver said so).
        case retry(after: Duration?)
        /// The receiver refuses this batch for good.
        case poison
    }

    public let disposition: Disposition
    public let message: String

    public static func retryable(_ message: String, retryAfter: Duration? = nil) -> SinkError {
        SinkError(disposition: .retry(after: retryAfter), message: message)
    }

    public static func poison(_ message: String) -> SinkError {
        SinkError(disposition: .poison, message: message)
    }

    public var description: String { message }
}

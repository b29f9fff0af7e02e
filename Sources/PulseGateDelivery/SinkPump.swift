import Foundation
import Logging
import Metrics
import PulseGateStore
import ServiceLifecycle
import Synchronization

/// Moves samples from the outbox to one sink: reads a batch after the sink's cursor, delivers it
/// (retrying with backoff), then acknowledges it — or dead-letters it when the sink calls it poison.
///
/// One pump per sink, each with its own cursor, so a slow sink never holds back a fast one. Once
/// draining (``beginDrain()``), a pump keeps delivering until it has caught up with the outbox or the
/// drain timeout passes; what is left stays in the outbox for the next start.
public final class SinkPump: Sendable {
    public let sink: any Sink
    private let outbox: Outbox
    private let batchSize: Int
    private let backoff: Backoff
    private let drainTimeout: Duration
    private let logger: Logger
    private let metrics: Metrics
    /// Wakes backoff sleeps when draining starts.
    private let wake = Doorbell()

    /// What `/readyz` and metrics show of this pump.
    public enum Health: Sendable, Equatable {
        case healthy
        case failing(reason: String, since: Date)
    }

    private struct State {
        var drainDeadline: ContinuousClock.Instant?
        var health: Health = .healthy
        var lastAckFailureLog: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    struct Metrics: Sendable {
        let delivered: Counter
        let batches: Counter
        let failures: Counter
        let deadLettered: Counter
        let latency: Timer
    }

    public init(
        sink: any Sink, outbox: Outbox, batchSize: Int, backoff: Backoff, drainTimeout: Duration,
        metricsFactory: any MetricsFactory, logger: Logger
    ) {
        self.sink = sink
        self.outbox = outbox
        self.batchSize = batchSize
        self.backoff = backoff
        self.drainTimeout = drainTimeout
        var logger = logger
        logger[metadataKey: "sink"] = "\(sink.id)"
        self.logger = logger
        let dims = [("sink", sink.id)]
        metrics = Metrics(
            delivered: Counter(
                label: "pulsegate_sink_delivered_samples_total", dimensions: dims, factory: metricsFactory),
            batches: Counter(
                label: "pulsegate_sink_delivered_batches_total", dimensions: dims, factory: metricsFactory),
            failures: Counter(label: "pulsegate_sink_failures_total", dimensions: dims, factory: metricsFactory),
            deadLettered: Counter(
                label: "pulsegate_sink_dead_lettered_samples_total", dimensions: dims, factory: metricsFactory),
            latency: Timer(
                label: "pulsegate_sink_delivery_seconds", dimensions: dims, preferredDisplayUnit: .seconds,
                factory: metricsFactory))
    }

    public var health: Health { state.withLock { $0.health } }

    /// Rows this sink has not acknowledged yet.
    public var lag: Int64 { max(0, outbox.lastSeq - outbox.cursor(for: sink.id)) }

    /// Delivers until cancelled, or until drained after ``beginDrain()``; then shuts the sink down.
    public func run() async throws {
        try await pump()
        await sink.shutdown()
    }

    /// Starts draining: deliver what is in the outbox now, for at most the drain timeout, then return.
    public func beginDrain() {
        state.withLock { $0.drainDeadline = $0.drainDeadline ?? .now + drainTimeout }
        wake.ring()
        outbox.doorbell.ring()
    }

    private var drainDeadline: ContinuousClock.Instant? { state.withLock { $0.drainDeadline } }
    private var pastDeadline: Bool { drainDeadline.map { .now >= $0 } ?? false }

    private func pump() async throws {
        var cursor = outbox.cursor(for: sink.id)
        /// A delivered position whose acknowledgement could not be written yet (full disk). Delivery goes
        /// on from memory — reading needs no space — and the write is retried each round; if the process
        /// dies first, those samples are delivered again (at least once), never lost.
        var unpersisted: Int64?
        var prefetched: OutboxBatch?
        var lastReplayCheck = ContinuousClock.Instant.now - .seconds(10)
        logger.info("sink pump started", metadata: ["cursor": "\(cursor)", "kind": "\(sink.kind)"])
        defer {
            if let seq = unpersisted {
                logger.warning(
                    "stopping with an unrecorded acknowledgement; these samples will be delivered again after restart",
                    metadata: ["through_seq": "\(seq)", "recorded_seq": "\(outbox.cursor(for: sink.id))"])
            }
        }
        while !Task.isCancelled {
            if let seq = unpersisted, await recordAcknowledgement(through: seq) { unpersisted = nil }
            if pastDeadline {
                logger.warning(
                    "drain timeout reached; undelivered samples stay in the outbox", metadata: ["lag": "\(lag)"])
                return
            }
            if drainDeadline == nil, unpersisted == nil, ContinuousClock.now - lastReplayCheck > .seconds(1) {
                lastReplayCheck = .now
                if try await replayOne() { continue }
            }
            let generation = outbox.doorbell.generation
            let batch: OutboxBatch?
            do {
                if let ready = prefetched, ready.firstSeq > cursor {
                    batch = ready
                } else {
                    batch = try await outbox.read(after: cursor, limit: batchSize)
                }
                prefetched = nil
            } catch {
                logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
                await sleep(.seconds(1))
                continue
            }
            guard let batch else {
                if drainDeadline != nil, unpersisted == nil {
                    logger.info("sink drained")
                    return
                }
                await outbox.doorbell.wait(since: generation, timeout: .seconds(1))
                continue
            }
            let batchID = BatchID.make(sink: sink.id, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq)
            // Read the next batch while this one is on the wire. Rows after our cursor never change
            // (the outbox only appends, and purges only what every sink acknowledged), so it stays valid.
            async let next = try? outbox.read(after: batch.lastSeq, limit: batchSize)
            let outcome = await deliverWithRetry(batch, batchID: batchID)
            prefetched = await next
            switch outcome {
            case .delivered:
                metrics.delivered.increment(by: batch.count)
                metrics.batches.increment()
                cursor = batch.lastSeq
                unpersisted = await recordAcknowledgement(through: batch.lastSeq) ? nil : batch.lastSeq
            case .poison(let reason):
                logger.error(
                    "batch refused as poison; moved to dead letters",
                    metadata: [
                        "batch_id": "\(batchID)", "first_seq": "\(batch.firstSeq)", "last_seq": "\(batch.lastSeq)",
                        "samples": "\(batch.count)", "reason": "\(reason)",
                    ])
                metrics.deadLettered.increment(by: batch.count)
                // Skipping a poison batch is only safe once it is stored as a dead letter: block on it.
                guard
                    await persist({
                        try await self.outbox.deadLetter(sink: self.sink.id, batch: batch, reason: reason)
                    })
                else { return }
                cursor = batch.lastSeq
                unpersisted = nil
            case .gaveUp:
                return
            }
        }
    }

    /// One attempt to persist the cursor; logs the first failure and then every 30 s.
    private func recordAcknowledgement(through seq: Int64) async -> Bool {
        do {
            try await outbox.acknowledge(sink: sink.id, through: seq)
            let wasFailing = state.withLock { s -> Bool in
                defer { s.lastAckFailureLog = nil }
                return s.lastAckFailureLog != nil
            }
            if wasFailing { logger.notice("acknowledgements are recorded again", metadata: ["through_seq": "\(seq)"]) }
            return true
        } catch {
            let log = state.withLock { s -> Bool in
                if let last = s.lastAckFailureLog, ContinuousClock.now - last < .seconds(30) { return false }
                s.lastAckFailureLog = .now
                return true
            }
            if log {
                logger.error(
                    "cannot record the acknowledgement in the store; delivering on from memory and retrying",
                    metadata: ["error": "\(error)", "through_seq": "\(seq)"])
            }
            return false
        }
    }

    enum Outcome {
        case delivered
        case poison(String)
        /// The drain deadline passed or the task was cancelled while retrying.
        case gaveUp
    }

    private func deliverWithRetry(_ batch: OutboxBatch, batchID: String) async -> Outcome {
        var attempt = 0
        var rng = SystemRandomNumberGenerator()
        while true {
            let started = ContinuousClock.now
            do {
                try await sink.deliver(batch, batchID: batchID)
                let elapsed = ContinuousClock.now - started
                metrics.latency.recordNanoseconds(
                    elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
                markHealthy(afterAttempts: attempt)
                return .delivered
            } catch {
                metrics.failures.increment()
                switch error.disposition {
                case .poison:
                    markHealthy(afterAttempts: attempt)
                    return .poison(error.message)
                case .retry(let retryAfter):
                    let delay = retryAfter ?? backoff.delay(attempt: attempt, using: &rng)
                    markFailing(error.message, attempt: attempt, delay: delay)
                    attempt += 1
                    await sleep(delay)
                    if Task.isCancelled || pastDeadline { return .gaveUp }
                }
            }
        }
    }

    /// Replays one dead letter an operator asked for, if any. Returns whether it did work.
    private func replayOne() async throws -> Bool {
        let replay: DeadLetter?
        do {
            replay = try await outbox.nextReplay(sink: sink.id)
        } catch {
            logger.error("cannot read replays", metadata: ["error": "\(error)"])
            return false
        }
        guard let replay else { return false }
        let batch = OutboxBatch(
            firstSeq: replay.firstSeq, lastSeq: replay.lastSeq, count: replay.sampleCount, body: replay.body)
        let batchID = BatchID.make(sink: sink.id, firstSeq: replay.firstSeq, lastSeq: replay.lastSeq)
        logger.notice(
            "replaying dead letter", metadata: ["dead_letter": "\(replay.id)", "samples": "\(replay.sampleCount)"])
        switch await deliverWithRetry(batch, batchID: batchID) {
        case .delivered:
            metrics.delivered.increment(by: batch.count)
            _ = await persist({ try await self.outbox.completeReplay(replay.id) })
        case .poison(let reason):
            logger.error(
                "replayed dead letter refused again", metadata: ["dead_letter": "\(replay.id)", "reason": "\(reason)"])
            _ = await persist({ try await self.outbox.failReplay(replay.id, reason: reason) })
        case .gaveUp:
            break
        }
        return true
    }

    /// Retries a store write until it succeeds; `false` if the drain deadline or cancellation ended it
    /// first (the batch is then delivered again after restart: at least once).
    private func persist(_ write: @Sendable () async throws -> Void) async -> Bool {
        var attempt = 0
        var rng = SystemRandomNumberGenerator()
        while true {
            do {
                try await write()
                return true
            } catch {
                logger.error("cannot record delivery in the store; retrying", metadata: ["error": "\(error)"])
                await sleep(backoff.delay(attempt: attempt, using: &rng))
                attempt += 1
                if Task.isCancelled || pastDeadline { return false }
            }
        }
    }

    private func sleep(_ duration: Duration) async {
        guard duration > .zero else { return }
        let generation = wake.generation
        var timeout = duration
        if let deadline = drainDeadline {
            // While draining, never sleep past the deadline.
            timeout = min(duration, max(deadline - .now, .zero))
        }
        await wake.wait(since: generation, timeout: timeout)
    }

    private func markFailing(_ reason: String, attempt: Int, delay: Duration) {
        let first = state.withLock { s -> Bool in
            if case .failing = s.health {
                s.health = .failing(
                    reason: reason,
                    since: {
                        if case .failing(_, let since) = s.health { return since }; return Date()
                    }())
                return false
            }
            s.health = .failing(reason: reason, since: Date())
            return true
        }
        let metadata: Logger.Metadata = ["reason": "\(reason)", "attempt": "\(attempt + 1)", "retry_in": "\(delay)"]
        if first || attempt % 10 == 0 {
            logger.warning("delivery failed; will retry", metadata: metadata)
        } else {
            logger.debug("delivery failed; will retry", metadata: metadata)
        }
    }

    private func markHealthy(afterAttempts attempts: Int) {
        let wasFailing = state.withLock { s -> Bool in
            defer { s.health = .healthy }
            return s.health != .healthy
        }
        if wasFailing { logger.notice("delivery recovered", metadata: ["attempts": "\(attempts + 1)"]) }
    }
}

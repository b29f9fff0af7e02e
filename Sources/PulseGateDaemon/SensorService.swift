import Logging
import Metrics
import PulseGateCore
import PulseGateSensors
import PulseGateStore
import ServiceLifecycle
import Synchronization

/// Runs the kiosk's sensor backends and carries their samples into the outbox.
///
/// Backends call the manager from their own threads; samples go through a small queue to one writer
/// task, so a slow disk never stalls a radio thread and the outbox sees batches, not single samples.
/// A backend that cannot start (no adapter, no stick, no key) is reported once and retried every
/// `retryInterval`: the daemon keeps serving cloud vendors, and a stick plugged in later is found.
public final class SensorService: Service, Sendable {
    public let manager: SensorManager
    public let backends: [any SensorBackend]
    private let outbox: Outbox
    private let logger: Logger
    private let queue: SampleQueue
    private let retryInterval: Duration
    private let delivered: Counter
    private let dropped: Counter
    /// Called with each batch once it is durable in the outbox (benchmarks measure latency with it).
    private let onStored: (@Sendable ([Sample]) -> Void)?

    public init(
        stations: [Station], timing: SensorManager.Timing, backends: [any SensorBackend], outbox: Outbox,
        logger: Logger, metricsFactory: any MetricsFactory, retryInterval: Duration = .seconds(30),
        onStored: (@Sendable ([Sample]) -> Void)? = nil
    ) {
        self.onStored = onStored
        let queue = SampleQueue()
        self.queue = queue
        let refusals = RefusalLog(logger: logger, metricsFactory: metricsFactory)
        self.manager = SensorManager(
            stations: stations, timing: timing, rejected: { refusals.note($0, $1, $2) }, emit: { queue.push($0) })
        self.backends = backends
        self.outbox = outbox
        self.logger = logger
        self.retryInterval = retryInterval
        self.delivered = Counter(label: "pulsegate_sensor_samples_total", factory: metricsFactory)
        self.dropped = Counter(label: "pulsegate_sensor_samples_dropped_total", factory: metricsFactory)
    }

    public func run() async throws {
        guard !manager.stations.isEmpty else {
            // Nothing to hear: stay until shutdown (a service that returns would stop the daemon).
            try? await gracefulShutdown()
            return
        }
        logger.notice(
            "kiosk sensors starting",
            metadata: [
                "stations": "\(manager.stations.map(\.id).joined(separator: ","))",
                "backends": "\(backends.map(\.name).joined(separator: ","))",
            ])
        // The writer is not cancelled with the radios: it drains what they produced, then ends.
        let writer = Task { await self.writeSamples() }
        await withDiscardingTaskGroup { group in
            for backend in backends {
                group.addTask { await self.keepRunning(backend) }
            }
            group.addTask { await self.tickEverySecond() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        queue.finish()
        await writer.value
    }

    /// Runs one backend until shutdown, starting it again after a failure or a clean end.
    private func keepRunning(_ backend: any SensorBackend) async {
        var reported: SensorBackendError?
        while !Task.isCancelled {
            do {
                try await backend.run(
                    wanted: { [manager] in manager.wants($0) }, events: { [manager] in manager.handle($0) })
                reported = nil
            } catch {
                if error != reported {
                    let level: Logger.Level = error.code == .notFound ? .notice : .warning
                    logger.log(
                        level: level, "sensor backend not running",
                        metadata: ["backend": "\(backend.name)", "reason": "\(error.message)"])
                    reported = error
                }
            }
            try? await Task.sleep(for: retryInterval)
        }
    }

    private func tickEverySecond() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            manager.tick()
        }
    }

    /// Drains the queue into the outbox. A refused append (outbox full, disk trouble) is retried: kiosk
    /// samples are not re-sent by anyone, so they wait in memory rather than being dropped — except at
    /// shutdown, which waits at most about five seconds for the store before it gives up, loudly.
    private func writeSamples() async {
        while let batch = await queue.next() {
            let lines = batch.map(SampleCodec.line)
            var attemptsAtShutdown = 0
            while true {
                do {
                    _ = try await outbox.enqueue(lines)
                    delivered.increment(by: lines.count)
                    onStored?(batch)
                    break
                } catch {
                    if queue.isFinished {
                        attemptsAtShutdown += 1
                        if attemptsAtShutdown > 25 {
                            dropped.increment(by: lines.count)
                            logger.error(
                                "kiosk samples not stored at shutdown",
                                metadata: ["count": "\(lines.count)", "error": "\(error.message)"])
                            break
                        }
                    } else {
                        logger.warning("kiosk samples wait for the outbox", metadata: ["error": "\(error.message)"])
                    }
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
        }
    }
}

/// A queue between radio threads and the writer task: pushes never block, the writer takes everything
/// waiting in one batch.
final class SampleQueue: Sendable {
    private struct State {
        var pending: [Sample] = []
        var waiter: CheckedContinuation<[Sample]?, Never>?
        var finished = false
    }
    private let state = Mutex(State())

    func push(_ samples: [Sample]) {
        let resume = state.withLock { s -> (CheckedContinuation<[Sample]?, Never>, [Sample])? in
            guard !s.finished else { return nil }
            if let waiter = s.waiter {
                s.waiter = nil
                return (waiter, samples)
            }
            s.pending += samples
            return nil
        }
        if let (waiter, batch) = resume { waiter.resume(returning: batch) }
    }

    /// Everything pending, waiting for the next push when nothing is; `nil` after ``finish()``.
    func next() async -> [Sample]? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { s -> [Sample]?? in
                if !s.pending.isEmpty {
                    defer { s.pending = [] }
                    return .some(s.pending)
                }
                if s.finished { return .some(nil) }
                s.waiter = continuation
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    var isFinished: Bool { state.withLock { $0.finished } }

    func finish() {
        let waiter = state.withLock { s -> CheckedContinuation<[Sample]?, Never>? in
            s.finished = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }
}

/// Counts refused payloads per profile and logs them, at most once a minute per sensor: a strap
/// sending garbage at 4 Hz must be visible without flooding the journal.
final class RefusalLog: Sendable {
    private let logger: Logger
    private let factory: any MetricsFactory
    private let lastLogged = Mutex<[SensorID: ContinuousClock.Instant]>([:])
    /// One counter per profile, made once: a strap sending garbage at 4 Hz must not register a
    /// counter per payload.
    private let counters = Mutex<[String: Counter]>([:])

    init(logger: Logger, metricsFactory: any MetricsFactory) {
        self.logger = logger
        self.factory = metricsFactory
    }

    func note(_ sensor: SensorID, _ profile: String, _ error: DecodeError) {
        counters.withLock { made in
            if let counter = made[profile] { return counter }
            let counter = Counter(
                label: "pulsegate_sensor_payloads_rejected_total", dimensions: [("profile", profile)], factory: factory)
            made[profile] = counter
            return counter
        }.increment()
        let now = ContinuousClock.now
        let due = lastLogged.withLock { last -> Bool in
            if let previous = last[sensor], now - previous < .seconds(60) { return false }
            last[sensor] = now
            return true
        }
        if due {
            logger.warning(
                "sensor payload refused",
                metadata: ["sensor": "\(sensor)", "profile": "\(profile)", "reason": "\(error)"])
        }
    }
}

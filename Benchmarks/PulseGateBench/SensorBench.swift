import Foundation
import Logging
import Metrics
import PulseGateCore
import PulseGateDaemon
import PulseGateSensors
import PulseGateStore
import PulseGateTestSupport
import ServiceLifecycle
import Synchronization

// 3. sensors   N simulated ANT+ heart-rate straps (4.06 Hz each, the HRM's 8070/32768 s period) heard
//              by one simulated stick through the real ANT backend (framing, scan mode, extended data),
//              the sensor manager (decoders, stations, bindings) and the kiosk's outbox writer into a
//              real SQLite outbox (synchronous=FULL). Reports CPU, RSS per sensor and the latency from
//              the backend's payload event to the sample being durable, against the baseline: the same
//              sample rate enqueued straight into an outbox, one sample per append, no transport.

/// Forwards a backend's events and notes when each payload arrived, keyed by sensor and time.
final class TimedBackend: SensorBackend {
    let inner: any SensorBackend
    let arrivals = Mutex<[String: ContinuousClock.Instant]>([:])
    var name: String { inner.name }

    init(_ inner: any SensorBackend) { self.inner = inner }

    func scan(seconds: Double) async throws(SensorBackendError) -> [SensorAdvert] {
        try await inner.scan(seconds: seconds)
    }

    func run(wanted: @escaping @Sendable (SensorAdvert) -> Bool, events: @escaping @Sendable (SensorEvent) -> Void)
        async throws(SensorBackendError)
    {
        try await inner.run(wanted: wanted) { event in
            if case .payload(let id, _, _, let at) = event {
                let key = "\(id.address)|\(at.millisecondsSinceEpoch)"
                self.arrivals.withLock { $0[key] = .now }
            }
            events(event)
        }
    }
}

struct Percentiles {
    var values: [Double]
    func at(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}

func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func residentKiB() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

func runSensorBench(sensors count: Int, seconds: Double) async throws {
    print("3. sensors: \(count) simulated ANT+ heart-rate straps at 4.06 Hz for \(Int(seconds)) s")
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    let key: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]

    // Baseline: the same rate of single-sample appends straight into an outbox.
    let baselineStore = try SQLiteStore(path: "\(scratch())/baseline.sqlite")
    let baselineOutbox = try Outbox(store: baselineStore, sinkIDs: ["s"], highWatermark: 100_000_000, logger: logger)
    let rate = Double(count) * 32768 / 8070
    var baselineLatencies = [Double]()
    let baselineCPU0 = processCPUSeconds()
    let baselineStart = ContinuousClock.now
    var sent = 0
    while ContinuousClock.now - baselineStart < .milliseconds(Int64(seconds * 1000)) {
        let due = baselineStart + .milliseconds(Int64(Double(sent) / rate * 1000))
        if due > .now { try await Task.sleep(until: due) }
        let at = Timestamp.now
        let sample = try Sample(
            subject: "member-\(sent % count)", metric: .heartRate, value: .number(Double(100 + sent % 80)),
            unit: "/min", start: at,
            source: SourceRef(
                kind: .ant, station: "bike-\(sent % count)", device: .init(address: "\(sent % count)/120")),
            now: at)
        let t0 = ContinuousClock.now
        _ = try await baselineOutbox.enqueue([SampleCodec.line(sample)])
        baselineLatencies.append(Double((ContinuousClock.now - t0).components.attoseconds) / 1e15)
        sent += 1
    }
    let baselineCPU = (processCPUSeconds() - baselineCPU0) / seconds
    baselineOutbox.close()

    // The full path.
    let rss0 = residentKiB()
    let stick = SimulatedANTStick(
        networkKey: key,
        sensors: (0..<count).map { .heartRate(deviceNumber: UInt32(1000 + $0), bpm: 110 + $0 % 60) })
    let backend = TimedBackend(ANTBackend(networkKey: try ANTNetworkKey(bytes: key), opener: stick))
    let stations = (0..<count).map { i in
        Station(id: "bike-\(i)", name: "Bike \(i)", sensors: [SensorID(transport: .ant, address: "\(1000 + i)/120")])
    }
    let store = try SQLiteStore(path: "\(scratch())/sensors.sqlite")
    let outbox = try Outbox(store: store, sinkIDs: ["s"], highWatermark: 100_000_000, logger: logger)
    let latencies = Mutex<[Double]>([])
    let stored = Mutex(0)
    let service = SensorService(
        stations: stations, timing: .init(), backends: [backend], outbox: outbox, logger: logger,
        metricsFactory: NOOPMetricsHandler.instance,
        onStored: { batch in
            let now = ContinuousClock.now
            let measured = backend.arrivals.withLock { arrivals in
                batch.compactMap { s -> Double? in
                    guard let address = s.source.device?.address,
                        let t = arrivals.removeValue(forKey: "\(address)|\(s.start.millisecondsSinceEpoch)")
                    else { return nil }
                    return Double((now - t).components.attoseconds) / 1e15
                }
            }
            latencies.withLock { $0 += measured }
            stored.withLock { $0 += batch.count }
        })
    for i in 0..<count {
        try service.manager.bind(
            Binding(
                station: "bike-\(i)", subject: "member-\(i)", expiresAt: Timestamp.now.adding(milliseconds: 3_600_000)))
    }
    let group = ServiceGroup(
        configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [], logger: logger))
    let running = Task { try await group.run() }
    // Let every sensor be heard and decoded once before measuring.
    try await Task.sleep(for: .seconds(2))
    latencies.withLock { $0 = [] }
    stored.withLock { $0 = 0 }
    let cpu0 = processCPUSeconds()
    try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
    let cpu = (processCPUSeconds() - cpu0) / seconds
    let rss = residentKiB()
    let measured = latencies.withLock { $0 }
    let samples = stored.withLock { $0 }
    await group.triggerGracefulShutdown()
    _ = try? await running.value
    outbox.close()

    let p = Percentiles(values: measured)
    let b = Percentiles(values: baselineLatencies)
    print(
        String(
            format:
                "   full path: %d samples (%.0f/s), CPU %.1f%% of a core; latency payload → durable p50 %.2f ms, p99 %.2f ms, max %.2f ms",
            samples, Double(samples) / seconds, cpu * 100, p.at(0.5), p.at(0.99), p.at(1.0)))
    print(
        String(
            format:
                "   baseline : %d single-sample appends (%.0f/s), CPU %.1f%%; append latency p50 %.2f ms, p99 %.2f ms",
            baselineLatencies.count, Double(baselineLatencies.count) / seconds, baselineCPU * 100, b.at(0.5),
            b.at(0.99)))
    print(
        String(
            format:
                "   ratio    : p99 %.2f× the bare append; CPU %.2f× the baseline; RSS +%d KiB (%.1f KiB per sensor) over the process before the sensors started",
            p.at(0.99) / b.at(0.99), cpu / max(baselineCPU, 0.0001), rss - rss0, Double(rss - rss0) / Double(count)))
    print("   goals    : p99 < 5 ms, < 64 KiB per sensor")
}

import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import Prometheus
import PulseGateDelivery
import PulseGateStore

/// `/healthz` (the process answers), `/readyz` (store writable, every sink reachable) and `/metrics`.
public struct HealthController: Sendable {
    let store: SQLiteStore
    let outbox: Outbox
    let pumps: [SinkPump]
    let telemetry: Telemetry
    /// Refreshes gauges that are read from the store at scrape time (connections, inbox, jobs).
    let beforeScrape: @Sendable () async -> Void
    private let depthGauge: Metrics.Gauge

    public init(
        store: SQLiteStore, outbox: Outbox, pumps: [SinkPump], telemetry: Telemetry,
        beforeScrape: @escaping @Sendable () async -> Void = {}
    ) {
        self.store = store
        self.outbox = outbox
        self.pumps = pumps
        self.telemetry = telemetry
        self.beforeScrape = beforeScrape
        depthGauge = Metrics.Gauge(label: "pulsegate_outbox_depth_samples", factory: telemetry.factory)
    }

    public func register(on router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in
            try Response.json(["status": "ok"])
        }
        router.get("/readyz") { _, _ in
            try await readiness()
        }
        router.get("/metrics") { _, _ in
            await beforeScrape()
            depthGauge.record(outbox.depth)
            for pump in pumps {
                Metrics.Gauge(
                    label: "pulsegate_sink_lag_samples", dimensions: [("sink", pump.sink.id)],
                    factory: telemetry.factory
                )
                .record(pump.lag)
            }
            var buffer = [UInt8]()
            buffer.reserveCapacity(16 * 1024)
            telemetry.registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }

    struct Readiness: Encodable {
        let status: String
        let checks: [String: String]
    }

    func readiness() async throws -> Response {
        var checks = [String: String]()
        do {
            try await store.checkWritable()
            checks["store"] = "ok"
        } catch {
            checks["store"] = "failing: \(error)"
        }
        await withTaskGroup(of: (String, String).self) { group in
            for pump in pumps {
                group.addTask {
                    if case .failing(let reason, let since) = pump.health {
                        return ("sink:\(pump.sink.id)", "failing since \(since): \(reason)")
                    }
                    if let problem = await pump.sink.healthCheck() {
                        return ("sink:\(pump.sink.id)", "failing: \(problem)")
                    }
                    return ("sink:\(pump.sink.id)", "ok")
                }
            }
            for await (name, verdict) in group { checks[name] = verdict }
        }
        let ready = checks.values.allSatisfy { $0 == "ok" }
        return try Response.json(
            Readiness(status: ready ? "ready" : "unready", checks: checks), status: ready ? .ok : .serviceUnavailable)
    }
}

import Foundation
import Logging
import Metrics
import PulseGateTestSupport
import Synchronization
import Testing

@testable import PulseGateDelivery
@testable import PulseGateStore

func sampleLines(_ range: Range<Int>) -> [[UInt8]] {
    range.map { Array("{\"n\":\($0)}\n".utf8) }
}

/// An in-memory sink that fails as scripted: the pump's state machine is tested without a network.
final class ScriptedSink: Sink {
    let id: String
    var kind: String { "scripted" }
    struct State {
        var script: [SinkError?] = []
        var received: [String] = []
        var batchIDs: [String] = []
        var calls = 0
    }
    let state = Mutex(State())

    init(id: String, script: [SinkError?]) {
        self.id = id
        state.withLock { $0.script = script }
    }

    func deliver(_ batch: OutboxBatch, batchID: String) async throws(SinkError) {
        let failure = state.withLock { s -> SinkError? in
            s.calls += 1
            s.batchIDs.append(batchID)
            let next = s.script.isEmpty ? nil : s.script.removeFirst()
            if next == nil {
                s.received += String(decoding: batch.body, as: UTF8.self).split(separator: "\n").map(String.init)
            }
            return next
        }
        if let failure { throw failure }
    }

    var received: [String] { state.withLock { $0.received } }
    func healthCheck() async -> String? { nil }
    func shutdown() async {}
}

@Suite("Sink pump")
struct SinkPumpTests {
    let logger = Logger(label: "test")

    func makeOutbox(sinks: [String]) throws -> Outbox {
        let store = try SQLiteStore(path: temporaryDirectory() + "/s.sqlite", synchronous: .normal)
        return try Outbox(store: store, sinkIDs: sinks, highWatermark: 100_000, logger: logger)
    }

    func pump(_ sink: any Sink, _ outbox: Outbox, batch: Int = 7, drain: Duration = .seconds(5)) -> SinkPump {
        SinkPump(
            sink: sink, outbox: outbox, batchSize: batch,
            backoff: Backoff(initial: .milliseconds(1), maximum: .milliseconds(5)),
            drainTimeout: drain, metricsFactory: NOOPMetricsHandler.instance, logger: logger)
    }

    @Test("retryable failures are retried with the same batch id until delivered; poison goes to dead letters")
    func retriesAndPoison() async throws {
        let outbox = try makeOutbox(sinks: ["s"])
        _ = try await outbox.enqueue(sampleLines(0..<20))
        let sink = ScriptedSink(
            id: "s",
            script: [
                // batch 1 (0..<7): two failures, then delivered
                .retryable("connection refused"), .retryable("503", retryAfter: .milliseconds(5)), nil,
                .poison("400: bad batch"),  // batch 2 (7..<14) dead-lettered
                nil,  // batch 3 (14..<20)
            ])
        let p = pump(sink, outbox)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await p.run() }
            while outbox.cursor(for: "s") < 20 { try await Task.sleep(for: .milliseconds(5)) }
            p.beginDrain()
            try await group.waitForAll()
        }
        #expect(sink.received == (0..<7).map { "{\"n\":\($0)}" } + (14..<20).map { "{\"n\":\($0)}" })
        let ids = sink.state.withLock { $0.batchIDs }
        #expect(ids[0] == ids[1] && ids[1] == ids[2], "a retried batch keeps its id")
        let dead = try outbox.store.deadLetters(sink: "s")
        #expect(dead.count == 1 && dead[0].firstSeq == 8 && dead[0].lastSeq == 14 && dead[0].reason == "400: bad batch")
        #expect(p.health == .healthy)
    }

    @Test("a slow or dead sink never holds back another one")
    func independentCursors() async throws {
        let outbox = try makeOutbox(sinks: ["fast", "dead"])
        _ = try await outbox.enqueue(sampleLines(0..<50))
        let fast = ScriptedSink(id: "fast", script: [])
        let dead = ScriptedSink(id: "dead", script: Array(repeating: .retryable("down"), count: 100_000))
        let pumps = [pump(fast, outbox, drain: .milliseconds(100)), pump(dead, outbox, drain: .milliseconds(100))]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in pumps { group.addTask { try await p.run() } }
            while outbox.cursor(for: "fast") < 50 { try await Task.sleep(for: .milliseconds(5)) }
            #expect(outbox.cursor(for: "dead") == 0)
            if case .failing(let reason, _) = pumps[1].health {
                #expect(reason == "down")
            } else {
                Issue.record("dead sink reported healthy")
            }
            for p in pumps { p.beginDrain() }
            try await group.waitForAll()
        }
        #expect(fast.received.count == 50)
        #expect(outbox.depth == 50, "rows stay until the dead sink acknowledges them")
    }

    @Test("draining delivers what is waiting, then stops; new rows wake an idle pump")
    func drainAndWake() async throws {
        let outbox = try makeOutbox(sinks: ["s"])
        let sink = ScriptedSink(id: "s", script: [])
        let p = pump(sink, outbox, batch: 1000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await p.run() }
            try await Task.sleep(for: .milliseconds(50))
            _ = try await outbox.enqueue(sampleLines(0..<5))
            let start = ContinuousClock.now
            while outbox.cursor(for: "s") < 5 { try await Task.sleep(for: .milliseconds(2)) }
            #expect(ContinuousClock.now - start < .milliseconds(900), "woken by the commit, not by the 1 s poll")
            _ = try await outbox.enqueue(sampleLines(5..<9))
            p.beginDrain()
            try await group.waitForAll()
        }
        #expect(sink.received.count == 9)
    }

    @Test("a failing sink is retried at the backoff pace while draining, and given up at the deadline")
    func drainBackoff() async throws {
        let outbox = try makeOutbox(sinks: ["s"])
        _ = try await outbox.enqueue(sampleLines(0..<3))
        let sink = ScriptedSink(id: "s", script: Array(repeating: .retryable("down"), count: 100_000))
        let p = SinkPump(
            sink: sink, outbox: outbox, batchSize: 10,
            backoff: Backoff(initial: .milliseconds(100), maximum: .milliseconds(100)),
            drainTimeout: .milliseconds(500), metricsFactory: NOOPMetricsHandler.instance, logger: logger)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await p.run() }
            try await Task.sleep(for: .milliseconds(50))
            p.beginDrain()
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(500) && elapsed < .seconds(3))
        let calls = sink.state.withLock { $0.calls }
        #expect(calls >= 2 && calls <= 40, "\(calls) attempts in half a second with up to 100 ms jittered backoff")
        #expect(outbox.cursor(for: "s") == 0, "nothing was acknowledged")
    }

    @Test("backoff grows exponentially, is capped, and is jittered below the cap")
    func backoff() {
        let b = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(b.ceiling(attempt: 0) == .milliseconds(100))
        #expect(b.ceiling(attempt: 3) == .milliseconds(800))
        #expect(b.ceiling(attempt: 10) == .seconds(2))
        #expect(b.ceiling(attempt: 1000) == .seconds(2))
        var rng = SystemRandomNumberGenerator()
        let delays = (0..<200).map { _ in b.delay(attempt: 4, using: &rng) }
        #expect(delays.allSatisfy { $0 >= .zero && $0 <= .milliseconds(1600) })
        #expect(Set(delays).count > 50, "jittered")
    }
}

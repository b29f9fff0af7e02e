import Foundation
import Logging
import PulseGateTestSupport
import Testing

@testable import PulseGateStore

/// A fresh store file in its own temporary directory.
func temporaryStorePath() -> String {
    temporaryDirectory("store") + "/pulsegate.sqlite"
}

func lines(_ range: Range<Int>) -> [[UInt8]] {
    range.map { Array("{\"n\":\($0)}\n".utf8) }
}

@Suite("Outbox")
struct OutboxTests {
    let logger = Logger(label: "test")

    @Test("enqueued rows read back in order; acknowledgements by every sink purge them")
    func enqueueReadAck() async throws {
        let store = try SQLiteStore(path: temporaryStorePath())
        let outbox = try Outbox(store: store, sinkIDs: ["a", "b"], highWatermark: 1000, logger: logger)
        let seqs = try await outbox.enqueue(lines(0..<10))
        #expect(seqs == 1...10)
        let batch = try #require(try await outbox.read(after: 0, limit: 4))
        #expect(batch.firstSeq == 1 && batch.lastSeq == 4 && batch.count == 4)
        #expect(String(decoding: batch.body, as: UTF8.self) == "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
        try await outbox.acknowledge(sink: "a", through: 10)
        #expect(outbox.depth == 10, "sink b still holds every row")
        #expect(try store.outboxStatus().depth == 10)
        try await outbox.acknowledge(sink: "b", through: 4)
        #expect(outbox.depth == 6)
        #expect(try store.outboxStatus().depth == 6)
        #expect(try await outbox.read(after: 0, limit: 100)?.firstSeq == 5)
    }

    @Test("above the high watermark intake is refused whole, and accepted again after delivery")
    func watermark() async throws {
        let store = try SQLiteStore(path: temporaryStorePath())
        let outbox = try Outbox(store: store, sinkIDs: ["a"], highWatermark: 25, logger: logger)
        _ = try await outbox.enqueue(lines(0..<20))
        await #expect(throws: StoreError.self) { try await outbox.enqueue(lines(0..<6)) }
        do {
            _ = try await outbox.enqueue(lines(0..<6))
        } catch {
            #expect(error.code == .outboxFull)
        }
        #expect(outbox.depth == 20, "nothing of the refused call was written")
        _ = try await outbox.enqueue(lines(0..<5))
        try await outbox.acknowledge(sink: "a", through: 25)
        _ = try await outbox.enqueue(lines(0..<6))
        #expect(outbox.depth == 6)
    }

    @Test("concurrent writers are group-committed with contiguous, unique sequence numbers")
    func groupCommit() async throws {
        let store = try SQLiteStore(path: temporaryStorePath(), synchronous: .normal)
        let outbox = try Outbox(store: store, sinkIDs: ["a"], highWatermark: 1_000_000, logger: logger)
        let ranges = try await withThrowingTaskGroup(of: ClosedRange<Int64>.self) { group in
            for i in 0..<200 {
                group.addTask { try await outbox.enqueue(lines(i * 10..<(i * 10 + 10))) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let all = ranges.flatMap { Array($0) }.sorted()
        #expect(all == Array(1...2000))
        #expect(outbox.lastSeq == 2000)
        // Each range holds exactly its caller's lines, in order.
        let batch = try #require(try await outbox.read(after: 0, limit: 5000))
        let text = String(decoding: batch.body, as: UTF8.self).split(separator: "\n")
        for range in ranges {
            let first = text[Int(range.lowerBound) - 1]
            let n = Int(first.dropFirst(5).dropLast())!
            #expect(n % 10 == 0)
            for (k, seq) in range.enumerated() {
                #expect(text[Int(seq) - 1] == "{\"n\":\(n + k)}")
            }
        }
    }

    @Test("a restart resumes from the persisted cursors; sequence numbers are never reused")
    func restart() async throws {
        let path = temporaryStorePath()
        do {
            let store = try SQLiteStore(path: path)
            let outbox = try Outbox(store: store, sinkIDs: ["a", "b"], highWatermark: 1000, logger: logger)
            _ = try await outbox.enqueue(lines(0..<10))
            try await outbox.acknowledge(sink: "a", through: 10)
            try await outbox.acknowledge(sink: "b", through: 7)
            try store.close()
        }
        let store = try SQLiteStore(path: path)
        let outbox = try Outbox(store: store, sinkIDs: ["a", "b", "new"], highWatermark: 1000, logger: logger)
        #expect(outbox.cursor(for: "a") == 10)
        #expect(outbox.cursor(for: "b") == 7)
        #expect(outbox.cursor(for: "new") == 7, "a new sink starts at the oldest row still held")
        #expect(outbox.depth == 3)
        try await outbox.acknowledge(sink: "b", through: 10)
        try await outbox.acknowledge(sink: "new", through: 10)
        #expect(outbox.depth == 0)
        try store.close()
        let reopened = try Outbox(
            store: try SQLiteStore(path: path), sinkIDs: ["a"], highWatermark: 1000, logger: logger)
        #expect(try await reopened.enqueue(lines(0..<1)) == 11...11)
    }

    @Test("dead letters keep the batch and the reason; replay hands them back once")
    func deadLetters() async throws {
        let store = try SQLiteStore(path: temporaryStorePath())
        let outbox = try Outbox(store: store, sinkIDs: ["a"], highWatermark: 1000, logger: logger)
        _ = try await outbox.enqueue(lines(0..<3))
        let batch = try #require(try await outbox.read(after: 0, limit: 10))
        try await outbox.deadLetter(sink: "a", batch: batch, reason: "receiver refused the batch with 400: bad")
        #expect(outbox.cursor(for: "a") == 3)
        #expect(outbox.depth == 0)
        let listed = try store.deadLetters(sink: nil)
        #expect(listed.count == 1 && listed[0].reason.contains("400") && listed[0].sampleCount == 3)
        #expect(try await outbox.nextReplay(sink: "a") == nil)
        #expect(try store.requestReplay(ids: nil, sink: "a") == 1)
        let replay = try #require(try await outbox.nextReplay(sink: "a"))
        #expect(replay.body == batch.body)
        try await outbox.failReplay(replay.id, reason: "again")
        #expect(try store.deadLetters(sink: "a").first?.attempts == 2)
        #expect(try store.requestReplay(ids: [replay.id], sink: nil) == 1)
        try await outbox.completeReplay(replay.id)
        #expect(try store.deadLetters(sink: nil).isEmpty)
    }

    @Test("a file that is not a database is reported as corrupt, not crashed on")
    func corruptFile() throws {
        let path = temporaryStorePath()
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: path))
        #expect(throws: StoreError.self) { try SQLiteStore(path: path) }
    }
}

@Suite("Doorbell")
struct DoorbellTests {
    @Test("a ring between reading the generation and waiting is not missed")
    func noLostWakeups() async {
        let bell = Doorbell()
        let generation = bell.generation
        bell.ring()
        let start = ContinuousClock.now
        await bell.wait(since: generation, timeout: .seconds(10))
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test("wait times out without a ring")
    func timeout() async {
        let bell = Doorbell()
        let start = ContinuousClock.now
        await bell.wait(since: bell.generation, timeout: .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
    }
}

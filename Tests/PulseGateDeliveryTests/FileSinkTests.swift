import Foundation
import PulseGateTestSupport
import Testing

@testable import PulseGateDelivery
@testable import PulseGateStore

@Suite("File sink")
struct FileSinkTests {
    func batch(_ text: String) -> OutboxBatch {
        OutboxBatch(firstSeq: 1, lastSeq: 1, count: text.split(separator: "\n").count, body: Array(text.utf8))
    }

    @Test("a torn last line left by a crash is cut off before appending")
    func tornTail() async throws {
        let dir = temporaryDirectory()
        let path = dir + "/samples.ndjson"
        try Data("{\"a\":1}\n{\"a\":2}\n{\"a\":".utf8).write(to: URL(fileURLWithPath: path))
        let sink = FileSink(id: "f", path: path, rotateBytes: 1 << 20, keepFiles: 3)
        try await sink.deliver(batch("{\"b\":1}\n"), batchID: "x")
        await sink.shutdown()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "{\"a\":1}\n{\"a\":2}\n{\"b\":1}\n")
    }

    @Test("rotates by size and keeps only the newest rotated files")
    func rotation() async throws {
        let dir = temporaryDirectory()
        let path = dir + "/samples.ndjson"
        let sink = FileSink(id: "f", path: path, rotateBytes: 4096, keepFiles: 2)
        let line = String(repeating: "x", count: 1000) + "\n"
        for _ in 0..<20 { try await sink.deliver(batch(line), batchID: "x") }
        await sink.shutdown()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let rotated = names.filter { $0.hasPrefix("samples-") }
        #expect(rotated.count == 2)
        #expect(names.contains("samples.ndjson"))
        var total = 0
        for name in names {
            total += try String(contentsOfFile: dir + "/" + name, encoding: .utf8).split(separator: "\n").count
        }
        #expect(total <= 20 && total >= 8)
        let current = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(current.count <= 4096)
    }

    @Test("an unwritable path is a retryable error, not a crash")
    func unwritable() async {
        let sink = FileSink(id: "f", path: "/proc/pulsegate-nope/samples.ndjson", rotateBytes: 4096, keepFiles: 1)
        do {
            try await sink.deliver(batch("{}\n"), batchID: "x")
            Issue.record("write to /proc succeeded")
        } catch {
            #expect(error.disposition == .retry(after: nil))
        }
        #expect(await sink.healthCheck() != nil)
    }
}

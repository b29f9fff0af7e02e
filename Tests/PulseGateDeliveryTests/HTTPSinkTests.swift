import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PulseGateCore
import Synchronization
import Testing

@testable import PulseGateDelivery
@testable import PulseGateStore

/// A real HTTP receiver on a loopback port, scripted per request.
struct Receiver {
    struct Seen: Sendable {
        var headers: [HTTPFields] = []
        var bodies: [[UInt8]] = []
    }

    final class Log: Sendable {
        let state = Mutex(Seen())
        func withLock<T>(_ body: (inout Seen) -> T) -> T { state.withLock { body(&$0) } }
    }

    static func run(
        answer: @escaping @Sendable (Int) -> Response, _ body: @escaping @Sendable (String, Log) async throws -> Void
    ) async throws {
        let seen = Log()
        let counter = Mutex(0)
        let router = Router()
        router.post("/in") { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 1 << 24)
            let n = counter.withLock { c in
                c += 1
                return c
            }
            seen.withLock {
                $0.headers.append(request.headers)
                $0.bodies.append(Array(buffer.readableBytesView))
            }
            return answer(n)
        }
        let port = Mutex<Int?>(nil)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } },
            logger: Logger(label: "receiver"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            while port.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(5)) }
            try await body("http://127.0.0.1:\(port.withLock { $0! })/in", seen)
            group.cancelAll()
        }
    }
}

@Suite("HTTP sink")
struct HTTPSinkTests {
    let secret = Secret("0123456789abcdef-secret")
    let batch = OutboxBatch(firstSeq: 3, lastSeq: 4, count: 2, body: Array("{\"a\":1}\n{\"a\":2}\n".utf8))

    @Test("posts signed NDJSON that a receiver can verify")
    func signed() async throws {
        try await Receiver.run(answer: { _ in Response(status: .noContent) }) { url, seen in
            let sink = HTTPSink(
                id: "h", url: url, secret: secret, timeout: .seconds(5), client: .shared, logger: Logger(label: "t"))
            try await sink.deliver(batch, batchID: "b-1")
            let headers = try #require(seen.withLock { $0.headers.first })
            let body = try #require(seen.withLock { $0.bodies.first })
            #expect(body == batch.body)
            #expect(headers[HTTPField.Name("Pulsegate-Batch-Id")!] == "b-1")
            #expect(headers[HTTPField.Name("Pulsegate-Sample-Count")!] == "2")
            #expect(headers[.contentType] == "application/x-ndjson")
            let ts = try #require(headers[HTTPField.Name("Pulsegate-Timestamp")!])
            let mac = HMAC<SHA256>.authenticationCode(
                for: Array("\(ts).".utf8) + body, using: SymmetricKey(data: secret.bytes))
            let expected = "v1=" + mac.map { String(format: "%02x", $0) }.joined()
            #expect(headers[HTTPField.Name("Pulsegate-Signature")!] == expected)
            #expect(await sink.healthCheck() == nil)
        }
    }

    @Test("status codes map to retry, retry-after and poison")
    func statuses() async throws {
        let answers: [Int: Response] = [
            1: Response(status: .serviceUnavailable, headers: [.retryAfter: "7"]),
            2: Response(status: .tooManyRequests, headers: [.retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"]),
            3: Response(status: .internalServerError),
            4: Response(status: .requestTimeout),
            5: Response(status: .badRequest, body: .init(byteBuffer: ByteBuffer(string: "line 2: unknown field"))),
            6: Response(status: .ok),
        ]
        try await Receiver.run(answer: { answers[$0] ?? Response(status: .ok) }) { url, _ in
            let sink = HTTPSink(
                id: "h", url: url, secret: nil, timeout: .seconds(5), client: .shared, logger: Logger(label: "t"))
            func outcome() async -> SinkError? {
                do { try await sink.deliver(batch, batchID: "b"); return nil } catch { return error }
            }
            #expect(await outcome()?.disposition == .retry(after: .seconds(7)))
            #expect(await outcome()?.disposition == .retry(after: .zero), "an HTTP-date in the past means now")
            #expect(await outcome()?.disposition == .retry(after: nil))
            #expect(await outcome()?.disposition == .retry(after: nil))
            let poison = await outcome()
            #expect(poison?.disposition == .poison)
            #expect(poison?.message.contains("400") == true && poison?.message.contains("unknown field") == true)
            #expect(await outcome() == nil)
        }
    }

    @Test("an unreachable receiver is retryable and unhealthy")
    func unreachable() async throws {
        let sink = HTTPSink(
            id: "h", url: "http://127.0.0.1:9/in", secret: nil, timeout: .seconds(2), client: .shared,
            logger: Logger(label: "t"))
        do {
            try await sink.deliver(batch, batchID: "b")
            Issue.record("delivery to a closed port succeeded")
        } catch {
            #expect(error.disposition == .retry(after: nil))
        }
        #expect(await sink.healthCheck() != nil)
    }

    @Test("batch ids are stable per sink and row range")
    func batchIDs() {
        #expect(BatchID.make(sink: "a", firstSeq: 1, lastSeq: 9) == BatchID.make(sink: "a", firstSeq: 1, lastSeq: 9))
        #expect(BatchID.make(sink: "a", firstSeq: 1, lastSeq: 9) != BatchID.make(sink: "b", firstSeq: 1, lastSeq: 9))
        #expect(BatchID.make(sink: "a", firstSeq: 1, lastSeq: 9).count == 36)
    }
}

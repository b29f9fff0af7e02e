import AsyncHTTPClient
import Foundation
import GRDB
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import PulseGateCore
import PulseGateDelivery
import PulseGateStore
import Synchronization

// pulsegate-bench: throughput of the durable outbox and of HTTP delivery, each beside a baseline
// measured in the same run on the same machine (the machines are noisy: read the ratios).
//
//   swift build -c release --product pulsegate-bench && .build/release/pulsegate-bench [--samples N]
//
// 0. decode    SampleCodec.decode of an NDJSON intake body (strict parse, validation, ids), against
//              JSONSerialization parsing the same lines without any validation.
// 1. enqueue   Outbox.enqueue of encoded schema-v1 samples in batches of 1,000 from 4 concurrent
//              writers (group commit), synchronous=FULL, against the baseline: the same rows inserted
//              through GRDB with a cached prepared statement, one transaction per batch, one writer.
//    encode    SampleCodec.line (the canonical NDJSON form) on its own, for the share it adds.
// 2. delivery  a SinkPump draining the outbox into an HTTP sink (signed NDJSON, batches of 5,000) to
//              a local receiver, against the baseline: the receiver's own ceiling, i.e. the same
//              bodies POSTed back to back with the same HTTP client, no outbox.
// 3. sensors   `pulsegate-bench sensors`: simulated ANT+ sensors through the kiosk path into the
//              outbox (SensorBench.swift).

let arguments = CommandLine.arguments
// `pulsegate-bench sensors [--sensors N] [--seconds S]`: only section 3 (see SensorBench.swift).
if arguments.dropFirst().first == "sensors" {
    let sensors = arguments.firstIndex(of: "--sensors").flatMap { Int(arguments[$0 + 1]) } ?? 100
    let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[$0 + 1]) } ?? 20
    try await runSensorBench(sensors: sensors, seconds: seconds)
    exit(0)
}
let total = arguments.firstIndex(of: "--samples").flatMap { Int(arguments[$0 + 1]) } ?? 1_000_000
let deliveryTotal = total / 2
let batch = 1000
let writers = 4

func scratch() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pulsegate-bench-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let now = Timestamp.now
let base = now.adding(milliseconds: -3_600_000)
let source = SourceRef(
    kind: .ble, station: "bike-7", device: .init(manufacturer: "Polar", model: "H10", address: "A0:9E:1A:00:00:01"))
func makeSamples(_ range: Range<Int>) -> [Sample] {
    range.map { i in
        try! Sample(
            subject: "member-\(i % 500)", metric: .heartRate, value: .number(Double(60 + i % 120)), unit: "/min",
            start: base.adding(milliseconds: Int64(i)), source: source, now: now)
    }
}

func rate(_ count: Int, _ elapsed: Duration) -> Double {
    Double(count) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

func report(_ name: String, _ value: Double, baseline: Double, goal: Double) {
    let line = String(
        format: "%-9@ %10.0f samples/s   baseline %10.0f samples/s   ratio %.2f   goal %.0f: %@", name as NSString,
        value,
        baseline, value / baseline, goal, (value >= goal ? "met" : "NOT met") as NSString)
    print(line)
}

let logger = Logger(label: "bench")
print(
    "pulsegate-bench: \(total) samples for enqueue, \(deliveryTotal) for delivery, \(ProcessInfo.processInfo.activeProcessorCount) cores"
)
let samples = makeSamples(0..<total)
let encoded = samples.map { SampleCodec.line($0) }
print("average sample size: \(encoded.reduce(0) { $0 + $1.count } / encoded.count) bytes")

// MARK: 0. intake decoding (what POST /v1/samples does before the outbox) vs Foundation's JSONSerialization

do {
    let count = min(total, 200_000)
    let inputs = encoded[0..<count].map { line -> [UInt8] in
        // Intake bodies carry no id and no "v".
        var text = String(decoding: line, as: UTF8.self)
        text = text.replacingOccurrences(of: #"\{"v":1,"id":"[^"]+","#, with: "{", options: .regularExpression)
        return Array(text.utf8)
    }
    let body = inputs.reduce(into: [UInt8]()) { $0 += $1 }
    let jsonStart = ContinuousClock.now
    var parsed = 0
    for line in inputs {
        if (try? JSONSerialization.jsonObject(with: Data(line))) != nil { parsed += 1 }
    }
    let jsonRate = rate(count, ContinuousClock.now - jsonStart)
    let decodeStart = ContinuousClock.now
    var valid = 0
    for chunk in stride(from: 0, to: body.count, by: 1) where chunk == 0 {
        for result in try SampleCodec.decode(body, format: .ndjson, now: .now) {
            if case .success = result { valid += 1 }
        }
    }
    let decodeRate = rate(count, ContinuousClock.now - decodeStart)
    precondition(valid == count && parsed == count, "decoded \(valid), parsed \(parsed) of \(count)")
    let line = String(
        format:
            "%-9@ %10.0f samples/s   baseline %10.0f samples/s   ratio %.2f   (baseline: JSONSerialization parse only, no validation)",
        "decode" as NSString, decodeRate, jsonRate, decodeRate / jsonRate)
    print(line)
}

// MARK: 1. enqueue vs raw GRDB insert

let rawStore = try SQLiteStore(path: scratch() + "/raw.sqlite", synchronous: .full)
let rawStart = ContinuousClock.now
for chunk in stride(from: 0, to: total, by: batch) {
    let rows = Array(encoded[chunk..<min(chunk + batch, total)])
    let t = now.millisecondsSinceEpoch
    try rawStore.pool.write { db in
        let statement = try db.cachedStatement(sql: "INSERT INTO outbox (body, enqueued_at) VALUES (?, ?)")
        for row in rows { try statement.execute(arguments: [Data(row), t]) }
    }
}
let rawRate = rate(total, ContinuousClock.now - rawStart)
try rawStore.close()

let store = try SQLiteStore(path: scratch() + "/outbox.sqlite", synchronous: .full)
let outbox = try Outbox(store: store, sinkIDs: ["bench"], highWatermark: total * 2, logger: logger)
let enqueueStart = ContinuousClock.now
try await withThrowingTaskGroup(of: Void.self) { group in
    for w in 0..<writers {
        group.addTask {
            for chunk in stride(from: w * batch, to: total, by: batch * writers) {
                _ = try await outbox.enqueue(Array(encoded[chunk..<min(chunk + batch, total)]))
            }
        }
    }
    try await group.waitForAll()
}
let enqueueRate = rate(total, ContinuousClock.now - enqueueStart)
report("enqueue", enqueueRate, baseline: rawRate, goal: 200_000)
let encodeStart = ContinuousClock.now
var encodedBytes = 0
for sample in samples { encodedBytes += SampleCodec.line(sample).count }
print(
    String(
        format: "%-9@ %10.0f samples/s   (%d bytes)", "encode" as NSString,
        rate(total, ContinuousClock.now - encodeStart), encodedBytes))

// MARK: 2. delivery vs the receiver's ceiling

final class Counter: Sendable {
    let lines = Atomic<Int>(0)
}
let received = Counter()
let router = Router()
router.post("/in") { request, _ -> Response in
    let body = try await request.body.collect(upTo: 64 << 20)
    var n = 0
    for byte in body.readableBytesView where byte == UInt8(ascii: "\n") { n += 1 }
    received.lines.add(n, ordering: .relaxed)
    return Response(status: .noContent)
}
let port = Mutex<Int?>(nil)
let receiver = Application(
    router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
    onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } }, logger: Logger(label: "receiver")
)

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await receiver.run() }
    while port.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(5)) }
    let url = "http://127.0.0.1:\(port.withLock { $0! })/in"
    let deliveryBatch = 5000
    let bodies = stride(from: 0, to: deliveryTotal, by: deliveryBatch).map { start in
        encoded[start..<min(start + deliveryBatch, deliveryTotal)].reduce(into: [UInt8]()) { $0 += $1 }
    }

    // Baseline: the receiver's ceiling with the same client and bodies, no outbox, no signature.
    let client = HTTPClient.shared
    let ceilingStart = ContinuousClock.now
    for body in bodies {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await client.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1024)
    }
    let ceilingRate = rate(deliveryTotal, ContinuousClock.now - ceilingStart)
    received.lines.store(0, ordering: .relaxed)

    let deliveryStore = try SQLiteStore(path: scratch() + "/delivery.sqlite", synchronous: .full)
    let deliveryOutbox = try Outbox(store: deliveryStore, sinkIDs: ["http"], highWatermark: total * 2, logger: logger)
    for chunk in stride(from: 0, to: deliveryTotal, by: batch) {
        _ = try await deliveryOutbox.enqueue(Array(encoded[chunk..<min(chunk + batch, deliveryTotal)]))
    }
    let sink = HTTPSink(
        id: "http", url: url, secret: Secret("benchmark-hmac-secret-0123456789"), timeout: .seconds(30), client: client,
        logger: logger)
    let pump = SinkPump(
        sink: sink, outbox: deliveryOutbox, batchSize: deliveryBatch, backoff: Backoff(), drainTimeout: .seconds(60),
        metricsFactory: NOOPMetricsHandler.instance, logger: logger)
    let deliveryStart = ContinuousClock.now
    pump.beginDrain()
    try await pump.run()
    let deliveryRate = rate(deliveryTotal, ContinuousClock.now - deliveryStart)
    precondition(
        received.lines.load(ordering: .relaxed) == deliveryTotal,
        "receiver saw \(received.lines.load(ordering: .relaxed)) lines")
    report("delivery", deliveryRate, baseline: ceilingRate, goal: 100_000)
    group.cancelAll()
}

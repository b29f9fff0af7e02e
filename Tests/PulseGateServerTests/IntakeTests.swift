import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PulseGateTestSupport
import Testing

@testable import PulseGateDaemon
@testable import PulseGateServer
@testable import PulseGateStore

let writerKey = "pgk_writer-key-for-tests"
let readerKey = "pgk_reader-key-for-tests"

/// A daemon built from YAML exactly as `pulsegate serve` builds it, with a scratch state directory.
func makeDaemon(_ extra: String = "", highWatermark: Int = 1000) throws -> Daemon {
    let dir = temporaryDirectory()
    let yaml = """
        state_directory: \(dir)
        outbox: {high_watermark: \(highWatermark)}
        server: {max_body_bytes: 4096}
        api_keys:
          - {name: writer, sha256: \(APIKey.hash(writerKey)), scopes: [samples:write], rate_limit: {requests_per_second: 1, burst: 5}}
          - {name: reader, sha256: \(APIKey.hash(readerKey)), scopes: [stream:read]}
        \(extra)
        """
    try yaml.write(toFile: dir + "/pulsegate.yaml", atomically: true, encoding: .utf8)
    let config = try DaemonConfiguration.load(path: dir + "/pulsegate.yaml", environment: [:])
    return try Daemon(configuration: config, logger: Logger(label: "test"))
}

func ndjson(_ lines: [String]) -> ByteBuffer { ByteBuffer(string: lines.joined(separator: "\n") + "\n") }

func hr(_ i: Int, subject: String = "u1") -> String {
    let ms = String(format: "%03d", i % 1000)
    return
        #"{"subject":"\#(subject)","metric":"heart_rate","value":\#(60 + i % 100),"unit":"/min","start":"2026-11-23T10:00:\#(String(format: "%02d", (i / 1000) % 60)).\#(ms)Z","source":{"kind":"app","app":"health_connect"}}"#
}

@Suite("POST /v1/samples")
struct IntakeTests {
    @Test("auth: no key 401, unknown key 401, key without the scope 403")
    func auth() async throws {
        let daemon = try makeDaemon()
        try await daemon.makeApplication().test(.router) { client in
            let body = ndjson([hr(1)])
            try await client.execute(
                uri: "/v1/samples", method: .post, headers: [.contentType: "application/x-ndjson"], body: body
            ) { r in
                #expect(r.status == .unauthorized)
                #expect(String(buffer: r.body).contains("\"unauthenticated\""))
            }
            try await client.execute(
                uri: "/v1/samples", method: .post,
                headers: [.contentType: "application/x-ndjson", .authorization: "Bearer pgk_nope"], body: body
            ) { r in
                #expect(r.status == .unauthorized)
            }
            try await client.execute(
                uri: "/v1/samples", method: .post,
                headers: [.contentType: "application/x-ndjson", .authorization: "Bearer \(readerKey)"], body: body
            ) { r in
                #expect(r.status == .forbidden)
                #expect(String(buffer: r.body).contains("samples:write"))
            }
        }
        #expect(daemon.outbox.depth == 0)
    }

    @Test("valid samples are stored before the answer; invalid ones come back with index and reason")
    func mixed() async throws {
        let daemon = try makeDaemon()
        try await daemon.makeApplication().test(.router) { client in
            let body = ndjson([
                hr(1),
                #"{"subject":"u1","metric":"heart_rate","value":1,"unit":"W","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}}"#,
                hr(2),
            ])
            try await client.execute(
                uri: "/v1/samples", method: .post,
                headers: [.contentType: "application/x-ndjson", .authorization: "Bearer \(writerKey)"], body: body
            ) { r in
                #expect(r.status == .ok)
                let answer = try JSONSerialization.jsonObject(with: Data(r.body.readableBytesView)) as! [String: Any]
                #expect(answer["accepted"] as? Int == 2)
                let rejected = answer["rejected"] as! [[String: Any]]
                #expect(rejected.count == 1 && rejected[0]["index"] as? Int == 1)
                #expect((rejected[0]["reason"] as! String).contains("unit 'W' is not accepted"))
                let ids = answer["ids"] as! [Any]
                #expect(ids.count == 3 && ids[1] is NSNull)
            }
            #expect(daemon.outbox.lastSeq == 2)
            try await client.execute(
                uri: "/v1/samples", method: .post,
                headers: [.contentType: "application/json", .authorization: "Bearer \(writerKey)"],
                body: ByteBuffer(string: "[{\"metric\":\"x\"}]")
            ) { r in
                #expect(r.status == .unprocessableContent)
            }
        }
    }

    @Test("content type 415, body over the limit 413, unreadable array 400")
    func bodies() async throws {
        let daemon = try makeDaemon()
        try await daemon.makeApplication().test(.router) { client in
            let auth: HTTPFields = [.authorization: "Bearer \(writerKey)", .contentType: "text/plain"]
            try await client.execute(uri: "/v1/samples", method: .post, headers: auth, body: ndjson([hr(1)])) { r in
                #expect(r.status == .unsupportedMediaType)
            }
            let big = ndjson((0..<100).map { hr($0) })
            try await client.execute(
                uri: "/v1/samples", method: .post,
                headers: [.authorization: "Bearer \(writerKey)", .contentType: "application/x-ndjson"], body: big
            ) { r in
                #expect(r.status == .contentTooLarge)
            }
            try await client.execute(
                uri: "/v1/samples", method: .post,
                headers: [.authorization: "Bearer \(writerKey)", .contentType: "application/json"],
                body: ByteBuffer(string: "[{")
            ) { r in
                #expect(r.status == .badRequest)
            }
        }
        #expect(daemon.outbox.depth == 0)
    }

    @Test("over the key's rate limit: 429 with Retry-After")
    func rateLimit() async throws {
        let daemon = try makeDaemon()
        try await daemon.makeApplication().test(.router) { client in
            var statuses = [HTTPResponse.Status]()
            var retryAfter: String?
            for i in 0..<8 {
                try await client.execute(
                    uri: "/v1/samples", method: .post,
                    headers: [.authorization: "Bearer \(writerKey)", .contentType: "application/x-ndjson"],
                    body: ndjson([hr(i)])
                ) { r in
                    statuses.append(r.status)
                    if r.status == .tooManyRequests { retryAfter = r.headers[.retryAfter] }
                }
            }
            #expect(statuses.prefix(5).allSatisfy { $0 == .ok })
            #expect(statuses.contains(.tooManyRequests))
            #expect(retryAfter == "1")
        }
    }

    @Test("above the high watermark: 503 with Retry-After, nothing stored")
    func watermark() async throws {
        let daemon = try makeDaemon(highWatermark: 3)
        try await daemon.makeApplication().test(.router) { client in
            let headers: HTTPFields = [.authorization: "Bearer \(writerKey)", .contentType: "application/x-ndjson"]
            try await client.execute(uri: "/v1/samples", method: .post, headers: headers, body: ndjson([hr(1), hr(2)]))
            { r in
                #expect(r.status == .ok)
            }
            try await client.execute(uri: "/v1/samples", method: .post, headers: headers, body: ndjson([hr(3), hr(4)]))
            { r in
                #expect(r.status == .serviceUnavailable)
                #expect(r.headers[.retryAfter] == "5")
                #expect(String(buffer: r.body).contains("outbox_full"))
            }
        }
        // The test framework runs the daemon's services, so the pump has drained both samples by now.
        let archived = try String(
            contentsOfFile: daemon.configuration.stateDirectory + "/samples.ndjson", encoding: .utf8)
        #expect(archived.split(separator: "\n").count == 2)
    }

    @Test("health, readiness and metrics")
    func operations() async throws {
        let daemon = try makeDaemon()
        try await daemon.makeApplication().test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/readyz", method: .get) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains("\"sink:archive\":\"ok\""))
            }
            try await client.execute(
                uri: "/v1/samples", method: .post,
                headers: [.authorization: "Bearer \(writerKey)", .contentType: "application/x-ndjson"],
                body: ndjson([hr(1)])
            ) { _ in }
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                #expect(text.contains("pulsegate_outbox_depth_samples"))
                #expect(text.contains("pulsegate_intake_samples_total{source=\"app:health_connect\"} 1"))
            }
        }
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import PulseGateCore
import PulseGateStore

/// `POST /v1/samples`: canonical samples from trusted clients (the mobile apps push Apple Health and
/// Health Connect data this way).
///
/// Each sample is judged on its own: the valid ones are committed to the outbox before the answer, the
/// invalid ones come back with their index and reason. When the outbox is above its high watermark or
/// the store cannot write, nothing is stored and the client gets 503 with `Retry-After`.
public struct IntakeController: Sendable {
    let outbox: Outbox
    let keyring: APIKeyring
    let maxBodyBytes: Int
    let retryAfterSeconds: Int
    let logger: Logger
    let metricsFactory: any MetricsFactory
    private let refused: Counter

    public init(
        outbox: Outbox, keyring: APIKeyring, maxBodyBytes: Int, retryAfterSeconds: Int,
        metricsFactory: any MetricsFactory, logger: Logger
    ) {
        self.outbox = outbox
        self.keyring = keyring
        self.maxBodyBytes = maxBodyBytes
        self.retryAfterSeconds = retryAfterSeconds
        self.metricsFactory = metricsFactory
        self.logger = logger
        refused = Counter(label: "pulsegate_intake_refused_requests_total", factory: metricsFactory)
    }

    public func register(on router: Router<some RequestContext>) {
        router.post("/v1/samples") { request, context in
            try await ingest(request, context: context)
        }
    }

    struct Answer: Encodable {
        struct Rejection: Encodable {
            let index: Int
            let reason: String
        }
        let accepted: Int
        let rejected: [Rejection]
        let ids: [String?]
    }

    func ingest(_ request: Request, context: some RequestContext) async throws -> Response {
        let key = try keyring.authorize(request, scope: .samplesWrite)
        let format: SampleCodec.Format
        let contentType = request.headers[.contentType]?.split(separator: ";").first
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        switch contentType {
        case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines":
            format = .ndjson
        case "application/json":
            format = .jsonArray
        default:
            throw APIError(
                .unsupportedMediaType, code: "unsupported_media_type",
                message: "send application/x-ndjson or application/json, not \(contentType ?? "no Content-Type")")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            throw APIError(
                .contentTooLarge, code: "body_too_large", message: "request body exceeds \(maxBodyBytes) bytes")
        }
        let results: [Result<Sample, SampleError>]
        do {
            results = try SampleCodec.decode(body.readableBytesView, format: format, now: .now)
        } catch {
            throw APIError(.badRequest, code: "malformed_body", message: error.message)
        }
        guard !results.isEmpty else {
            throw APIError(.badRequest, code: "empty_body", message: "the body holds no samples")
        }
        var lines = [[UInt8]]()
        lines.reserveCapacity(results.count)
        var ids = [String?]()
        ids.reserveCapacity(results.count)
        var rejected = [Answer.Rejection]()
        var accepted = [Sample]()
        for (index, result) in results.enumerated() {
            switch result {
            case .success(let sample):
                lines.append(SampleCodec.line(sample))
                ids.append(sample.id.description)
                accepted.append(sample)
            case .failure(let error):
                ids.append(nil)
                rejected.append(.init(index: index, reason: error.message))
                Counter(
                    label: "pulsegate_intake_rejected_samples_total", dimensions: [("reason", error.code.description)],
                    factory: metricsFactory
                ).increment()
            }
        }
        if !lines.isEmpty {
            do {
                _ = try await outbox.enqueue(lines)
            } catch {
                refused.increment()
                switch error.code {
                case .outboxFull:
                    logger.warning(
                        "intake refused: outbox full", metadata: ["detail": "\(error.message)", "key": "\(key.name)"])
                    throw APIError(
                        .serviceUnavailable, code: "outbox_full",
                        message: "pulsegate is holding as many samples as it may; nothing was stored, retry later",
                        retryAfterSeconds: retryAfterSeconds)
                default:
                    logger.error(
                        "intake refused: store cannot write", metadata: ["error": "\(error)", "key": "\(key.name)"])
                    throw APIError(
                        .serviceUnavailable, code: "store_unavailable",
                        message: "samples cannot be stored right now (\(error.code)); nothing was stored, retry later",
                        retryAfterSeconds: retryAfterSeconds)
                }
            }
            var perSource = [String: Int]()
            for sample in accepted { perSource[sample.source.metricLabel, default: 0] += 1 }
            for (source, count) in perSource {
                Counter(
                    label: "pulsegate_intake_samples_total", dimensions: [("source", source)], factory: metricsFactory
                ).increment(by: count)
            }
        }
        let answer = Answer(accepted: lines.count, rejected: rejected, ids: ids)
        return try Response.json(answer, status: lines.isEmpty ? .unprocessableContent : .ok)
    }
}

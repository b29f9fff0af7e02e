import PulseGateCore

/// Collects the samples of one vendor record. A value the schema refuses (a 0 bpm dropout, a speed of
/// 400 m/s from a GPS glitch) is skipped and counted rather than failing the whole record: one bad
/// point must not cost the other thousands.
public struct SampleBatch: Sendable {
    public let subject: String
    public let source: SourceRef
    public let now: Timestamp
    public private(set) var samples: [Sample] = []
    /// Refused values with the schema's reason, for the log and the adapter's tests.
    public private(set) var skipped: [String] = []

    public init(subject: String, vendor: String, recordID: String?, device: SourceRef.Device? = nil, now: Timestamp) {
        self.subject = subject
        self.source = SourceRef(kind: .cloud, vendor: vendor, device: device, recordID: recordID)
        self.now = now
    }

    public mutating func add(
        _ metric: Metric, _ value: Double?, unit: String, at start: Timestamp, end: Timestamp? = nil,
        quality: Quality = []
    ) {
        guard let value else { return }
        add(metric, .number(value), unit: unit, at: start, end: end, quality: quality)
    }

    public mutating func add(
        _ metric: Metric, _ value: Sample.Value, unit: String, at start: Timestamp, end: Timestamp? = nil,
        quality: Quality = []
    ) {
        do {
            samples.append(
                try Sample(
                    subject: subject, metric: metric, value: value, unit: unit, start: start, end: end,
                    source: source, quality: quality, now: now))
        } catch {
            skipped.append("\(metric.name) at \(start): \(error)")
        }
    }
}

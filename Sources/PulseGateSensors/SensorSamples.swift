import PulseGateCore

/// Turns a sensor's readings into canonical samples for one subject (the bound member, or the station
/// while unbound). A reading the schema refuses (a 0 bpm dropout, a 300 km/h glitch) is skipped and
/// reported, never clamped.
public struct SensorSamples: Sendable {
    public let subject: String
    public let source: SourceRef

    public init(subject: String, source: SourceRef) {
        self.subject = subject
        self.source = source
    }

    /// Samples for `readings` decoded from a payload that arrived at `time`, and the reasons for the
    /// readings that were refused. Battery readings are not samples: they are returned apart.
    public func samples(from readings: [Reading], at time: Timestamp, now: Timestamp)
        -> (samples: [Sample], battery: Int?, refused: [String])
    {
        var samples = [Sample]()
        var refused = [String]()
        var battery: Int?
        for reading in readings {
            switch reading {
            case .battery(let percent):
                battery = percent
            case .measurement(let metric, let value, let unit, let quality, let offset):
                do {
                    samples.append(
                        try Sample(
                            subject: subject, metric: metric, value: .number(value), unit: unit,
                            start: time.adding(milliseconds: offset), source: source, quality: quality, now: now))
                } catch {
                    refused.append("\(metric.name) \(value) \(unit): \(error)")
                }
            }
        }
        return (samples, battery, refused)
    }
}

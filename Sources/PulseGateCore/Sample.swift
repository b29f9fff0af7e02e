import Crypto

/// One measurement of one metric, for one subject, from one source, at one time or over one interval:
/// the canonical sample of schema v1.
///
/// A `Sample` can only be made through ``Sample/init(subject:metric:value:unit:start:end:source:quality:now:)``,
/// which validates and converts, so every value of this type is valid and carries its deterministic id.
public struct Sample: Sendable, Hashable {
    /// Schema version written as `v`.
    public static let schemaVersion = 1

    public let id: SampleID
    public let subject: String
    public let metric: Metric
    /// The value in `metric.unit`.
    public let value: Value
    public let start: Timestamp
    /// Present exactly when `metric.kind == .interval`.
    public let end: Timestamp?
    public let source: SourceRef
    public let quality: Quality

    /// A numeric value, or a category from the metric's closed list.
    public enum Value: Sendable, Hashable {
        case number(Double)
        case category(String)

        public var number: Double? {
            if case .number(let v) = self { return v }
            return nil
        }
    }

    /// Samples dated further ahead than this are rejected: clocks drift, but not by that much.
    public static let futureTolerance: Int64 = 5 * 60 * 1000
    /// Samples dated before this (1980-01-01) are rejected as impossible timestamps.
    public static let earliest = Timestamp(millisecondsSinceEpoch: 315_532_800_000)

    /// Validates a measurement and converts it to the metric's canonical unit.
    ///
    /// - Parameters:
    ///   - unit: the UCUM code the value is expressed in; any unit the metric accepts is converted.
    ///   - now: the reference for the future-time check (tests pass a fixed clock).
    /// - Throws: ``SampleError`` naming the first problem; nothing is ever clamped or guessed.
    public init(
        subject: String, metric: Metric, value: Value, unit: String, start: Timestamp, end: Timestamp? = nil,
        source: SourceRef, quality: Quality = [], now: Timestamp
    ) throws(SampleError) {
        guard !subject.isEmpty, subject.utf8.count <= 200 else { throw .init(.invalidSubject) }
        guard start >= Self.earliest else { throw .init(.timeOutOfRange, "start \(start) is before 1980") }
        guard start.millisecondsSinceEpoch <= now.millisecondsSinceEpoch + Self.futureTolerance else {
            throw .init(.timeOutOfRange, "start \(start) is in the future")
        }
        switch (metric.kind, end) {
        case (.instant, .some):
            throw .init(.invalidInterval, "metric '\(metric.name)' is instant and takes no end")
        case (.interval, .none):
            throw .init(.invalidInterval, "metric '\(metric.name)' is an interval and needs an end")
        case (.interval, .some(let end)):
            guard end > start else { throw .init(.invalidInterval, "end \(end) is not after start \(start)") }
            guard end.millisecondsSinceEpoch <= now.millisecondsSinceEpoch + Self.futureTolerance else {
                throw .init(.timeOutOfRange, "end \(end) is in the future")
            }
        case (.instant, .none):
            break
        }
        guard let conversion = metric.unit.conversion(from: unit) else {
            let accepted = metric.unit.accepted.map(\.code).joined(separator: ", ")
            throw .init(.wrongUnit, "unit '\(unit)' is not accepted for '\(metric.name)' (accepted: \(accepted))")
        }
        let canonical: Value
        switch value {
        case .number(let raw):
            guard metric.categories == nil else {
                throw .init(
                    .invalidValue, "'\(metric.name)' takes one of \(metric.categories!.joined(separator: ", "))")
            }
            guard raw.isFinite else { throw .init(.invalidValue, "value is not a finite number") }
            let converted = raw * conversion.factor + conversion.offset
            if let range = metric.range, !range.contains(converted) {
                throw .init(
                    .invalidValue,
                    "value \(converted) \(metric.unit.code) is outside \(range.lowerBound)...\(range.upperBound) for '\(metric.name)'"
                )
            }
            canonical = .number(converted)
        case .category(let name):
            guard let categories = metric.categories, categories.contains(name) else {
                if let categories = metric.categories {
                    throw .init(.invalidValue, "'\(name)' is not one of \(categories.joined(separator: ", "))")
                }
                throw .init(.invalidValue, "'\(metric.name)' takes a number")
            }
            canonical = .category(name)
        }
        try Self.checkSource(source)
        self.subject = subject
        self.metric = metric
        self.value = canonical
        self.start = start
        self.end = end
        self.source = source
        self.quality = quality
        self.id = SampleID(subject: subject, metric: metric, source: source, start: start, end: end)
    }

    private static func checkSource(_ source: SourceRef) throws(SampleError) {
        let fields: [String?] = [
            source.vendor, source.app, source.station, source.recordID, source.device?.manufacturer,
            source.device?.model, source.device?.serial, source.device?.address, source.device?.firmware,
        ]
        for field in fields {
            if let field, field.isEmpty || field.utf8.count > 200 {
                throw .init(.invalidSource, "source fields must be 1-200 characters")
            }
        }
    }
}

/// Why a sample was rejected. A struct over a private code enum so new reasons are not a breaking change.
public struct SampleError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable {
            case malformed, unknownMetric, wrongUnit, invalidValue, timeOutOfRange,
                invalidInterval, invalidSubject, invalidSource, idMismatch
        }
        let base: Base
        public static let malformed = Code(base: .malformed)
        public static let unknownMetric = Code(base: .unknownMetric)
        public static let wrongUnit = Code(base: .wrongUnit)
        public static let invalidValue = Code(base: .invalidValue)
        public static let timeOutOfRange = Code(base: .timeOutOfRange)
        public static let invalidInterval = Code(base: .invalidInterval)
        public static let invalidSubject = Code(base: .invalidSubject)
        public static let invalidSource = Code(base: .invalidSource)
        public static let idMismatch = Code(base: .idMismatch)
        /// snake_case label used in metrics.
        public var description: String {
            base.rawValue.replacing(/[A-Z]/) { "_" + $0.output.lowercased() }
        }
    }

    public let code: Code
    public let message: String

    init(_ code: Code, _ message: String? = nil) {
        self.code = code
        self.message =
            message
            ?? {
                switch code.base {
                case .invalidSubject: "subject must be 1-200 characters"
                default: code.description
                }
            }()
    }

    public static func malformed(_ message: String) -> SampleError { .init(.malformed, message) }

    public var description: String { message }
}

import Foundation

/// Reads and writes schema v1 JSON.
///
/// Writing is hand-rolled: the output is the wire format every sink and consumer sees, so field order
/// and number formatting are fixed (deterministic bytes for the same sample), and it runs once per
/// sample on the intake hot path. Reading goes through ``JSONScanner`` with strict, per-field checks so
/// each rejected sample gets a precise reason.
public enum SampleCodec {
    /// Body formats the intake accepts.
    public enum Format: Sendable {
        /// One JSON object per line; blank lines are ignored. Each line is judged on its own.
        case ndjson
        /// A JSON array of objects (or one object). Each element is judged on its own.
        case jsonArray
    }

    // MARK: writing

    /// Appends the sample's JSON object (no trailing newline).
    public static func encode(_ s: Sample, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"v":1,"id":""#.utf8)
        s.id.appendText(to: &out)
        out.append(contentsOf: #"","subject":"#.utf8)
        appendString(s.subject, to: &out)
        out.append(contentsOf: #","metric":""#.utf8)
        out.append(contentsOf: s.metric.name.utf8)
        out.append(contentsOf: #"","value":"#.utf8)
        switch s.value {
        case .number(let v): appendNumber(v, to: &out)
        case .category(let c): appendString(c, to: &out)
        }
        out.append(contentsOf: #","unit":""#.utf8)
        out.append(contentsOf: s.metric.unit.code.utf8)
        out.append(contentsOf: #"","start":""#.utf8)
        s.start.appendRFC3339(to: &out)
        out.append(UInt8(ascii: "\""))
        if let end = s.end {
            out.append(contentsOf: #","end":""#.utf8)
            end.appendRFC3339(to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: #","source":{"kind":""#.utf8)
        out.append(contentsOf: s.source.kind.rawValue.utf8)
        out.append(UInt8(ascii: "\""))
        appendField("vendor", s.source.vendor, to: &out)
        appendField("app", s.source.app, to: &out)
        appendField("station", s.source.station, to: &out)
        if let d = s.source.device, !d.isEmpty {
            out.append(contentsOf: #","device":{"#.utf8)
            var first = true
            func member(_ key: StaticString, _ value: String?) {
                guard let value else { return }
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.append(UInt8(ascii: "\""))
                key.withUTF8Buffer { out.append(contentsOf: $0) }
                out.append(contentsOf: #"":"#.utf8)
                appendString(value, to: &out)
            }
            member("manufacturer", d.manufacturer)
            member("model", d.model)
            member("serial", d.serial)
            member("address", d.address)
            member("firmware", d.firmware)
            out.append(UInt8(ascii: "}"))
        }
        appendField("record_id", s.source.recordID, to: &out)
        out.append(UInt8(ascii: "}"))
        if !s.quality.isEmpty {
            out.append(contentsOf: #","quality":["#.utf8)
            for (i, name) in s.quality.flagNames.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: name.utf8)
                out.append(UInt8(ascii: "\""))
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(UInt8(ascii: "}"))
    }

    /// The sample as one NDJSON line, newline included.
    public static func line(_ s: Sample) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(256)
        encode(s, into: &out)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    private static func appendField(_ key: String, _ value: String?, to out: inout [UInt8]) {
        guard let value else { return }
        out.append(contentsOf: #",""#.utf8)
        out.append(contentsOf: key.utf8)
        out.append(contentsOf: #"":"#.utf8)
        appendString(value, to: &out)
    }

    /// Integral values print without a fraction (`142`, not `142.0`); others in Swift's shortest
    /// round-trip form, which is valid JSON for every finite double.
    static func appendNumber(_ v: Double, to out: inout [UInt8]) {
        if v == v.rounded(), abs(v) < 1e15 {
            out.append(contentsOf: String(Int64(v)).utf8)
        } else {
            out.append(contentsOf: v.description.utf8)
        }
    }

    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    // MARK: reading

    /// Decodes an intake body into one result per sample, in input order.
    ///
    /// A malformed element never spoils its neighbours: NDJSON lines are read one by one, array elements
    /// one by one. Only a body that is not an array at all (for `.jsonArray`) fails as a whole.
    public static func decode(_ body: some Collection<UInt8>, format: Format, now: Timestamp) throws(SampleError)
        -> [Result<Sample, SampleError>]
    {
        let contiguous = Array(body)
        let outcome = contiguous.withUnsafeBytes { raw -> Result<[Result<Sample, SampleError>], SampleError> in
            switch format {
            case .ndjson:
                var results = [Result<Sample, SampleError>]()
                var lineStart = 0
                while lineStart < raw.count {
                    var lineEnd = lineStart
                    while lineEnd < raw.count, raw[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                    let line = UnsafeRawBufferPointer(rebasing: raw[lineStart..<lineEnd])
                    if !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
                        results.append(sample(from: line, now: now))
                    }
                    lineStart = lineEnd + 1
                }
                return .success(results)
            case .jsonArray:
                var scanner = JSONScanner(raw)
                scanner.skipWhitespace()
                if scanner.peek == UInt8(ascii: "{") { return .success([sample(from: raw, now: now)]) }
                var elements = [UnsafeRawBufferPointer]()
                do throws(JSONScanner.Failure) {
                    try scanner.expect(UInt8(ascii: "["))
                    if !scanner.consume(UInt8(ascii: "]")) {
                        repeat {
                            scanner.skipWhitespace()
                            let start = scanner.index
                            try scanner.skipValue()
                            elements.append(UnsafeRawBufferPointer(rebasing: raw[start..<scanner.index]))
                        } while scanner.consume(UInt8(ascii: ","))
                        try scanner.expect(UInt8(ascii: "]"))
                    }
                    scanner.skipWhitespace()
                    guard scanner.atEnd else { throw scanner.fail("data after the array") }
                } catch {
                    return .failure(
                        .malformed("body is not a JSON array of samples: \(error.message) at byte \(error.offset ?? 0)")
                    )
                }
                return .success(elements.map { sample(from: $0, now: now) })
            }
        }
        return try outcome.get()
    }

    /// One JSON object → a validated sample, or the reason it is not one.
    static func sample(from bytes: UnsafeRawBufferPointer, now: Timestamp) -> Result<Sample, SampleError> {
        var scanner = JSONScanner(bytes)
        let input: SampleInput
        do throws(JSONScanner.Failure) {
            scanner.skipWhitespace()
            guard scanner.peek == UInt8(ascii: "{") else { throw scanner.fail("a sample must be a JSON object") }
            input = try SampleInput.read(&scanner)
            scanner.skipWhitespace()
            guard scanner.atEnd else { throw scanner.fail("data after the sample") }
        } catch {
            return .failure(.malformed(error.offset.map { "\(error.message) (byte \($0))" } ?? error.message))
        }
        return input.validate(now: now)
    }
}

/// A sample as a client wrote it, before validation. Unknown and repeated fields are errors: a typo
/// such as `"untis"` must not silently drop the unit.
struct SampleInput {
    var id: String?
    var subject: String?
    var metric: String?
    var value: Sample.Value?
    var unit: String?
    var start: String?
    var end: String?
    var source: SourceRef?
    var quality: [String]?

    static func read(_ s: inout JSONScanner) throws(JSONScanner.Failure) -> SampleInput {
        var input = SampleInput()
        try s.readObject { s, key throws(JSONScanner.Failure) in
            switch key {
            case "v":
                guard try s.nextKind() == .number, try s.readNumber() == Double(Sample.schemaVersion) else {
                    throw s.invalid("schema version must be 1")
                }
            case "id": input.id = try string(&s, key)
            case "subject": input.subject = try string(&s, key)
            case "metric": input.metric = try string(&s, key)
            case "value":
                switch try s.nextKind() {
                case .number: input.value = .number(try s.readNumber())
                case .string: input.value = .category(try s.readString())
                default: throw s.invalid("field 'value': expected a number or a category name")
                }
            case "unit": input.unit = try string(&s, key)
            case "start": input.start = try string(&s, key)
            case "end":
                if try s.nextKind() == .null {
                    try s.skipValue()
                } else {
                    input.end = try string(&s, key)
                }
            case "source": input.source = try readSource(&s)
            case "quality":
                guard try s.nextKind() == .array else { throw s.invalid("field 'quality': expected a list of flags") }
                var flags = [String]()
                try s.expect(UInt8(ascii: "["))
                if !s.consume(UInt8(ascii: "]")) {
                    repeat { flags.append(try string(&s, "quality")) } while s.consume(UInt8(ascii: ","))
                    try s.expect(UInt8(ascii: "]"))
                }
                input.quality = flags
            default:
                throw s.invalid("unknown field '\(key)'")
            }
        }
        return input
    }

    private static func string(_ s: inout JSONScanner, _ key: String) throws(JSONScanner.Failure) -> String {
        guard try s.nextKind() == .string else { throw s.invalid("field '\(key)': expected a string") }
        return try s.readString()
    }

    private static func readSource(_ s: inout JSONScanner) throws(JSONScanner.Failure) -> SourceRef {
        guard try s.nextKind() == .object else { throw s.invalid("field 'source': expected an object") }
        var kind: SourceRef.Kind?
        var source = SourceRef(kind: .app)
        try s.readObject(path: "source.") { s, key throws(JSONScanner.Failure) in
            switch key {
            case "kind":
                let name = try string(&s, "source.kind")
                guard let k = SourceRef.Kind(rawValue: name) else {
                    let kinds = SourceRef.Kind.allCases.map(\.rawValue).joined(separator: ", ")
                    throw s.invalid("source.kind '\(name)' is not one of \(kinds)")
                }
                kind = k
            case "vendor": source.vendor = try string(&s, "source.vendor")
            case "app": source.app = try string(&s, "source.app")
            case "station": source.station = try string(&s, "source.station")
            case "record_id": source.recordID = try string(&s, "source.record_id")
            case "device":
                guard try s.nextKind() == .object else { throw s.invalid("field 'source.device': expected an object") }
                var device = SourceRef.Device()
                try s.readObject(path: "source.device.") { s, key throws(JSONScanner.Failure) in
                    switch key {
                    case "manufacturer": device.manufacturer = try string(&s, "source.device.manufacturer")
                    case "model": device.model = try string(&s, "source.device.model")
                    case "serial": device.serial = try string(&s, "source.device.serial")
                    case "address": device.address = try string(&s, "source.device.address")
                    case "firmware": device.firmware = try string(&s, "source.device.firmware")
                    default: throw s.invalid("unknown field 'source.device.\(key)'")
                    }
                }
                source.device = device
            default:
                throw s.invalid("unknown field 'source.\(key)'")
            }
        }
        guard let kind else { throw s.invalid("missing field 'source.kind'") }
        source.kind = kind
        return source
    }

    func validate(now: Timestamp) -> Result<Sample, SampleError> {
        Result { () throws(SampleError) -> Sample in
            guard let subject else { throw .malformed("missing field 'subject'") }
            guard let metricName = metric else { throw .malformed("missing field 'metric'") }
            guard let metric = Metric.named(metricName) else {
                throw .init(.unknownMetric, "unknown metric '\(metricName)'")
            }
            guard let value else { throw .malformed("missing field 'value'") }
            guard let unit else { throw .malformed("missing field 'unit'") }
            guard let startText = start else { throw .malformed("missing field 'start'") }
            guard let start = Timestamp(rfc3339: startText) else {
                throw .init(.timeOutOfRange, "start '\(startText)' is not an RFC 3339 time")
            }
            var endTime: Timestamp?
            if let endText = end {
                guard let parsed = Timestamp(rfc3339: endText) else {
                    throw .init(.timeOutOfRange, "end '\(endText)' is not an RFC 3339 time")
                }
                endTime = parsed
            }
            guard let source else { throw .malformed("missing field 'source'") }
            var flags: Quality = []
            for name in quality ?? [] {
                guard let flag = Quality(name: name) else { throw .malformed("unknown quality flag '\(name)'") }
                flags.insert(flag)
            }
            let sample = try Sample(
                subject: subject, metric: metric, value: value, unit: unit, start: start, end: endTime,
                source: source, quality: flags, now: now)
            if let id, SampleID(id) != sample.id {
                throw .init(.idMismatch, "id '\(id)' is not this sample's deterministic id \(sample.id); omit it")
            }
            return sample
        }
    }
}

extension Timestamp {
    /// The current wall-clock time.
    public static var now: Timestamp {
        Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
    }
}

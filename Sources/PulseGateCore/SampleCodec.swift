import Foundation

/// Reads and writes schema v1 JSON.
///
/// Writing is hand-rolled: the output is the wire format every sink and consumer sees, so field order
/// and number formatting are fixed (deterministic bytes for the same sample), and it runs once per
/// sample on the intake hot path. Reading goes through `JSONDecoder` with strict, per-field checks so
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
            for (key, value) in [("manufacturer", d.manufacturer), ("model", d.model), ("serial", d.serial),
                                 ("address", d.address), ("firmware", d.firmware)] {
                guard let value else { continue }
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: key.utf8)
                out.append(contentsOf: #"":"#.utf8)
                appendString(value, to: &out)
            }
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
    /// A malformed element never spoils its neighbours: NDJSON lines are decoded one by one, array
    /// elements one by one. Only a body that is not an array at all (for `.jsonArray`) fails as a whole.
    public static func decode(_ body: some Collection<UInt8>, format: Format, now: Timestamp) throws(SampleError)
        -> [Result<Sample, SampleError>]
    {
        let decoder = JSONDecoder()
        switch format {
        case .ndjson:
            var results = [Result<Sample, SampleError>]()
            for rawLine in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
                var line = Data(rawLine)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                do {
                    let input = try decoder.decode(SampleInput.self, from: line)
                    results.append(input.validate(now: now))
                } catch {
                    results.append(.failure(.malformed(describe(error))))
                }
            }
            return results
        case .jsonArray:
            let data = Data(body)
            if let first = data.first(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }),
                first == UInt8(ascii: "{")
            {
                do {
                    return [try decoder.decode(SampleInput.self, from: data).validate(now: now)]
                } catch {
                    return [.failure(.malformed(describe(error)))]
                }
            }
            let elements: [LenientElement]
            do {
                elements = try decoder.decode([LenientElement].self, from: data)
            } catch {
                throw .malformed("body is not a JSON array of samples: \(describe(error))")
            }
            return elements.map { element in
                element.input.flatMap { $0.validate(now: now) }
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let sampleError = error as? SampleError { return sampleError.message }
        guard let error = error as? DecodingError else { return "invalid JSON" }
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? "" : "field '\(p)': "
        }
        switch error {
        case .dataCorrupted(let c): return "\(path(c))invalid JSON"
        case .keyNotFound(let key, let c): return "\(path(c))missing field '\(key.stringValue)'"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "\(path(c))\(c.debugDescription)"
        @unknown default: return "invalid JSON"
        }
    }
}

/// One array element, decoded without letting its errors escape to the array.
private struct LenientElement: Decodable {
    let input: Result<SampleInput, SampleError>
    init(from decoder: any Decoder) throws {
        do {
            input = .success(try SampleInput(from: decoder))
        } catch {
            input = .failure(.malformed(SampleCodec.describe(error)))
        }
    }
}

/// A sample as a client wrote it, before validation. Unknown fields are errors: a typo such as
/// `"untis"` must not silently drop the unit.
struct SampleInput: Decodable {
    var id: String?
    var subject: String?
    var metric: String?
    var value: Sample.Value?
    var unit: String?
    var start: String?
    var end: String?
    var source: SourceRef?
    var quality: [String]?

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        for key in c.allKeys {
            switch key.stringValue {
            case "v":
                let v = try c.decode(Int.self, forKey: key)
                guard v == Sample.schemaVersion else { throw SampleError.malformed("schema version \(v) is not 1") }
            case "id": id = try c.decode(String.self, forKey: key)
            case "subject": subject = try c.decode(String.self, forKey: key)
            case "metric": metric = try c.decode(String.self, forKey: key)
            case "value":
                if let number = try? c.decode(Double.self, forKey: key) {
                    value = .number(number)
                } else if let text = try? c.decode(String.self, forKey: key) {
                    value = .category(text)
                } else {
                    throw SampleError.malformed("field 'value': expected a number or a category name")
                }
            case "unit": unit = try c.decode(String.self, forKey: key)
            case "start": start = try c.decode(String.self, forKey: key)
            case "end": end = try c.decodeIfPresent(String.self, forKey: key)
            case "source": source = try Self.decodeSource(try c.superDecoder(forKey: key))
            case "quality": quality = try c.decode([String].self, forKey: key)
            default: throw SampleError.malformed("unknown field '\(key.stringValue)'")
            }
        }
    }

    private static func decodeSource(_ decoder: any Decoder) throws -> SourceRef {
        let c = try decoder.container(keyedBy: Key.self)
        let allowed: Set = ["kind", "vendor", "app", "station", "device", "record_id"]
        if let unknown = c.allKeys.first(where: { !allowed.contains($0.stringValue) }) {
            throw SampleError.malformed("unknown field 'source.\(unknown.stringValue)'")
        }
        let kindName = try c.decode(String.self, forKey: Key(stringValue: "kind"))
        guard let kind = SourceRef.Kind(rawValue: kindName) else {
            let kinds = SourceRef.Kind.allCases.map(\.rawValue).joined(separator: ", ")
            throw SampleError.malformed("source.kind '\(kindName)' is not one of \(kinds)")
        }
        var device: SourceRef.Device?
        if c.contains(Key(stringValue: "device")) {
            let d = try c.nestedContainer(keyedBy: Key.self, forKey: Key(stringValue: "device"))
            let deviceKeys: Set = ["manufacturer", "model", "serial", "address", "firmware"]
            if let unknown = d.allKeys.first(where: { !deviceKeys.contains($0.stringValue) }) {
                throw SampleError.malformed("unknown field 'source.device.\(unknown.stringValue)'")
            }
            func s(_ k: String) throws -> String? { try d.decodeIfPresent(String.self, forKey: Key(stringValue: k)) }
            device = .init(
                manufacturer: try s("manufacturer"), model: try s("model"), serial: try s("serial"),
                address: try s("address"), firmware: try s("firmware"))
        }
        func s(_ k: String) throws -> String? { try c.decodeIfPresent(String.self, forKey: Key(stringValue: k)) }
        return SourceRef(
            kind: kind, vendor: try s("vendor"), app: try s("app"), station: try s("station"), device: device,
            recordID: try s("record_id"))
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

import Foundation

/// Any JSON value, for reading vendor payloads whose shapes differ per vendor and drift over time.
///
/// Adapters read what they map and ignore the rest, so a field a vendor adds never breaks a sync;
/// a field they need and do not find is a typed error at the adapter (``JSONValue/Missing``), naming
/// the path. Integers are kept apart from doubles so 64-bit ids (Strava activity ids) survive exactly.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses `bytes` as one JSON document (strict RFC 8259, through the intake's scanner).
    public static func parse(_ bytes: some Collection<UInt8>) throws(Missing) -> JSONValue {
        let array = Array(bytes)
        let result = array.withUnsafeBytes { raw -> Result<JSONValue, JSONScanner.Failure> in
            var scanner = JSONScanner(raw)
            do throws(JSONScanner.Failure) {
                let value = try scanner.readValue()
                scanner.skipWhitespace()
                guard scanner.atEnd else { throw scanner.fail("unexpected data after the JSON value") }
                return .success(value)
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let value): return value
        case .failure(let failure):
            throw Missing(
                path: "$", reason: "not valid JSON (\(failure.message)\(failure.offset.map { " at byte \($0)" } ?? ""))"
            )
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Compact JSON bytes with sorted keys (stable across runs, so stored payloads compare equal).
    public var bytes: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data("null".utf8))
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The number as a double (integers convert); `nil` for anything else, `null` included.
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The number as an integer when it is one exactly (`3.0` is 3, `3.5` is not).
    public var int: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.0e18: return Int64(d)
        default: return nil
        }
    }

    public var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var array: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var object: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool { self == .null }

    /// An id the vendor may send as a number or a string (Strava and Polar use numbers, others strings).
    public var idString: String? {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        default: return nil
        }
    }

    /// A required field: the value at `key`, or an error naming `path.key`.
    public func require(_ key: String, at path: String = "$") throws(Missing) -> JSONValue {
        guard let v = self[key], !v.isNull else { throw Missing(path: "\(path).\(key)", reason: "missing") }
        return v
    }

    /// What an adapter reports when a payload lacks what it needs or is not JSON at all.
    public struct Missing: Error, Sendable, CustomStringConvertible {
        public let path: String
        public let reason: String
        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }
        public var description: String { "\(path): \(reason)" }
    }
}

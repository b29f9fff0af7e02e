/// Reading a large JSON document piece by piece.
///
/// A vendor push can hold a whole day of summaries or a 10-hour activity with a sample per second
/// (Garmin `activityDetails`): megabytes that would become tens of megabytes as a ``JSONValue`` tree.
/// These helpers find the byte ranges of an object's members and an array's elements (checking the
/// grammar as they skip), so an adapter splits the document into records and parses one small element
/// at a time — memory bounded by the element, not by the document.
extension JSONValue {
    /// The members of the object that spans `range` of `bytes` (the whole buffer when `nil`), as keys
    /// with the byte range of each value. Values are skipped, not built.
    public static func memberRanges(_ bytes: [UInt8], in range: Range<Int>? = nil) throws(Missing)
        -> [(key: String, range: Range<Int>)]
    {
        let range = range ?? bytes.indices
        let result = bytes.withUnsafeBytes { raw -> Result<[(key: String, range: Range<Int>)], JSONScanner.Failure> in
            var scanner = JSONScanner(UnsafeRawBufferPointer(rebasing: raw[range]))
            var members = [(key: String, range: Range<Int>)]()
            do throws(JSONScanner.Failure) {
                try scanner.expect(UInt8(ascii: "{"))
                if !scanner.consume(UInt8(ascii: "}")) {
                    repeat {
                        scanner.skipWhitespace()
                        guard scanner.peek == UInt8(ascii: "\"") else { throw scanner.fail("expected a field name") }
                        let key = try scanner.readString()
                        try scanner.expect(UInt8(ascii: ":"))
                        scanner.skipWhitespace()
                        let start = scanner.index
                        try scanner.skipValue()
                        members.append((key, (range.lowerBound + start)..<(range.lowerBound + scanner.index)))
                    } while scanner.consume(UInt8(ascii: ","))
                    try scanner.expect(UInt8(ascii: "}"))
                }
                scanner.skipWhitespace()
                guard scanner.atEnd else { throw scanner.fail("unexpected data after the JSON value") }
                return .success(members)
            } catch {
                return .failure(Self.shifted(error, by: range.lowerBound))
            }
        }
        return try result.get(Self.missing)
    }

    /// The byte range of member `key` of the object in `range`, or `nil` when it is absent.
    public static func memberRange(_ key: String, in bytes: [UInt8], range: Range<Int>? = nil) throws(Missing)
        -> Range<Int>?
    {
        try memberRanges(bytes, in: range).last { $0.key == key }?.range
    }

    /// Parses the value in `range` of `bytes`.
    public static func parse(_ bytes: [UInt8], range: Range<Int>) throws(Missing) -> JSONValue {
        try parse(bytes[range])
    }

    private static func shifted(_ failure: JSONScanner.Failure, by offset: Int) -> JSONScanner.Failure {
        JSONScanner.Failure(message: failure.message, offset: failure.offset.map { $0 + offset })
    }

    fileprivate static func missing(_ failure: JSONScanner.Failure) -> Missing {
        Missing(
            path: "$", reason: "not valid JSON (\(failure.message)\(failure.offset.map { " at byte \($0)" } ?? ""))")
    }
}

/// Walks the elements of one JSON array lazily: each ``next()`` skips one element and returns its byte
/// range, so a 36,000-element sample array is read with constant memory.
public struct JSONArrayCursor: Sendable {
    private let bytes: [UInt8]
    private let end: Int
    private var index: Int
    private var finished = false

    /// A cursor over the array that spans `range` of `bytes`.
    public init(_ bytes: [UInt8], range: Range<Int>) throws(JSONValue.Missing) {
        self.bytes = bytes
        self.end = range.upperBound
        self.index = range.lowerBound
        let opened = step { scanner throws(JSONScanner.Failure) -> Bool in
            try scanner.expect(UInt8(ascii: "["))
            return scanner.consume(UInt8(ascii: "]"))
        }
        finished = try opened.get(JSONValue.missing)
    }

    /// The byte range of the next element, or `nil` after the last one.
    public mutating func next() throws(JSONValue.Missing) -> Range<Int>? {
        guard !finished else { return nil }
        let result = step { scanner throws(JSONScanner.Failure) -> (Range<Int>, Bool) in
            scanner.skipWhitespace()
            let start = scanner.index
            try scanner.skipValue()
            let element = start..<scanner.index
            if scanner.consume(UInt8(ascii: ",")) { return (element, false) }
            try scanner.expect(UInt8(ascii: "]"))
            return (element, true)
        }
        let (element, last) = try result.get(JSONValue.missing)
        finished = last
        return element
    }

    /// Runs `body` with a scanner positioned at `index` (absolute offsets: the scanner sees the buffer
    /// up to the array's end) and keeps its position.
    private mutating func step<T>(_ body: (inout JSONScanner) throws(JSONScanner.Failure) -> T)
        -> Result<T, JSONScanner.Failure>
    {
        let (end, start) = (self.end, self.index)
        let outcome = bytes.withUnsafeBytes { raw -> (Result<T, JSONScanner.Failure>, Int) in
            var scanner = JSONScanner(UnsafeRawBufferPointer(rebasing: raw[0..<end]))
            scanner.index = start
            do throws(JSONScanner.Failure) {
                return (.success(try body(&scanner)), scanner.index)
            } catch {
                return (.failure(error), scanner.index)
            }
        }
        index = outcome.1
        return outcome.0
    }
}

extension Result {
    /// `get()` with the failure converted to the caller's typed error.
    fileprivate func get<E: Error>(_ convert: (Failure) -> E) throws(E) -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let failure): throw convert(failure)
        }
    }
}

/// A strict JSON (RFC 8259) reader over bytes, for the intake's hot path.
///
/// Foundation's `JSONDecoder` with per-field checks decoded about 27,000 samples/s here, the whole
/// intake's bottleneck; this scanner reads exactly the grammar, allocates only for the strings it
/// returns, and reports errors with the byte offset.
struct JSONScanner {
    let bytes: UnsafeRawBufferPointer
    var index: Int

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.index = 0
    }

    struct Failure: Error {
        let message: String
        /// Where the grammar broke; `nil` for a well-formed value the caller does not accept.
        let offset: Int?
    }

    /// A grammar error at the current position.
    func fail(_ message: String) -> Failure { Failure(message: message, offset: index) }
    /// Well-formed JSON whose content is not acceptable (wrong type, unknown field).
    func invalid(_ message: String) -> Failure { Failure(message: message, offset: nil) }

    var atEnd: Bool { index >= bytes.count }
    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// Consumes `byte` after optional whitespace, or fails.
    mutating func expect(_ byte: UInt8) throws(Failure) {
        skipWhitespace()
        guard peek == byte else {
            throw fail(peek == nil ? "unexpected end of JSON" : "expected '\(Character(UnicodeScalar(byte)))'")
        }
        index += 1
    }

    /// Consumes `byte` after optional whitespace if it is next.
    mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        if peek == byte {
            index += 1
            return true
        }
        return false
    }

    enum Kind { case object, array, string, number, bool, null }

    /// The kind of the next value (after whitespace), without consuming it.
    mutating func nextKind() throws(Failure) -> Kind {
        skipWhitespace()
        guard let next = peek else { throw fail("unexpected end of JSON") }
        switch next {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        default: throw fail("invalid JSON value")
        }
    }

    mutating func readString() throws(Failure) -> String {
        try expect(UInt8(ascii: "\""))
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            index += 1
        }
        var out = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let c = bytes[index]
            index += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = peek else { throw fail("unexpected end of JSON") }
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try readHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard peek == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u")
                        else {
                            throw fail("unpaired surrogate in string")
                        }
                        index += 2
                        let low = try readHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate in string") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail("unpaired surrogate in string")
                    }
                    out.append(contentsOf: String(Character(UnicodeScalar(scalar)!)).utf8)
                default:
                    throw fail("invalid escape in string")
                }
            default:
                if c < 0x20 { throw fail("control character in string") }
                out.append(c)
            }
        }
        throw fail("unterminated string")
    }

    private mutating func readHex4() throws(Failure) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("unexpected end of JSON") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 87)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 55)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            index += 1
        }
        return v
    }

    /// A JSON number (the exact grammar: no leading zeros, no `NaN`, no `+`).
    mutating func readNumber() throws(Failure) -> Double {
        skipWhitespace()
        let start = index
        func digits() -> Int {
            let from = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index - from
        }
        if peek == UInt8(ascii: "-") { index += 1 }
        if peek == UInt8(ascii: "0") {
            index += 1
        } else if digits() == 0 {
            throw fail("invalid number")
        }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw fail("invalid number") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw fail("invalid number") }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw fail("invalid number") }
        return value
    }

    /// Skips one complete value of any kind, checking its grammar.
    mutating func skipValue(depth: Int = 0) throws(Failure) {
        guard depth < 64 else { throw fail("JSON nested too deeply") }
        switch try nextKind() {
        case .string: _ = try readString()
        case .number: _ = try readNumber()
        case .bool, .null:
            for word in ["true", "false", "null"] {
                let w = Array(word.utf8)
                if index + w.count <= bytes.count, zip(bytes[index..<(index + w.count)], w).allSatisfy({ $0 == $1 }) {
                    index += w.count
                    return
                }
            }
            throw fail("invalid JSON literal")
        case .array:
            index += 1
            if consume(UInt8(ascii: "]")) { return }
            repeat { try skipValue(depth: depth + 1) } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "]"))
        case .object:
            index += 1
            if consume(UInt8(ascii: "}")) { return }
            repeat {
                skipWhitespace()
                _ = try readString()
                try expect(UInt8(ascii: ":"))
                try skipValue(depth: depth + 1)
            } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"))
        }
    }

    /// Iterates an object's members: calls `member` with each key, positioned at its value, which the
    /// closure must consume. A key given twice is an error (RFC 8259 leaves it undefined; we refuse to
    /// guess which one was meant); `path` prefixes the key in that message (`source.`).
    mutating func readObject(
        path: String = "", _ member: (inout JSONScanner, String) throws(Failure) -> Void
    ) throws(Failure) {
        try expect(UInt8(ascii: "{"))
        if consume(UInt8(ascii: "}")) { return }
        var seen = [String]()
        repeat {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw fail("expected a field name") }
            let key = try readString()
            guard !seen.contains(key) else { throw invalid("field '\(path)\(key)' appears twice") }
            seen.append(key)
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
        } while consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"))
    }

    /// Reads any value into a ``JSONValue`` (for vendor payloads). Integers without a fraction or
    /// exponent that fit in 64 bits stay exact; a repeated key keeps its last value, as most parsers do
    /// (vendors' JSON is theirs to define).
    mutating func readValue(depth: Int = 0) throws(Failure) -> JSONValue {
        guard depth < 64 else { throw fail("JSON nested too deeply") }
        switch try nextKind() {
        case .string:
            return .string(try readString())
        case .number:
            skipWhitespace()
            let start = index
            let value = try readNumber()
            let text = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
            if !text.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }),
                let exact = Int64(String(decoding: text, as: UTF8.self))
            {
                return .int(exact)
            }
            return .double(value)
        case .bool, .null:
            for (word, value) in [("true", JSONValue.bool(true)), ("false", .bool(false)), ("null", .null)] {
                let w = Array(word.utf8)
                if index + w.count <= bytes.count, zip(bytes[index..<(index + w.count)], w).allSatisfy({ $0 == $1 }) {
                    index += w.count
                    return value
                }
            }
            throw fail("invalid JSON literal")
        case .array:
            index += 1
            var items = [JSONValue]()
            if consume(UInt8(ascii: "]")) { return .array(items) }
            repeat { items.append(try readValue(depth: depth + 1)) } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "]"))
            return .array(items)
        case .object:
            index += 1
            var members = [String: JSONValue]()
            if consume(UInt8(ascii: "}")) { return .object(members) }
            repeat {
                skipWhitespace()
                guard peek == UInt8(ascii: "\"") else { throw fail("expected a field name") }
                let key = try readString()
                try expect(UInt8(ascii: ":"))
                members[key] = try readValue(depth: depth + 1)
            } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"))
            return .object(members)
        }
    }
}

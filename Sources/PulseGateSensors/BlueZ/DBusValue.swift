/// One D-Bus value, read from or written to an sd-bus message. BlueZ's replies are deeply nested
/// (`a{oa{sa{sv}}}`), so the loop thread decodes every message into this tree at once and only
/// Sendable values cross into Swift concurrency; sd-bus messages never leave the loop thread.
indirect enum DBusValue: Sendable, Equatable {
    case byte(UInt8)
    case bool(Bool)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(String)
    case signature(String)
    /// A file descriptor owned by the message it came in; only its number is kept.
    case unixFD(Int32)
    /// `ay`, kept apart from ``array(_:_:)`` because every notification is one.
    case bytes([UInt8])
    /// An array with its element signature (needed to write an empty array).
    case array(String, [DBusValue])
    case dictEntry(DBusValue, DBusValue)
    case structure([DBusValue])
    case variant(DBusValue)

    /// The value's D-Bus type signature.
    var signature: String {
        switch self {
        case .byte: "y"
        case .bool: "b"
        case .int16: "n"
        case .uint16: "q"
        case .int32: "i"
        case .uint32: "u"
        case .int64: "x"
        case .uint64: "t"
        case .double: "d"
        case .string: "s"
        case .objectPath: "o"
        case .signature: "g"
        case .unixFD: "h"
        case .bytes: "ay"
        case .array(let element, _): "a" + element
        case .dictEntry(let key, let value): "{" + key.signature + value.signature + "}"
        case .structure(let fields): "(" + fields.map(\.signature).joined() + ")"
        case .variant: "v"
        }
    }

    // MARK: building

    /// `a{sv}` from string keys, the options dictionary BlueZ methods take.
    static func options(_ entries: [(String, DBusValue)]) -> DBusValue {
        .array("{sv}", entries.map { .dictEntry(.string($0.0), .variant($0.1)) })
    }

    /// `as`.
    static func strings(_ values: [String]) -> DBusValue {
        .array("s", values.map { .string($0) })
    }

    // MARK: reading (variants are looked through, so callers need not care how BlueZ wrapped a value)

    /// The value inside any number of variants.
    var unwrapped: DBusValue {
        if case .variant(let inner) = self { return inner.unwrapped }
        return self
    }

    /// A string, object path or signature.
    var string: String? {
        switch unwrapped {
        case .string(let s), .objectPath(let s), .signature(let s): s
        default: nil
        }
    }

    var bool: Bool? {
        if case .bool(let b) = unwrapped { return b }
        return nil
    }

    /// Any integer type, widened.
    var int: Int? {
        switch unwrapped {
        case .byte(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int64(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        default: nil
        }
    }

    /// `ay`, or an array of bytes written element by element.
    var bytes: [UInt8]? {
        switch unwrapped {
        case .bytes(let b): return b
        case .array("y", let items):
            var out = [UInt8]()
            for case .byte(let b) in items { out.append(b) }
            return out.count == items.count ? out : nil
        default: return nil
        }
    }

    /// The elements of an array (of any element type).
    var elements: [DBusValue]? {
        switch unwrapped {
        case .array(_, let items): items
        case .bytes(let b): b.map { .byte($0) }
        default: nil
        }
    }

    /// `as` or `ao` as strings.
    var strings: [String]? {
        guard let items = elements else { return nil }
        let out = items.compactMap(\.string)
        return out.count == items.count ? out : nil
    }

    /// A dictionary keyed by strings or object paths (`a{sv}`, `a{sa{sv}}`, `a{oa{sa{sv}}}`).
    var dictionary: [String: DBusValue]? {
        guard let items = elements else { return nil }
        var out = [String: DBusValue]()
        for item in items {
            guard case .dictEntry(let key, let value) = item, let name = key.string else { return nil }
            out[name] = value
        }
        return out
    }
}

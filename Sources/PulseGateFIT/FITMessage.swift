/// One data message, read in place: a view of the stream's bytes through the definition that was
/// current when the message was decoded. Nothing is copied or parsed until a field is asked for.
///
/// Accessors take field numbers (or the generated ``FITField`` constants) and return `nil` for a field
/// the definition lacks and for the base type's invalid value — the only way FIT says "absent" (zero is
/// a value). A field whose declared size is not a multiple of its base type's size is a byte array, as
/// the protocol says, so its numeric accessors return `nil` and ``bytes(_:)`` returns its bytes.
public struct FITMessage {
    let stream: [UInt8]
    let definition: FITDefinition
    /// Offset of the first content byte (after the record header).
    let content: Int

    /// Byte offset of the message's record header in the stream.
    public let offset: Int
    /// The message's time in FIT seconds (since 1989-12-31T00:00:00Z, or since device power-on when
    /// below 0x10000000): its `timestamp` field, else its compressed-timestamp header, else its
    /// `timestamp_16` resolved against the last full timestamp.
    public let timestamp: UInt32?
    /// Whether the time came from a compressed-timestamp record header.
    public let hasCompressedTimestamp: Bool

    /// The global message number (20 for record, …).
    public var global: UInt16 { definition.global }

    /// Whether the definition gives the message this field (its value may still be invalid).
    public func has(_ number: UInt8) -> Bool { definition.index[Int(number)] != 0 }

    /// Number of elements of the field (0 when absent). Strings count as one.
    public func count(_ number: UInt8) -> Int {
        guard let f = field(number) else { return 0 }
        return f.baseType == .string ? 1 : Int(f.size) / f.baseType.size
    }

    /// The element's bits, little-endian order, zero-extended; `nil` when absent or invalid.
    public func raw(_ number: UInt8, at element: Int = 0) -> UInt64? {
        Self.raw(stream, definition, content, number, at: element)
    }

    @inline(__always)
    static func raw(
        _ stream: [UInt8], _ definition: FITDefinition, _ content: Int, _ number: UInt8, at element: Int = 0
    ) -> UInt64? {
        let i = Int(definition.index[Int(number)])
        guard i != 0 else { return nil }
        let f = definition.fields[i - 1]
        let size = f.baseType.size
        guard f.baseType != .string, (element + 1) * size <= Int(f.size) else { return nil }
        let bits = load(stream, content + Int(f.offset) + element * size, size, bigEndian: definition.bigEndian)
        return f.baseType.isValid(bits) ? bits : nil
    }

    /// The element as the profile field's physical value (`stored / scale − offset`); `nil` when
    /// absent, invalid, or not numeric in this file (a byte array where the profile has a number).
    public func value(_ field: FITField, at element: Int = 0) -> Double? {
        guard let f = self.field(field.number) else { return nil }
        let type = f.baseType
        guard type != .string, type != .byte || field.baseType == .byte else { return nil }
        let size = type.size
        guard (element + 1) * size <= Int(f.size) else { return nil }
        let bits = Self.load(
            stream, content + Int(f.offset) + element * size, size, bigEndian: definition.bigEndian)
        guard type.isValid(bits) else { return nil }
        let v = type.numeric(bits)
        if field.scale == 1, field.offset == 0 { return v }
        return v / field.scale - field.offset
    }

    /// A string field's text: UTF-8 up to the first NUL, or to the field's end when the writer left the
    /// terminator out; `nil` when absent or empty.
    public func string(_ number: UInt8) -> String? {
        guard let f = field(number) else { return nil }
        return Self.string(stream, content + Int(f.offset), Int(f.size))
    }

    /// The field's bytes as stored (any base type); `nil` when absent.
    public func bytes(_ number: UInt8) -> ArraySlice<UInt8>? {
        guard let f = field(number) else { return nil }
        let start = content + Int(f.offset)
        return stream[start..<(start + Int(f.size))]
    }

    /// Number of developer fields in this message.
    public var developerFieldCount: Int { definition.developerFields.count }

    /// The developer field at `index` (definition order), read by its field description.
    public func developerField(_ index: Int) -> FITDeveloperField {
        let d = definition.developerFields[index]
        return FITDeveloperField(
            bytes: stream, start: content + Int(d.offset), size: Int(d.size), bigEndian: definition.bigEndian,
            number: d.number, developerDataIndex: d.developerDataIndex, description: d.description)
    }

    /// All developer fields (allocates; for tools, not for the per-record path).
    public var developerFields: [FITDeveloperField] {
        (0..<developerFieldCount).map(developerField)
    }

    @inline(__always)
    func field(_ number: UInt8) -> FITDefinition.Field? {
        let i = Int(definition.index[Int(number)])
        return i == 0 ? nil : definition.fields[i - 1]
    }

    /// One element's bits: an unaligned load of 1, 2, 4 or 8 bytes, byte-swapped for big endian.
    @inline(__always)
    static func load(_ bytes: [UInt8], _ at: Int, _ size: Int, bigEndian: Bool) -> UInt64 {
        precondition(at >= 0 && at + size <= bytes.count)
        return bytes.withUnsafeBytes { raw in
            let p = raw.baseAddress! + at
            switch size {
            case 1:
                return UInt64(p.load(as: UInt8.self))
            case 2:
                let v = p.loadUnaligned(as: UInt16.self)
                return UInt64(bigEndian ? UInt16(bigEndian: v) : UInt16(littleEndian: v))
            case 4:
                let v = p.loadUnaligned(as: UInt32.self)
                return UInt64(bigEndian ? UInt32(bigEndian: v) : UInt32(littleEndian: v))
            default:
                let v = p.loadUnaligned(as: UInt64.self)
                return bigEndian ? UInt64(bigEndian: v) : UInt64(littleEndian: v)
            }
        }
    }

    static func string(_ bytes: [UInt8], _ start: Int, _ size: Int) -> String? {
        var end = start
        while end < start + size, bytes[end] != 0 { end += 1 }
        guard end > start else { return nil }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}

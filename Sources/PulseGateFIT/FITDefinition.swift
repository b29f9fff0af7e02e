/// The layout a definition message gives one local message type: which fields, where, how wide.
///
/// Kept as flat arrays plus a 256-byte field-number index, so finding a field in a data message is one
/// load instead of a search. A class so a ``FITMessage`` holds it with one reference count instead of
/// one per array; the decoder replaces it (rather than mutating it) when a message still holds it,
/// and otherwise reuses its storage when a local type is redefined (some devices do it every few
/// messages). Its properties skip the runtime exclusivity check: only the decoder mutates them, between
/// messages, never while a field is being read.
final class FITDefinition {
    /// One field of the definition; `baseType` is already `.byte` when the size is not a multiple of
    /// the declared type's size, as the protocol asks.
    struct Field {
        var number: UInt8
        var size: UInt8
        var baseType: FITBaseType
        /// Offset of the field's first byte from the message's first content byte.
        var offset: UInt16
    }

    /// One developer field: its bytes and the description that says how to read them.
    struct DeveloperField {
        var number: UInt8
        var developerDataIndex: UInt8
        var size: UInt8
        var offset: UInt16
        /// `nil` when no field_description came before this definition; the bytes are then skipped.
        var description: FITFieldDescription?
    }

    @exclusivity(unchecked) var global: UInt16 = 0
    @exclusivity(unchecked) var bigEndian = false
    /// Content bytes of a data message of this type (developer data included), without the header.
    @exclusivity(unchecked) var size = 0
    @exclusivity(unchecked) var fields: [Field] = []
    @exclusivity(unchecked) var developerFields: [DeveloperField] = []
    /// Field number → index in `fields` plus one; 0 when the definition lacks the field.
    @exclusivity(unchecked) var index = [UInt8](repeating: 0, count: 256)
    /// The field number of `timestamp_16` when the message has one.
    @exclusivity(unchecked) var timestamp16: UInt8?

    init() {}

    /// Empties the layout, keeping the storage.
    func reset(global: UInt16, bigEndian: Bool) {
        for field in fields { index[Int(field.number)] = 0 }
        fields.removeAll(keepingCapacity: true)
        developerFields.removeAll(keepingCapacity: true)
        self.global = global
        self.bigEndian = bigEndian
        size = 0
        timestamp16 = FITProfile.timestamp16Field(message: global)
    }

    func append(number: UInt8, size: UInt8, typeByte: UInt8) {
        var type = FITBaseType(definitionByte: typeByte)
        if Int(size) % type.size != 0 { type = .byte }
        if index[Int(number)] == 0, fields.count < 255 {
            index[Int(number)] = UInt8(fields.count + 1)
        }
        fields.append(Field(number: number, size: size, baseType: type, offset: UInt16(self.size)))
        self.size += Int(size)
    }

    func appendDeveloper(
        number: UInt8, size: UInt8, developerDataIndex: UInt8, description: FITFieldDescription?
    ) {
        developerFields.append(
            DeveloperField(
                number: number, developerDataIndex: developerDataIndex, size: size, offset: UInt16(self.size),
                description: description))
        self.size += Int(size)
    }
}

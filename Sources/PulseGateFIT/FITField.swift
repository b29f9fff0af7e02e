/// One field of a profile message, as Garmin's profile describes it. The generated ``FITProfile`` holds
/// one constant per field so mapping code names fields (`FITProfile.Record.heartRate`) instead of
/// repeating numbers, scales and offsets.
///
/// Decoding uses the base type from the file's definition message (the protocol lets a file narrow or
/// widen a field); ``scale``, ``offset`` and ``components`` come from here.
public struct FITField: Sendable {
    public let number: UInt8
    public let name: String
    /// The profile's base type; a file may declare another one.
    public let baseType: FITBaseType
    /// The stored value is `(physical + offset) × scale`.
    public let scale: Double
    public let offset: Double
    public let units: String
    public let isArray: Bool
    /// Whether the profile accumulates this field across messages (it rolls over at its bit width).
    public let isAccumulated: Bool
    /// Fields packed into this one, in bit order (least significant first).
    public let components: [FITComponent]

    public init(
        number: UInt8, name: String, baseType: FITBaseType, scale: Double, offset: Double, units: String,
        isArray: Bool, isAccumulated: Bool, components: [FITComponent] = []
    ) {
        self.number = number
        self.name = name
        self.baseType = baseType
        self.scale = scale
        self.offset = offset
        self.units = units
        self.isArray = isArray
        self.isAccumulated = isAccumulated
        self.components = components
    }
}

/// A bit range of a field that expands into another field of the same message (compressed speed and
/// distance, the 12-bit event timestamps of `hr`).
public struct FITComponent: Sendable {
    /// The field number the bits expand into.
    public let target: UInt8
    public let bits: Int
    public let scale: Double
    public let offset: Double
    /// Whether the bits are a rolling counter to add up (`distance` in compressed speed/distance).
    public let accumulate: Bool

    public init(target: UInt8, bits: Int, scale: Double, offset: Double, accumulate: Bool) {
        self.target = target
        self.bits = bits
        self.scale = scale
        self.offset = offset
        self.accumulate = accumulate
    }
}

extension FITBaseType {
    /// The base type a definition's byte names; the low five bits are the type number, bit 7 only says
    /// whether it is endian-capable. Numbers the protocol does not define are read as bytes, so a newer
    /// base type costs that field, not the file.
    init(definitionByte byte: UInt8) {
        switch byte & 0x1F {
        case 0x00: self = .enumeration
        case 0x01: self = .sint8
        case 0x02: self = .uint8
        case 0x03: self = .sint16
        case 0x04: self = .uint16
        case 0x05: self = .sint32
        case 0x06: self = .uint32
        case 0x07: self = .string
        case 0x08: self = .float32
        case 0x09: self = .float64
        case 0x0A: self = .uint8z
        case 0x0B: self = .uint16z
        case 0x0C: self = .uint32z
        case 0x0E: self = .sint64
        case 0x0F: self = .uint64
        case 0x10: self = .uint64z
        default: self = .byte
        }
    }

    /// Whether an element with these bits has a value. Floats are invalid when all bits are set.
    @inline(__always)
    func isValid(_ bits: UInt64) -> Bool { bits != invalid }

    /// The element's numeric value: sign-extended, or reinterpreted for floats.
    @inline(__always)
    func numeric(_ bits: UInt64) -> Double {
        switch self {
        case .sint8: Double(Int8(truncatingIfNeeded: bits))
        case .sint16: Double(Int16(truncatingIfNeeded: bits))
        case .sint32: Double(Int32(truncatingIfNeeded: bits))
        case .sint64: Double(Int64(bitPattern: bits))
        case .float32: Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))
        case .float64: Double(bitPattern: bits)
        default: Double(bits)
        }
    }
}

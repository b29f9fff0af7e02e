/// The value of one developer field in one data message, read by its description.
public struct FITDeveloperField {
    let bytes: [UInt8]
    let start: Int
    let size: Int
    let bigEndian: Bool
    /// The field's number and application index as the definition gave them.
    public let number: UInt8
    public let developerDataIndex: UInt8
    public let description: FITFieldDescription?

    /// The base type used for reading: the description's, or bytes when the size does not fit it.
    var baseType: FITBaseType {
        guard let type = description?.baseType, size % type.size == 0 else { return .byte }
        return type
    }

    /// Number of elements (1 for a scalar).
    public var count: Int { size / baseType.size }

    /// The element with the description's scale and offset applied; `nil` when invalid or not numeric.
    public func value(at element: Int = 0) -> Double? {
        let type = baseType
        guard type != .string, type != .byte || description?.baseType == .byte, element < count else { return nil }
        let bits = FITMessage.load(bytes, start + element * type.size, type.size, bigEndian: bigEndian)
        guard type.isValid(bits) else { return nil }
        let scale = description?.scale ?? 1
        return type.numeric(bits) / (scale == 0 ? 1 : scale) - (description?.offset ?? 0)
    }

    /// The text of a string field, up to its first NUL or the field's end.
    public var string: String? {
        FITMessage.string(bytes, start, size)
    }

    /// The raw bytes.
    public var rawBytes: ArraySlice<UInt8> { bytes[start..<(start + size)] }
}

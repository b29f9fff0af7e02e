/// How to read one developer field, from the file's own `field_description` message: developer fields
/// carry no profile, so everything pulsegate knows about them is here.
public struct FITFieldDescription: Sendable, Equatable {
    /// Which `developer_data_id` (application) the field belongs to.
    public var developerDataIndex: UInt8
    /// The field's number within that application.
    public var number: UInt8
    public var baseType: FITBaseType
    public var name: String?
    public var units: String?
    /// `nil` when the description leaves it out (then 1).
    public var scale: Double?
    /// `nil` when the description leaves it out (then 0).
    public var offset: Double?
    /// The profile message and field this developer field stands in for, when the application says so
    /// (Stryd's running power: record, field 7).
    public var nativeMessage: UInt16?
    public var nativeField: UInt8?
    /// The application that declared the field, from `developer_data_id` (absent in some files).
    public var application: FITDeveloperApplication?

    public init(
        developerDataIndex: UInt8, number: UInt8, baseType: FITBaseType, name: String? = nil, units: String? = nil,
        scale: Double? = nil, offset: Double? = nil, nativeMessage: UInt16? = nil, nativeField: UInt8? = nil,
        application: FITDeveloperApplication? = nil
    ) {
        self.developerDataIndex = developerDataIndex
        self.number = number
        self.baseType = baseType
        self.name = name
        self.units = units
        self.scale = scale
        self.offset = offset
        self.nativeMessage = nativeMessage
        self.nativeField = nativeField
        self.application = application
    }
}

/// A `developer_data_id` message: who declared a set of developer fields.
public struct FITDeveloperApplication: Sendable, Equatable {
    public var developerDataIndex: UInt8
    /// 16 bytes (a UUID) when present; Wahoo ELEMNT BOLT files leave it out.
    public var applicationID: [UInt8]?
    public var manufacturer: UInt16?
    public var version: UInt32?
}

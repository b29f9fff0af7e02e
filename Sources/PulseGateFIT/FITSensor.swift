import PulseGateCore

/// A sensor the recording device was paired with, from `device_info` messages: a chest strap, a power
/// meter, a smart trainer, Di2 shifting. Records do not say which sensor measured which value, so
/// samples carry the recording device (`file_id`) as their source; sensors are kept apart for callers
/// that show or store the equipment (``FITSampleReader/sensors``).
///
/// Built-in sensors (`source_type` local: barometer, GPS, optical HR) belong to the recording device and
/// are left out; the creator's own `device_info` (index 0) gives the device's firmware instead.
public struct FITSensor: Sendable, Hashable {
    /// `device_info.device_index`: how the file refers to the sensor.
    public var deviceIndex: UInt8?
    /// How it is connected: `antplus`, `ant`, `bluetooth_low_energy`, `bluetooth`, `wifi`.
    public var connection: String?
    /// The profile's device type (`heart_rate`, `bike_power`, `fitness_equipment`, …) or its number.
    public var deviceType: String?
    public var manufacturer: String?
    /// `product_name`, else the Garmin product name, else the product number.
    public var product: String?
    public var serial: String?
    /// The ANT device number (pairing id).
    public var antDeviceNumber: UInt16?
    /// `software_version`, e.g. "4.30".
    public var softwareVersion: String?

    public init(deviceIndex: UInt8? = nil) { self.deviceIndex = deviceIndex }

    /// The sensor as a sample source device (ANT device number as address).
    public var device: SourceRef.Device {
        SourceRef.Device(
            manufacturer: manufacturer, model: product, serial: serial,
            address: antDeviceNumber.map { "ant:\($0)" }, firmware: softwareVersion)
    }
}

extension FITSensor {
    /// Merges what one `device_info` message says about this sensor; later messages fill gaps.
    mutating func update(from m: FITMessage) {
        typealias D = FITProfile.DeviceInfo
        let manufacturerID = m.raw(D.manufacturer.number).map { UInt16(truncatingIfNeeded: $0) }
        let connectionID = m.raw(D.sourceType.number)
        if let id = connectionID { connection = FITProfile.sourceTypeName(UInt16(truncatingIfNeeded: id)) }
        if let type = m.raw(D.deviceType.number) {
            deviceType = FITNames.deviceType(UInt16(truncatingIfNeeded: type), connection: connectionID)
        }
        if let id = manufacturerID { manufacturer = FITNames.manufacturer(id) }
        if let name = m.string(D.productName.number) ?? m.string(D.descriptor.number) {
            product = name
        } else if let id = m.raw(D.product.number), product == nil {
            product = FITNames.product(UInt16(truncatingIfNeeded: id), manufacturer: manufacturerID)
        }
        if let s = m.raw(D.serialNumber.number) { serial = String(s) }
        if let n = m.raw(D.antDeviceNumber.number) { antDeviceNumber = UInt16(truncatingIfNeeded: n) }
        if let v = m.value(D.softwareVersion) { softwareVersion = FITNames.version(v) }
    }
}

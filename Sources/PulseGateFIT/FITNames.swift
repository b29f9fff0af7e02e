/// Names for ids in `file_id` and `device_info`, from the generated profile tables.
enum FITNames {
    static func manufacturer(_ id: UInt16) -> String {
        FITProfile.manufacturerName(id) ?? String(id)
    }

    static func product(_ product: UInt16, manufacturer: UInt16?) -> String {
        if let manufacturer, FITProfile.usesGarminProduct(manufacturer: manufacturer),
            let name = FITProfile.garminProductName(product)
        {
            return name
        }
        return String(product)
    }

    /// `software_version` (scale 100) as the device shows it: 2.1 → "2.10".
    static func version(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let minor = hundredths % 100
        return "\(hundredths / 100).\(minor < 10 ? "0" : "")\(minor)"
    }

    static func deviceType(_ type: UInt16, connection: UInt64?) -> String {
        let name: String? =
            switch connection {
            case 1, nil: FITProfile.antplusDeviceTypeName(type)
            case 3: FITProfile.bleDeviceTypeName(type)
            case 5: FITProfile.localDeviceTypeName(type)
            default: nil
            }
        return name ?? String(type)
    }
}

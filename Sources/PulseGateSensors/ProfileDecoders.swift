/// The one registry of profile decoders: a profile name (as the CLI and the configuration spell
/// it) to a fresh decoder for one sensor.
public enum ProfileDecoders {
    /// The BLE GATT characteristics pulsegate decodes, one line each.
    public static let bleNames: [String] = [
        "ble:2a37",  // Heart Rate Measurement
        "ble:2a63",  // Cycling Power Measurement
        "ble:2a5b",  // CSC Measurement
        "ble:2a53",  // RSC Measurement
        "ble:2ad2",  // FTMS Indoor Bike Data
        "ble:2acd",  // FTMS Treadmill Data
        "ble:2a19",  // Battery Level
    ]

    /// Every profile name ``make(_:wheelCircumference:)`` accepts: BLE first, then ANT+
    /// (``antProfileNames``, kept with the ANT+ decoders).
    public static let names: [String] = bleNames + antProfileNames

    /// A fresh decoder for `profile`, or `nil` for a name outside ``names``.
    ///
    /// `wheelCircumference` (metres) is used by the decoders that derive speed from wheel
    /// revolutions; a value that is not positive and finite falls back to 2.096 m (700x23c).
    public static func make(_ profile: String, wheelCircumference: Double = 2.096) -> (any ProfileDecoder)? {
        let wheel = wheelCircumference.isFinite && wheelCircumference > 0 ? wheelCircumference : 2.096
        switch profile {
        case "ble:2a37": return HeartRateMeasurementDecoder()
        case "ble:2a63": return CyclingPowerDecoder(wheelCircumference: wheel)
        case "ble:2a5b": return CyclingSpeedCadenceDecoder(wheelCircumference: wheel)
        case "ble:2a53": return RunningSpeedCadenceDecoder()
        case "ble:2ad2": return IndoorBikeDataDecoder()
        case "ble:2acd": return TreadmillDataDecoder()
        case "ble:2a19": return BatteryLevelDecoder()
        default: return antDecoder(profile, wheelCircumference: wheel)
        }
    }
}

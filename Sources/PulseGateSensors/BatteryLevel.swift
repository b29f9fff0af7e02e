import PulseGateCore

/// Battery Level (0x2A19): one uint8, percent. Values over 100 and any other length are refused.
public struct BatteryLevelDecoder: ProfileDecoder {
    public let profile = "ble:2a19"

    public init() {}

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = ByteReader(payload, profile: profile)
        let level = try r.u8("battery level")
        try r.finish(reservedFlagsSet: false)
        guard level <= 100 else {
            throw DecodeError(profile: profile, "battery level \(level) is over 100 %", offset: 0)
        }
        return [.battery(Int(level))]
    }
}

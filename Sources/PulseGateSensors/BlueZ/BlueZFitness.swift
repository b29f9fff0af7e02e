import PulseGateCore

/// Which GATT services and characteristics the BlueZ backend cares about, as 16-bit SIG ids.
enum BlueZFitness {
    /// The services discovery is filtered on: Heart Rate, Cycling Power, Cycling Speed and Cadence,
    /// Running Speed and Cadence, Fitness Machine.
    static let services: [String] = ["180d", "1818", "1816", "1814", "1826"]

    static let batteryProfile = "ble:2a19"

    /// Characteristics streamed with StartNotify, in the order ``ProfileDecoders/bleNames`` lists them
    /// (Battery Level included: many straps notify it).
    static let streamed: [String] = ProfileDecoders.bleNames.map { String($0.dropFirst("ble:".count)) }

    /// The profiles a device advertising `services` is expected to offer, in registry order. Fitness
    /// Machine may carry either Indoor Bike or Treadmill Data; only the connection tells which.
    static func profiles(advertising services: Set<String>) -> [String] {
        var wanted = Set<String>()
        for service in services {
            switch service {
            case "180d": wanted.insert("ble:2a37")
            case "1818": wanted.insert("ble:2a63")
            case "1816": wanted.insert("ble:2a5b")
            case "1814": wanted.insert("ble:2a53")
            case "1826": wanted.formUnion(["ble:2ad2", "ble:2acd"])
            case "180f": wanted.insert(batteryProfile)
            default: break
            }
        }
        return ProfileDecoders.bleNames.filter(wanted.contains)
    }

    /// Device Information characteristics read once per connection.
    static let deviceInformation: [String] = ["2a29", "2a24", "2a25", "2a26"]

    /// Stores one Device Information string where it belongs.
    static func record(_ text: String, of characteristic: String, in device: inout SourceRef.Device) {
        switch characteristic {
        case "2a29": device.manufacturer = text
        case "2a24": device.model = text
        case "2a25": device.serial = text
        case "2a26": device.firmware = text
        default: break
        }
    }

    /// A Device Information value as text: UTF-8, without the NUL padding some devices send.
    static func text(_ bytes: [UInt8]) -> String? {
        let trimmed = bytes.prefix { $0 != 0 }
        let text = String(decoding: trimmed, as: UTF8.self).trimmingWhitespace
        return text.isEmpty ? nil : text
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}

import PulseGateCore

extension HCIBackend {
    /// The profile ``ProfileDecoders`` decodes for a characteristic, `ble:2a37` style, or `nil`.
    package static func profile(characteristic uuid: BluetoothUUID) -> String? {
        guard let short = uuid.short else { return nil }
        let name = "ble:\(hex4(short))"
        return ProfileDecoders.bleNames.contains(name) ? name : nil
    }

    /// The profiles an advertisement promises, from the services it names. Fitness Machine (0x1826)
    /// narrows to bike or treadmill data when its service data says which machine it is.
    package static func profiles(advertising data: AdvertisingData) -> [String] {
        var found: Set<String> = []
        for uuid in data.offeredServices {
            switch uuid.short {
            case 0x180D: found.insert("ble:2a37")
            case 0x1818: found.insert("ble:2a63")
            case 0x1816: found.insert("ble:2a5b")
            case 0x1814: found.insert("ble:2a53")
            case 0x180F: found.insert("ble:2a19")
            case 0x1826:
                // FTMS service data: flags (uint8), machine type (uint16): bit 0 treadmill, bit 5 indoor bike.
                if let d = data.serviceData.first(where: { $0.uuid == BluetoothUUID(0x1826) })?.data, d.count >= 3 {
                    let type = ATT.u16(d, 1)
                    if type & 0x0001 != 0 { found.insert("ble:2acd") }
                    if type & 0x0020 != 0 { found.insert("ble:2ad2") }
                } else {
                    found.formUnion(["ble:2ad2", "ble:2acd"])
                }
            default: break
            }
        }
        return ProfileDecoders.bleNames.filter(found.contains)
    }

    static func sensorID(_ address: LEAddress) -> SensorID {
        SensorID(transport: .ble, address: address.description)
    }

    /// What was heard from each address, advert and scan response kept apart so a changing payload
    /// replaces the previous one instead of piling up.
    struct HeardDevices {
        struct Device {
            var address: LEAddress
            var advertisement = AdvertisingData()
            var scanResponse = AdvertisingData()
            var rssi: Int?
            var connectable = false

            var data: AdvertisingData {
                var d = advertisement
                d.merge(scanResponse)
                return d
            }

            var advert: SensorAdvert {
                let d = data
                return SensorAdvert(
                    id: HCIBackend.sensorID(address), name: d.name, rssi: rssi,
                    profiles: HCIBackend.profiles(advertising: d), backend: "hci")
            }
        }

        private(set) var order: [LEAddress] = []
        private(set) var devices: [LEAddress: Device] = [:]

        @discardableResult
        mutating func add(_ report: LEAdvertisingReport) -> Device {
            var device =
                devices[report.address]
                ?? {
                    order.append(report.address)
                    return Device(address: report.address)
                }()
            if report.isScanResponse {
                device.scanResponse = report.data
            } else {
                device.advertisement = report.data
                device.connectable = report.isConnectable
            }
            if let rssi = report.rssi { device.rssi = rssi }
            devices[report.address] = device
            return device
        }

        var adverts: [SensorAdvert] { order.compactMap { devices[$0]?.advert } }
    }
}

/// An LE device address with the type a connection must name (a random static address connected as
/// public is never found — many straps use random static addresses).
public struct LEAddress: Sendable, Hashable, CustomStringConvertible {
    public enum AddressType: UInt8, Sendable {
        case `public` = 0x00
        case random = 0x01
    }

    /// As on the wire: least significant byte first.
    public var bytes: [UInt8]
    public var type: AddressType

    public init(bytes: [UInt8], type: AddressType) {
        precondition(bytes.count == 6, "an LE address has 6 bytes")
        self.bytes = bytes
        self.type = type
    }

    /// From `AA:BB:CC:DD:EE:FF` (most significant first, as people and BlueZ write it).
    public init?(_ text: String, type: AddressType) {
        let parts = text.split(separator: ":")
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for part in parts.reversed() {
            guard part.count == 2, let b = UInt8(part, radix: 16) else { return nil }
            out.append(b)
        }
        self.init(bytes: out, type: type)
    }

    /// `AA:BB:CC:DD:EE:FF`, upper case: the form ``SensorID`` uses for BLE.
    public var description: String {
        bytes.reversed().map { hex2($0).uppercased() }.joined(separator: ":")
    }
}

/// The AD structures of one advertisement or scan response (Core Supplement Part A), the fields a
/// sensor picker needs. Parsing is lenient like BlueZ's EIR parser: a structure that runs past the end
/// stops parsing and sets ``truncated``, and what came before it is kept.
public struct AdvertisingData: Sendable, Equatable {
    public struct ServiceData: Sendable, Equatable {
        public var uuid: BluetoothUUID
        public var data: [UInt8]

        public init(uuid: BluetoothUUID, data: [UInt8]) {
            self.uuid = uuid
            self.data = data
        }
    }

    public struct ManufacturerData: Sendable, Equatable {
        /// Bluetooth SIG company identifier.
        public var company: UInt16
        public var data: [UInt8]

        public init(company: UInt16, data: [UInt8]) {
            self.company = company
            self.data = data
        }
    }

    /// AD type 0x01.
    public var flags: UInt8?
    /// From incomplete/complete lists of 16-bit (0x02/0x03) and 128-bit (0x06/0x07) UUIDs.
    public var serviceUUIDs: [BluetoothUUID] = []
    /// AD type 0x09 (complete) or, when no complete name was sent, 0x08 (shortened).
    public var name: String?
    public var nameIsComplete = false
    /// AD type 0x0A, dBm.
    public var txPower: Int8?
    /// AD type 0x16 (16-bit service UUID + data).
    public var serviceData: [ServiceData] = []
    /// AD type 0xFF (company id + data).
    public var manufacturerData: [ManufacturerData] = []
    /// A structure claimed more bytes than were left.
    public var truncated = false

    public init() {}

    /// Parses `bytes` as `[length][type][data…]` structures; a zero length ends the data early (the
    /// padding some controllers send).
    public init(parsing bytes: [UInt8]) {
        var i = 0
        while i < bytes.count {
            let length = Int(bytes[i])
            if length == 0 { break }
            guard i + 1 + length <= bytes.count else {
                truncated = true
                break
            }
            let type = bytes[i + 1]
            let data = Array(bytes[(i + 2)..<(i + 1 + length)])
            apply(type: type, data: data)
            i += 1 + length
        }
    }

    private mutating func apply(type: UInt8, data: [UInt8]) {
        switch type {
        case 0x01:
            flags = data.first
        case 0x02, 0x03, 0x04, 0x05, 0x06, 0x07:
            // 0x04/0x05 carry 32-bit UUIDs, which no fitness profile uses: skipped, not misread.
            let width = type <= 0x03 ? 2 : type <= 0x05 ? 4 : 16
            guard width != 4 else { return }
            for offset in stride(from: 0, to: data.count - data.count % width, by: width) {
                if let uuid = BluetoothUUID(littleEndian: data[offset..<(offset + width)]), !serviceUUIDs.contains(uuid)
                {
                    serviceUUIDs.append(uuid)
                }
            }
        case 0x08, 0x09:
            let complete = type == 0x09
            guard complete || !nameIsComplete else { return }
            var raw = data
            while raw.last == 0 { raw.removeLast() }
            name = String(decoding: raw, as: UTF8.self)
            nameIsComplete = complete
        case 0x0A:
            txPower = data.first.map { Int8(bitPattern: $0) }
        case 0x16:
            guard data.count >= 2 else { return }
            serviceData.append(ServiceData(uuid: BluetoothUUID(ATT.u16(data, 0)), data: Array(data[2...])))
        case 0xFF:
            guard data.count >= 2 else { return }
            manufacturerData.append(ManufacturerData(company: ATT.u16(data, 0), data: Array(data[2...])))
        default:
            break
        }
    }

    /// Adds what a scan response told to what the advertisement told (names often come only in the
    /// scan response; the UUIDs only in the advertisement).
    public mutating func merge(_ other: AdvertisingData) {
        flags = flags ?? other.flags
        for uuid in other.serviceUUIDs where !serviceUUIDs.contains(uuid) { serviceUUIDs.append(uuid) }
        if let n = other.name, name == nil || (other.nameIsComplete && !nameIsComplete) {
            name = n
            nameIsComplete = other.nameIsComplete
        }
        txPower = txPower ?? other.txPower
        for d in other.serviceData where !serviceData.contains(d) { serviceData.append(d) }
        for d in other.manufacturerData where !manufacturerData.contains(d) { manufacturerData.append(d) }
    }

    /// Service UUIDs named anywhere: in the UUID lists or as the key of service data (FTMS machines
    /// often advertise 0x1826 only through its service data).
    public var offeredServices: [BluetoothUUID] {
        var out = serviceUUIDs
        for d in serviceData where !out.contains(d.uuid) { out.append(d.uuid) }
        return out
    }
}

/// One report of an HCI LE Advertising Report event.
public struct LEAdvertisingReport: Sendable, Equatable {
    /// ADV_IND 0x00, ADV_DIRECT_IND 0x01, ADV_SCAN_IND 0x02, ADV_NONCONN_IND 0x03, SCAN_RSP 0x04.
    public var eventType: UInt8
    public var address: LEAddress
    public var data: AdvertisingData
    /// dBm; `nil` when the controller reports 127 (not available).
    public var rssi: Int?

    public init(eventType: UInt8, address: LEAddress, data: AdvertisingData, rssi: Int?) {
        self.eventType = eventType
        self.address = address
        self.data = data
        self.rssi = rssi
    }

    /// Whether a connection may be made to the advertiser (ADV_IND, ADV_DIRECT_IND).
    public var isConnectable: Bool { eventType == 0x00 || eventType == 0x01 }
    public var isScanResponse: Bool { eventType == 0x04 }

    static let profile = "hci:le-advertising-report"

    /// The reports in one packet read from a raw HCI socket: `[0x04 event packet][0x3E LE Meta][length]
    /// [0x02 subevent][count]` then, per report, event type, address type, address (6), data length,
    /// data and RSSI (int8). Any other event gives `[]`; a packet shorter than it claims is refused.
    ///
    /// Reports are read one after another, as the Linux kernel's `hci_le_adv_report_evt` does (the
    /// specification's table reads like parallel arrays, but controllers send one report per event in
    /// practice, where both readings agree).
    public static func parse(packet: [UInt8]) throws(DecodeError) -> [LEAdvertisingReport] {
        var r = ByteReader(packet, profile: profile)
        guard try r.u8("packet type") == 0x04, try r.u8("event code") == 0x3E else { return [] }
        let length = Int(try r.u8("parameter length"))
        guard r.remaining >= length else {
            throw DecodeError(profile: profile, "parameter length \(length) but \(r.remaining) bytes", offset: 2)
        }
        guard length > 0, try r.u8("subevent") == 0x02 else { return [] }
        let count = Int(try r.u8("report count"))
        var reports: [LEAdvertisingReport] = []
        for _ in 0..<count {
            let eventType = try r.u8("event type")
            let addressType = try r.u8("address type")
            var address: [UInt8] = []
            for _ in 0..<6 { address.append(try r.u8("address")) }
            let dataLength = Int(try r.u8("data length"))
            guard dataLength <= 31 else {
                throw DecodeError(
                    profile: profile, "advertising data of \(dataLength) bytes (at most 31)", offset: r.index - 1)
            }
            var data: [UInt8] = []
            for _ in 0..<dataLength { data.append(try r.u8("advertising data")) }
            let rssi = Int8(bitPattern: try r.u8("rssi"))
            reports.append(
                LEAdvertisingReport(
                    eventType: eventType,
                    // 0x02/0x03 are resolved identities: public and random static as far as connecting goes.
                    address: LEAddress(bytes: address, type: addressType & 1 == 0 ? .public : .random),
                    data: AdvertisingData(parsing: data),
                    rssi: rssi == 127 ? nil : Int(rssi)))
        }
        return reports
    }
}

/// A primary service as Read By Group Type reports it.
public struct GATTService: Sendable, Equatable {
    public var uuid: BluetoothUUID
    public var start: UInt16
    public var end: UInt16

    public init(uuid: BluetoothUUID, start: UInt16, end: UInt16) {
        self.uuid = uuid
        self.start = start
        self.end = end
    }
}

/// A characteristic declaration, with the handle range its descriptors live in and, once found, its
/// Client Characteristic Configuration descriptor (the handle notifications are enabled through).
public struct GATTCharacteristic: Sendable, Equatable {
    /// The declaration's property bits (Core Vol 3 Part G 3.3.1.1).
    public struct Properties: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let read = Properties(rawValue: 0x02)
        public static let writeWithoutResponse = Properties(rawValue: 0x04)
        public static let write = Properties(rawValue: 0x08)
        public static let notify = Properties(rawValue: 0x10)
        public static let indicate = Properties(rawValue: 0x20)
    }

    public var uuid: BluetoothUUID
    public var declarationHandle: UInt16
    public var valueHandle: UInt16
    public var properties: Properties
    /// The last handle before the next declaration (or the service's end): descriptors sit in
    /// `valueHandle + 1 ... endHandle`.
    public var endHandle: UInt16
    public var cccdHandle: UInt16?

    public init(
        uuid: BluetoothUUID, declarationHandle: UInt16, valueHandle: UInt16, properties: Properties,
        endHandle: UInt16, cccdHandle: UInt16? = nil
    ) {
        self.uuid = uuid
        self.declarationHandle = declarationHandle
        self.valueHandle = valueHandle
        self.properties = properties
        self.endHandle = endHandle
        self.cccdHandle = cccdHandle
    }
}

/// A descriptor as Find Information reports it.
public struct GATTDescriptor: Sendable, Equatable {
    public var handle: UInt16
    public var uuid: BluetoothUUID
}

/// The peer's attribute table as far as a notification client needs it.
public struct GATTDatabase: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var service: GATTService
        public var characteristics: [GATTCharacteristic]
    }

    public var entries: [Entry]

    /// The first characteristic with `uuid`, in handle order.
    public func characteristic(_ uuid: BluetoothUUID) -> GATTCharacteristic? {
        for entry in entries {
            if let c = entry.characteristics.first(where: { $0.uuid == uuid }) { return c }
        }
        return nil
    }

    public var characteristics: [GATTCharacteristic] { entries.flatMap(\.characteristics) }
}

/// GATT client procedures (Core Vol 3 Part G 4) on top of ``ATTClient/request(_:)``: each discovery
/// walks the handle range page by page until Attribute Not Found or the range's end, and refuses a
/// page that does not advance, so a confused peer cannot hold us in a loop.
extension ATTClient {
    static let primaryServiceType: UInt16 = 0x2800
    static let characteristicType: UInt16 = 0x2803
    static let cccdType: UInt16 = 0x2902

    /// Offers ``receiveMTU`` and returns the effective MTU (the smaller of both). A peer that refuses
    /// the exchange (Request Not Supported) keeps the link at 23, which is not an error.
    @discardableResult
    public func exchangeMTU() async throws(ATTError) -> Int {
        let pdu = [ATT.exchangeMTURequest] + ATT.le16(UInt16(receiveMTU))
        do throws(ATTError) {
            let rsp = try await request(pdu)
            guard rsp.count == 3 else {
                throw ATTError(
                    .malformed, request: ATT.exchangeMTURequest, "Exchange MTU Response of \(rsp.count) bytes")
            }
            return agreeMTU(peer: Int(ATT.u16(rsp, 1)))
        } catch {
            if error.code == .errorResponse(ATT.ErrorCode.requestNotSupported) { return mtu }
            throw error
        }
    }

    /// Every primary service, by Read By Group Type on 0x2800 from handle 1.
    public func discoverPrimaryServices() async throws(ATTError) -> [GATTService] {
        var services: [GATTService] = []
        var start: UInt16 = 1
        while true {
            let pdu =
                [ATT.readByGroupTypeRequest] + ATT.le16(start) + ATT.le16(0xFFFF) + ATT.le16(Self.primaryServiceType)
            guard let rsp = try await discoveryRequest(pdu) else { break }
            let entries = try Self.entries(of: rsp, lengths: [6, 20], request: ATT.readByGroupTypeRequest)
            var last = start
            for entry in entries {
                let first = ATT.u16(entry, 0)
                let end = ATT.u16(entry, 2)
                guard first >= start, end >= first, let uuid = BluetoothUUID(littleEndian: entry[4...]) else {
                    throw ATTError(.malformed, request: ATT.readByGroupTypeRequest, "service range out of order")
                }
                services.append(GATTService(uuid: uuid, start: first, end: end))
                last = end
            }
            if last == 0xFFFF { break }
            start = last + 1
        }
        return services
    }

    /// The characteristics declared in `service`, by Read By Type on 0x2803, with their end handles.
    public func discoverCharacteristics(of service: GATTService) async throws(ATTError) -> [GATTCharacteristic] {
        var found: [GATTCharacteristic] = []
        var start = service.start
        while start <= service.end {
            let pdu =
                [ATT.readByTypeRequest] + ATT.le16(start) + ATT.le16(service.end) + ATT.le16(Self.characteristicType)
            guard let rsp = try await discoveryRequest(pdu) else { break }
            let entries = try Self.entries(of: rsp, lengths: [7, 21], request: ATT.readByTypeRequest)
            var last = start
            for entry in entries {
                let declaration = ATT.u16(entry, 0)
                let value = ATT.u16(entry, 3)
                guard declaration >= start, declaration <= service.end, value > declaration,
                    let uuid = BluetoothUUID(littleEndian: entry[5...])
                else {
                    throw ATTError(
                        .malformed, request: ATT.readByTypeRequest, "characteristic declaration out of range")
                }
                found.append(
                    GATTCharacteristic(
                        uuid: uuid, declarationHandle: declaration, valueHandle: value,
                        properties: .init(rawValue: entry[2]), endHandle: service.end))
                last = declaration
            }
            if last >= service.end { break }
            start = last + 1
        }
        for i in found.indices.dropLast() {
            found[i].endHandle = found[i + 1].declarationHandle - 1
        }
        return found
    }

    /// The descriptors in `first...last`, by Find Information.
    public func discoverDescriptors(from first: UInt16, to last: UInt16) async throws(ATTError) -> [GATTDescriptor] {
        var found: [GATTDescriptor] = []
        var start = first
        while start <= last {
            let pdu = [ATT.findInformationRequest] + ATT.le16(start) + ATT.le16(last)
            guard let rsp = try await discoveryRequest(pdu) else { break }
            guard rsp.count >= 2, rsp[1] == 1 || rsp[1] == 2 else {
                throw ATTError(.malformed, request: ATT.findInformationRequest, "unknown Find Information format")
            }
            let length = rsp[1] == 1 ? 4 : 18
            let data = Array(rsp[2...])
            guard !data.isEmpty, data.count % length == 0 else {
                throw ATTError(
                    .malformed, request: ATT.findInformationRequest, "Find Information Response of \(rsp.count) bytes")
            }
            var previous = start
            for offset in stride(from: 0, to: data.count, by: length) {
                let handle = ATT.u16(data, offset)
                guard handle >= previous, handle <= last,
                    let uuid = BluetoothUUID(littleEndian: data[(offset + 2)..<(offset + length)])
                else {
                    throw ATTError(.malformed, request: ATT.findInformationRequest, "descriptor handle out of range")
                }
                found.append(GATTDescriptor(handle: handle, uuid: uuid))
                previous = handle
            }
            if previous >= last { break }
            start = previous + 1
        }
        return found
    }

    /// Services, characteristics, and the CCCD of every characteristic that can notify or indicate.
    public func discoverDatabase() async throws(ATTError) -> GATTDatabase {
        var entries: [GATTDatabase.Entry] = []
        for service in try await discoverPrimaryServices() {
            var characteristics = try await discoverCharacteristics(of: service)
            for i in characteristics.indices {
                let c = characteristics[i]
                guard !c.properties.isDisjoint(with: [.notify, .indicate]), c.valueHandle < c.endHandle else {
                    continue
                }
                let descriptors = try await discoverDescriptors(from: c.valueHandle + 1, to: c.endHandle)
                characteristics[i].cccdHandle = descriptors.first { $0.uuid == BluetoothUUID(Self.cccdType) }?.handle
            }
            entries.append(.init(service: service, characteristics: characteristics))
        }
        return GATTDatabase(entries: entries)
    }

    /// Reads a value; one that fills the whole Read Response continues with Read Blob until a shorter
    /// part (or Attribute Not Long), so Device Information strings longer than MTU − 1 arrive whole.
    public func read(_ handle: UInt16) async throws(ATTError) -> [UInt8] {
        let rsp = try await request([ATT.readRequest] + ATT.le16(handle))
        var value = Array(rsp.dropFirst())
        let full = mtu - 1
        guard value.count >= full else { return value }
        while value.count < ATT.maximumValueLength {
            let part: [UInt8]
            do throws(ATTError) {
                part = Array(
                    try await request([ATT.readBlobRequest] + ATT.le16(handle) + ATT.le16(UInt16(value.count)))
                        .dropFirst())
            } catch {
                let ends: [ATTError.Code] = [
                    .errorResponse(ATT.ErrorCode.attributeNotLong), .errorResponse(ATT.ErrorCode.invalidOffset),
                ]
                if ends.contains(error.code) { break }
                throw error
            }
            value += part
            if part.count < full { break }
        }
        return Array(value.prefix(ATT.maximumValueLength))
    }

    /// Write Request: waits for the Write Response.
    public func write(_ handle: UInt16, _ value: [UInt8]) async throws(ATTError) {
        _ = try await request([ATT.writeRequest] + ATT.le16(handle) + value)
    }

    /// Writes 0x0001 (notifications) to the characteristic's CCCD, or 0x0002 when it can only indicate.
    public func enableNotifications(_ characteristic: GATTCharacteristic) async throws(ATTError) {
        guard let cccd = characteristic.cccdHandle else {
            throw ATTError(.malformed, request: ATT.writeRequest, "characteristic \(characteristic.uuid) has no CCCD")
        }
        let value: UInt16 = characteristic.properties.contains(.notify) ? 0x0001 : 0x0002
        try await write(cccd, ATT.le16(value))
    }

    /// A discovery request whose Attribute Not Found answer means "no more" (`nil`).
    private func discoveryRequest(_ pdu: [UInt8]) async throws(ATTError) -> [UInt8]? {
        do throws(ATTError) {
            return try await request(pdu)
        } catch {
            if error.isAttributeNotFound { return nil }
            throw error
        }
    }

    /// Splits a `[opcode][length][entry]…` response into its entries of one of `lengths` bytes.
    static func entries(of rsp: [UInt8], lengths: Set<Int>, request: UInt8) throws(ATTError) -> [[UInt8]] {
        guard rsp.count >= 2, lengths.contains(Int(rsp[1])) else {
            throw ATTError(.malformed, request: request, "unexpected entry length in a \(rsp.count)-byte response")
        }
        let length = Int(rsp[1])
        let data = rsp[2...]
        guard !data.isEmpty, data.count % length == 0 else {
            throw ATTError(.malformed, request: request, "response of \(rsp.count) bytes is not whole entries")
        }
        return stride(from: data.startIndex, to: data.endIndex, by: length).map { Array(data[$0..<($0 + length)]) }
    }
}

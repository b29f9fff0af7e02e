import PulseGateCore
import Testing

@testable import PulseGateFIT

/// One FIT protocol feature per test, on streams built byte by byte.
@Suite struct FITProtocolTests {
    static let t0 = fitSeconds("2024-05-01T10:00:00Z")

    /// record: timestamp, heart_rate, power, distance (1/100 m), speed (1/1000 m/s).
    static let recordFields: [(UInt8, UInt8, UInt8)] = [
        (253, 4, BT.uint32), (3, 1, BT.uint8), (7, 2, BT.uint16), (5, 4, BT.uint32), (6, 2, BT.uint16),
    ]

    static func record(
        _ t: UInt32, hr: UInt8 = 0xFF, power: UInt16 = 0xFFFF, distance: UInt32 = 0xFFFF_FFFF, speed: UInt16 = 0xFFFF
    ) -> [UInt8] {
        le32(t) + [hr] + le16(power) + le32(distance) + le16(speed)
    }

    static func oneRecordFile() -> FITBuilder {
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: recordFields)
        b.message(local: 0, record(t0, hr: 120, power: 250, distance: 1234, speed: 5678))
        return b
    }

    func messages(_ bytes: [UInt8]) throws(FITError) -> [FITMessage] {
        var d = FITDecoder(bytes: bytes)
        var out: [FITMessage] = []
        while let m = try d.next() { out.append(m) }
        return out
    }

    func error(_ bytes: [UInt8]) -> FITError? {
        do {
            _ = try messages(bytes)
            return nil
        } catch {
            return error
        }
    }

    @Test func crcIsCRC16ARC() {
        #expect(FITCRC.compute(Array("123456789".utf8), from: 0, to: 9) == 0xBB3D)
        // Slicing-by-8 agrees with the protocol document's nibble algorithm on every length and offset.
        func nibbles(_ bytes: ArraySlice<UInt8>) -> UInt16 {
            let table: [UInt16] = [
                0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
                0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400,
            ]
            var crc: UInt16 = 0
            for byte in bytes {
                var tmp = table[Int(crc & 0xF)]
                crc = (crc >> 4) & 0x0FFF
                crc = crc ^ tmp ^ table[Int(byte & 0xF)]
                tmp = table[Int(crc & 0xF)]
                crc = (crc >> 4) & 0x0FFF
                crc = crc ^ tmp ^ table[Int((byte >> 4) & 0xF)]
            }
            return crc
        }
        var generator = SystemRandomNumberGenerator()
        let data = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 7) {
                #expect(FITCRC.compute(data, from: start, to: end) == nibbles(data[start..<end]))
            }
        }
    }

    @Test func decodesARecordWithA14ByteHeader() throws {
        let ms = try messages(Self.oneRecordFile().file())
        let m = try #require(ms.first)
        #expect(ms.count == 1)
        #expect(m.global == 20)
        #expect(m.offset == 14 + 6 + 15)
        #expect(m.timestamp == Self.t0)
        typealias R = FITProfile.Record
        #expect(m.value(R.heartRate) == 120)
        #expect(m.value(R.power) == 250)
        #expect(m.value(R.distance) == 12.34)
        #expect(m.value(R.speed) == 5.678)
    }

    @Test func twelveByteHeaderHasNoCRC() throws {
        let ms = try messages(Self.oneRecordFile().file(headerSize: 12))
        #expect(ms.count == 1)
    }

    @Test func headerCRCZeroMeansNotComputed() throws {
        #expect(try messages(Self.oneRecordFile().file(headerCRC: .zero)).count == 1)
    }

    @Test func wrongHeaderCRCIsRejected() {
        let e = error(Self.oneRecordFile().file(headerCRC: .wrong))
        #expect(e?.reason == .badHeaderCRC)
        #expect(e?.offset == 0)
    }

    @Test func wrongFileCRCIsRejectedAtTheCRC() {
        let b = Self.oneRecordFile()
        let e = error(b.file(fileCRC: .wrong))
        #expect(e?.reason == .badFileCRC)
        #expect(e?.offset == 14 + b.data.count)
    }

    @Test func missingFileCRCIsTruncation() {
        let b = Self.oneRecordFile()
        let e = error(b.file(fileCRC: .missing))
        #expect(e?.reason == .truncated)
        #expect(e?.offset == 14 + b.data.count)
    }

    @Test func badSignatureAndHeaderSize() {
        var bytes = Self.oneRecordFile().file()
        bytes[9] = UInt8(ascii: "X")
        #expect(error(bytes)?.reason == .badHeader)
        bytes = Self.oneRecordFile().file()
        bytes[0] = 10
        #expect(error(bytes)?.reason == .badHeader)
    }

    @Test func emptyAndHeaderOnlyFilesAreRejected() {
        #expect(error([]) == FITError(.empty, at: 0, "the file is empty (0 bytes)"))
        let header = Array(Self.oneRecordFile().file().prefix(14))
        #expect(error(header)?.reason == .empty)
        #expect(error(Array(header.prefix(12)))?.reason == .truncated)
        // A complete file without messages decodes, but there is nothing to import.
        var r = reader(FITBuilder().file())
        #expect(throws: FITError.self) { try r.next(max: 10) }
    }

    @Test func truncationAnywhereNamesTheCutItem() {
        let bytes = Self.oneRecordFile().file()
        // Cut inside the definition (starts at 14), inside the record (starts at 35), before the CRC.
        for (cut, offset) in [(16, 14), (30, 14), (36, 35), (50, 50 - 0)] {
            let e = error(Array(bytes.prefix(cut)))
            #expect(e?.reason == .truncated, "cut at \(cut)")
            if cut < 50 { #expect(e?.offset == offset, "cut at \(cut)") }
        }
    }

    @Test func messageRunningPastTheDeclaredDataIsAnOverrun() {
        let b = Self.oneRecordFile()
        let e = error(b.file(dataSize: b.data.count - 3))
        #expect(e?.reason == .overrun)
        #expect(e?.offset == 35)
    }

    @Test func undefinedLocalMessage() {
        var b = Self.oneRecordFile()
        b.message(local: 3, [1, 2, 3])
        let e = error(b.file())
        #expect(e?.reason == .undefinedLocalMessage)
        #expect(e?.offset == 14 + 21 + 14)
    }

    @Test func badArchitectureByte() {
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: Self.recordFields)
        b.data[2] = 7
        #expect(error(b.file())?.reason == .badDefinition)
    }

    @Test func bigEndianDefinitions() throws {
        var b = FITBuilder()
        b.define(local: 0, global: 20, bigEndian: true, fields: Self.recordFields)
        b.message(local: 0, be32(Self.t0) + [99] + be16(300) + be32(5000) + be16(2500))
        // A little-endian local type in the same file.
        b.define(local: 1, global: 20, fields: Self.recordFields)
        b.message(local: 1, Self.record(Self.t0 + 1, hr: 98, power: 301))
        let ms = try messages(b.file())
        #expect(ms.map(\.global) == [20, 20])
        #expect(ms[0].timestamp == Self.t0)
        #expect(ms[0].value(FITProfile.Record.power) == 300)
        #expect(ms[0].value(FITProfile.Record.distance) == 50)
        #expect(ms[0].value(FITProfile.Record.speed) == 2.5)
        #expect(ms[1].value(FITProfile.Record.power) == 301)
    }

    @Test func invalidSentinelsMeanAbsentAndZeroIsAValue() throws {
        var b = FITBuilder()
        // record: heart_rate uint8, temperature sint8, power uint16, altitude uint16, position_lat sint32
        b.define(
            local: 0, global: 20,
            fields: [(253, 4, BT.uint32), (3, 1, BT.uint8), (13, 1, BT.sint8), (7, 2, BT.uint16), (0, 4, BT.sint32)])
        b.message(local: 0, le32(Self.t0) + [0xFF, 0x7F] + le16(0xFFFF) + le32(0x7FFF_FFFF))
        b.message(local: 0, le32(Self.t0 + 1) + [0, 0x80] + le16(0) + le32(0x8000_0000))
        // file_id serial_number is uint32z: 0 is invalid.
        b.define(local: 1, global: 0, fields: [(3, 4, BT.uint32z)])
        b.message(local: 1, le32(0))
        let ms = try messages(b.file())
        typealias R = FITProfile.Record
        #expect(ms[0].value(R.heartRate) == nil)
        #expect(ms[0].value(R.temperature) == nil)
        #expect(ms[0].value(R.power) == nil)
        #expect(ms[0].value(R.positionLat) == nil)
        #expect(ms[1].value(R.heartRate) == 0)
        #expect(ms[1].value(R.temperature) == -128)
        #expect(ms[1].value(R.power) == 0)
        #expect(ms[1].value(R.positionLat) == -2_147_483_648)
        #expect(ms[2].raw(FITProfile.FileID.serialNumber.number) == nil)
        #expect(ms[0].value(R.cadence) == nil)  // not in the definition at all
    }

    @Test func floatFieldsAndTheirInvalidValue() throws {
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 4, BT.float32)])
        b.message(local: 0, le32(Self.t0) + le32(Float(72.5).bitPattern))
        b.message(local: 0, le32(Self.t0) + le32(0xFFFF_FFFF))
        let ms = try messages(b.file())
        #expect(ms[0].value(FITProfile.Record.heartRate) == 72.5)
        #expect(ms[1].value(FITProfile.Record.heartRate) == nil)
    }

    /// COROS writes a uint32 field one byte wide: the protocol reads it as bytes; the rest decodes.
    @Test func sizesThatAreNotAMultipleOfTheBaseTypeAreBytes() throws {
        var b = FITBuilder()
        b.define(
            local: 0, global: 20, fields: [(253, 4, BT.uint32), (7, 3, BT.uint16), (5, 1, BT.uint32), (3, 1, BT.uint8)])
        b.message(local: 0, le32(Self.t0) + [1, 2, 3] + [9] + [150])
        let m = try #require(try messages(b.file()).first)
        typealias R = FITProfile.Record
        #expect(m.value(R.power) == nil)
        #expect(m.value(R.distance) == nil)
        #expect(m.bytes(R.power.number).map(Array.init) == [1, 2, 3])
        #expect(m.bytes(R.distance.number).map(Array.init) == [9])
        #expect(m.value(R.heartRate) == 150)
    }

    @Test func stringsWithAndWithoutTerminator() throws {
        var b = FITBuilder()
        b.define(local: 0, global: 0, fields: [(8, 6, BT.string)])
        b.message(local: 0, Array("EDGE53".utf8))
        b.message(local: 0, Array("AB".utf8) + [0, 0x43, 0x44, 0])
        b.message(local: 0, [0, 0, 0, 0, 0, 0])
        b.message(local: 0, [0xE4, 0xB8, 0xAD, 0xE6, 0x96, 0x87])  // "中文"
        let ms = try messages(b.file())
        let name = FITProfile.FileID.productName.number
        #expect(ms.map { $0.string(name) } == ["EDGE53", "AB", nil, "中文"])
    }

    @Test func chainedFilesDecodeAsOneSequenceEachStartingAfresh() throws {
        let first = Self.oneRecordFile().file()
        var second = FITBuilder()
        second.define(local: 0, global: 20, fields: Self.recordFields)
        second.message(local: 0, Self.record(Self.t0 + 60, hr: 130))
        let bytes = first + second.file(headerSize: 12)
        var d = FITDecoder(bytes: bytes)
        var hr: [Double?] = []
        while let m = try d.next() { hr.append(m.value(FITProfile.Record.heartRate)) }
        #expect(hr == [120, 130])
        #expect(d.fileCount == 2)
        // Definitions do not carry over into the next file.
        var reuse = FITBuilder()
        reuse.message(local: 0, Self.record(Self.t0 + 60))
        let e = error(first + reuse.file())
        #expect(e?.reason == .undefinedLocalMessage)
        #expect(e?.offset == first.count + 14)
    }

    @Test func secondFileDamageKeepsTheFirst() throws {
        let first = Self.oneRecordFile().file()
        let notAHeader: [UInt8] = [14, 0x20, 0, 0, 5, 0, 0, 0] + Array(".FXT".utf8) + [0, 0, 1, 2, 3, 4, 5]
        var r = reader(first + notAHeader, salvage: true)
        let samples = try readAll(&r)
        #expect(samples.map(\.metric.name) == ["heart_rate", "power", "speed"])
        #expect(r.stoppedAt?.reason == .badHeader)
        #expect(r.stoppedAt?.offset == first.count)
    }

    @Test func unknownMessagesAndFieldsAreSkipped() throws {
        var b = FITBuilder()
        b.define(local: 0, global: 0xFF01, fields: [(1, 7, BT.byte), (2, 2, BT.uint16), (200, 1, 0x1F)])
        b.message(local: 0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        b.define(local: 1, global: 20, fields: Self.recordFields + [(250, 2, BT.uint16)])
        b.message(local: 1, Self.record(Self.t0, hr: 77) + le16(1))
        let ms = try messages(b.file())
        #expect(ms.map(\.global) == [0xFF01, 20])
        #expect(ms[0].bytes(200).map(Array.init) == [10])
        #expect(ms[1].value(FITProfile.Record.heartRate) == 77)
    }
}

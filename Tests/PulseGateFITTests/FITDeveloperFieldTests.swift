import PulseGateCore
import Testing

@testable import PulseGateFIT

/// Developer fields carry no profile: they are read by the file's own field_description.
@Suite struct FITDeveloperFieldTests {
    static let t0 = fitSeconds("2024-05-01T10:00:00Z")
    static let appID: [UInt8] = Array(0..<16)

    /// developer_data_id 0, then a description: number, base type, name, units, scale, offset, and
    /// optionally the record field it stands in for.
    static func describe(
        _ b: inout FITBuilder, number: UInt8, type: UInt8, name: String, units: String, scale: UInt8 = 0xFF,
        offset: Int8 = 0x7F, native: UInt8 = 0xFF
    ) {
        b.define(
            local: 14, global: 206,
            fields: [
                (0, 1, BT.uint8), (1, 1, BT.uint8), (2, 1, BT.uint8), (3, 16, BT.string), (8, 8, BT.string),
                (6, 1, BT.uint8), (7, 1, BT.sint8), (14, 2, BT.uint16), (15, 1, BT.uint8),
            ])
        let nameBytes = Array(name.utf8.prefix(16)) + [UInt8](repeating: 0, count: 16 - min(16, name.utf8.count))
        let unitBytes = Array(units.utf8.prefix(8)) + [UInt8](repeating: 0, count: 8 - min(8, units.utf8.count))
        b.message(
            local: 14,
            [0, number, type] + nameBytes + unitBytes + [scale, UInt8(bitPattern: offset)]
                + le16(native == 0xFF ? 0xFFFF : 20) + [native])
    }

    static func application(_ b: inout FITBuilder) {
        b.define(local: 15, global: 207, fields: [(1, 16, BT.byte), (3, 1, BT.uint8), (2, 2, BT.uint16)])
        b.message(local: 15, appID + [0] + le16(95))
    }

    @Test func developerFieldsAreReadByTheirDescription() throws {
        var b = FITBuilder()
        Self.application(&b)
        Self.describe(&b, number: 1, type: BT.uint16, name: "Form Power", units: "W", scale: 10, offset: 5)
        Self.describe(&b, number: 2, type: BT.sint8, name: "Doughnuts", units: "d")
        Self.describe(&b, number: 3, type: BT.string, name: "Note", units: "")
        Self.describe(&b, number: 4, type: BT.float32, name: "Stiffness", units: "kN/m")
        b.define(
            local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8)],
            developer: [(1, 2, 0), (2, 1, 0), (3, 5, 0), (4, 4, 0), (9, 2, 0)])
        b.message(
            local: 0,
            le32(Self.t0) + [140] + le16(1234) + [0xFE] + Array("hello".utf8) + le32(Float(9.5).bitPattern) + [1, 2])
        var d = FITDecoder(bytes: b.file())
        var record: FITMessage?
        while let m = try d.next() {
            if m.global == 20 { record = m }
        }
        let m = try #require(record)
        #expect(m.value(FITProfile.Record.heartRate) == 140)
        #expect(m.developerFieldCount == 5)
        let form = m.developerField(0)
        #expect(form.description?.name == "Form Power")
        #expect(form.description?.units == "W")
        #expect(form.description?.application?.applicationID == Self.appID)
        #expect(form.description?.application?.manufacturer == 95)
        #expect(form.value() == 1234.0 / 10 - 5)
        #expect(m.developerField(1).value() == -2)
        #expect(m.developerField(2).string == "hello")
        #expect(m.developerField(3).value() == 9.5)
        // No description for field 9: it is skipped, not guessed.
        #expect(m.developerField(4).description == nil)
        #expect(m.developerField(4).value() == nil)
        #expect(d.fieldDescriptions.count == 4)
    }

    @Test func developerFieldsInBigEndianMessages() throws {
        var b = FITBuilder()
        Self.describe(&b, number: 1, type: BT.uint16, name: "Power2", units: "W")
        b.define(local: 0, global: 20, bigEndian: true, fields: [(253, 4, BT.uint32)], developer: [(1, 2, 0)])
        b.message(local: 0, be32(Self.t0) + be16(300))
        var d = FITDecoder(bytes: b.file())
        var value: Double?
        while let m = try d.next() {
            if m.global == 20 { value = m.developerField(0).value() }
        }
        #expect(value == 300)
    }

    /// A developer field that says it is record power fills power when the device wrote none.
    @Test func nativeStandInsFillEmptyRecordFields() throws {
        var b = FITBuilder()
        Self.describe(&b, number: 0, type: BT.uint16, name: "Power", units: "Watts", native: 7)
        Self.describe(&b, number: 1, type: BT.uint8, name: "Heart", units: "bpm", native: 3)
        b.define(
            local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8)], developer: [(0, 2, 0), (1, 1, 0)])
        b.message(local: 0, le32(Self.t0) + [150] + le16(250) + [99])
        var r = reader(b.file())
        let samples = try readAll(&r)
        #expect(samples.map(\.metric) == [.heartRate, .power])
        #expect(samples.map(\.value.number) == [150, 250])  // the native heart rate wins
    }

    @Test func corpusDeveloperFields() throws {
        var d = FITDecoder(bytes: try Fixture.bytes("stryd-developer-types.fit"))
        var names: [String] = []
        var formPower: Double?
        while let m = try d.next() {
            if m.global == 20, formPower == nil, m.developerFieldCount > 0 {
                for f in m.developerFields where f.description?.name == "Form Power" { formPower = f.value() }
            }
        }
        names = d.fieldDescriptions.compactMap(\.name)
        #expect(names == ["Form Power", "Leg Spring Stiffness", "Speed", "Distance"])
        #expect(d.fieldDescriptions.map(\.baseType) == [.uint16, .float32, .float32, .uint32])
        #expect(formPower == 0)
    }
}

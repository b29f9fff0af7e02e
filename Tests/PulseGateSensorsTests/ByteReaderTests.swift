import PulseGateSensors
import Testing

@Suite struct ByteReaderTests {
    @Test func readsLittleEndianAndNamesTheTruncatedField() throws {
        var r = ByteReader([0x34, 0x12, 0xFF, 0xFF, 0x01, 0x02, 0x03, 0x78, 0x56, 0x34, 0x12], profile: "test")
        #expect(try r.u16("a") == 0x1234)
        #expect(try r.s16("b") == -1)
        #expect(try r.u24("c") == 0x030201)
        #expect(try r.u32("d") == 0x1234_5678)
        #expect(r.remaining == 0)
        do {
            _ = try r.u8("energy expended")
            Issue.record("read past the end")
        } catch {
            #expect(error.reason.contains("energy expended") && error.offset == 11)
        }
    }

    @Test func hexAsInstallersPasteIt() {
        #expect(Hex.bytes("16 48 00 04") == [0x16, 0x48, 0x00, 0x04])
        #expect(Hex.bytes("16480004") == [0x16, 0x48, 0x00, 0x04])
        #expect(Hex.bytes("0x16,0x48:00-04") == [0x16, 0x48, 0x00, 0x04])
        #expect(Hex.bytes("164") == nil)
        #expect(Hex.bytes("zz") == nil)
    }
}

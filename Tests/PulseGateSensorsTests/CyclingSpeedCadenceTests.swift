import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct CyclingSpeedCadenceTests {
    func cadence(_ rpm: Double) -> Reading { .measurement(.cadence, rpm, unit: "/min", quality: .derived) }
    func speed(_ mps: Double) -> Reading { .measurement(.speed, mps, unit: "m/s", quality: .derived) }

    func crank(_ revs: UInt16, _ time: UInt16) -> [UInt8] { [0x02] + BLE.le16(revs) + BLE.le16(time) }
    func wheel(_ revs: UInt32, _ time: UInt16) -> [UInt8] { [0x01] + BLE.le32(revs) + BLE.le16(time) }

    // Vectors from sensor-vectors.md §3 (CSC1–CSC7): valid, and a first payload derives nothing.
    @Test func vectorsFromSection3AreAccepted() {
        for hex in [
            "03 FF FF FF FF 03 3F FF 07 E7 0F",  // CSC1
            "01 39 30 00 00 E8 03",  // CSC2
            "02 59 01 D0 07",  // CSC3
            "03 39 30 00 00 E8 03 59 01 D0 07",  // CSC4
            "03 40 E2 01 00 00 28 41 01 00 08",  // CSC6
            "01 50 C3 00 00 00 14",  // CSC7
        ] {
            var decoder = CyclingSpeedCadenceDecoder()
            #expect(BLE.decode(&decoder, hex) == [], "\(hex)")
        }
    }

    @Test func csc5NineBytesOfElevenIsRefused() {
        var decoder = CyclingSpeedCadenceDecoder()
        let error = BLE.refusal(&decoder, BLE.bytes("03 14 00 00 00 00 00 0A 00 00"))
        #expect(error?.reason.contains("crank") == true)
    }

    @Test func csc1CountersAreReadInTheRightPlaces() {
        // CSC1: wheel 4294967295 at 16131, crank 2047 at 4071 (1/1024 s both). One second later.
        var decoder = CyclingSpeedCadenceDecoder()
        _ = BLE.decode(&decoder, "03 FF FF FF FF 03 3F FF 07 E7 0F")
        let next = [0x03] + BLE.le32(2) + BLE.le16(16131 + 1024) + BLE.le16(2048) + BLE.le16(4071 + 1024)
        #expect(BLE.decode(&decoder, next, at: 1000) == [speed(3 * 2.096), cadence(60)])
    }

    // Nordic's stateful sequences SEQ1–SEQ3 (§3), wheel circumference 2340 mm.
    @Test func nordicSequences() {
        var seq1 = CyclingSpeedCadenceDecoder(wheelCircumference: 2.34)
        #expect(BLE.decode(&seq1, "01 0A 00 00 00 00 00") == [])
        #expect(BLE.decode(&seq1, "01 14 00 00 00 00 04", at: 1000) == [speed(10 * 2.34)])

        var seq2 = CyclingSpeedCadenceDecoder(wheelCircumference: 2.34)
        #expect(BLE.decode(&seq2, "02 0A 00 00 00") == [])
        #expect(BLE.decode(&seq2, "02 0B 00 00 04", at: 1000) == [cadence(60)])

        var seq3 = CyclingSpeedCadenceDecoder(wheelCircumference: 2.34)
        #expect(BLE.decode(&seq3, "03 14 00 00 00 00 00 0A 00 00 00") == [])
        #expect(BLE.decode(&seq3, "03 1E 00 00 00 00 04 0B 00 00 04", at: 1000) == [speed(10 * 2.34), cadence(60)])
    }

    @Test func rolloverOfCrankAndWheel() {
        // CAD2 (§8): (0xFFFF, 0xFC00) → (0x0001, 0x0400) → 60 rpm.
        var decoder = CyclingSpeedCadenceDecoder()
        _ = BLE.decode(&decoder, crank(0xFFFF, 0xFC00))
        #expect(BLE.decode(&decoder, crank(0x0001, 0x0400), at: 2000) == [cadence(60)])
        // CAD1 (§8): (2047, 4071) → (2048, 5095) → 60 rpm.
        var cad1 = CyclingSpeedCadenceDecoder()
        _ = BLE.decode(&cad1, crank(2047, 4071))
        #expect(BLE.decode(&cad1, crank(2048, 5095), at: 1000) == [cadence(60)])
        // Wheel: uint32 revs wrap, time at 1/1024 s (not CPS's 1/2048).
        var wheels = CyclingSpeedCadenceDecoder(wheelCircumference: 2.0)
        _ = BLE.decode(&wheels, wheel(0xFFFF_FFFE, 0xFE00))
        #expect(BLE.decode(&wheels, wheel(3, 0x0200), at: 1000) == [speed(10)])
    }

    @Test func coastingThenTimeout() {
        var decoder = CyclingSpeedCadenceDecoder(wheelCircumference: 2.0)
        let both = { (w: UInt32, wt: UInt16, c: UInt16, ct: UInt16) -> [UInt8] in
            [0x03] + BLE.le32(w) + BLE.le16(wt) + BLE.le16(c) + BLE.le16(ct)
        }
        _ = BLE.decode(&decoder, both(100, 0, 10, 0))
        #expect(BLE.decode(&decoder, both(105, 1024, 11, 1024), at: 1000) == [speed(10), cadence(60)])
        // The wheel still turns, the crank coasts.
        #expect(BLE.decode(&decoder, both(110, 2048, 11, 1024), at: 2000) == [speed(10), cadence(60)])
        #expect(BLE.decode(&decoder, both(115, 3072, 11, 1024), at: 4000) == [speed(10), cadence(0)])
        // Both stopped.
        #expect(BLE.decode(&decoder, both(115, 3072, 11, 1024), at: 7000) == [speed(0), cadence(0)])
    }

    @Test func aRefusedPayloadLeavesTheCountersAlone() {
        var decoder = CyclingSpeedCadenceDecoder(wheelCircumference: 2.0)
        _ = BLE.decode(&decoder, [0x03] + BLE.le32(100) + BLE.le16(0) + BLE.le16(10) + BLE.le16(0))
        // Wheel data complete, crank data cut: the wheel data must not be taken.
        let cut = [0x03] + BLE.le32(105) + BLE.le16(1024) + BLE.le16(11)
        BLE.refusal(&decoder, cut, at: 500)
        #expect(BLE.decode(&decoder, wheel(105, 1024), at: 1000) == [speed(10)])
    }

    @Test func trailingAndReservedBits() {
        var decoder = CyclingSpeedCadenceDecoder()
        BLE.refusal(&decoder, BLE.bytes("02 59 01 D0 07 00"))
        BLE.refusal(&decoder, BLE.bytes("00 00"))
        #expect(BLE.decode(&decoder, "00") == [])
        #expect(BLE.decode(&decoder, "06 59 01 D0 07 00") == [])  // bit 2 reserved: extra bytes tolerated
    }

    @Test func truncationAtEveryLength() {
        let make = { CyclingSpeedCadenceDecoder() }
        BLE.checkTruncation(make, BLE.bytes("03 39 30 00 00 E8 03 59 01 D0 07"))
        BLE.checkTruncation(make, BLE.bytes("01 50 C3 00 00 00 14"))
        BLE.checkTruncation(make, BLE.bytes("02 59 01 D0 07"))
    }

    @Test func garbageNeverCrashes() {
        var decoder = CyclingSpeedCadenceDecoder()
        #expect(BLE.feedGarbage(&decoder, seed: 0x2A5B) > 0)
    }
}

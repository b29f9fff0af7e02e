import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct CyclingPowerTests {
    func power(_ watts: Double) -> Reading { .measurement(.power, watts, unit: "W") }
    func cadence(_ rpm: Double) -> Reading { .measurement(.cadence, rpm, unit: "/min", quality: .derived) }
    func speed(_ mps: Double) -> Reading { .measurement(.speed, mps, unit: "m/s", quality: .derived) }

    /// A payload with crank data only (flags 0x0020).
    func crank(_ revs: UInt16, _ time: UInt16, power: Int16 = 200) -> [UInt8] {
        BLE.le16(0x0020) + BLE.le16(UInt16(bitPattern: power)) + BLE.le16(revs) + BLE.le16(time)
    }

    /// A payload with wheel data only (flags 0x0010).
    func wheel(_ revs: UInt32, _ time: UInt16) -> [UInt8] {
        BLE.le16(0x0010) + BLE.le16(150) + BLE.le32(revs) + BLE.le16(time)
    }

    /// Every flag bit 0–12 set, each field with a distinct value, wheel and crank as given.
    func allFlags(wheel: UInt32, wheelTime: UInt16, crank: UInt16, crankTime: UInt16) -> [UInt8] {
        BLE.le16(0x1FFF) + BLE.le16(321)  // flags, power
            + [0x64]  // balance
            + BLE.le16(0x1111)  // accumulated torque
            + BLE.le32(wheel) + BLE.le16(wheelTime)
            + BLE.le16(crank) + BLE.le16(crankTime)
            + BLE.le16(0x2222) + BLE.le16(0x3333)  // extreme force max, min
            + BLE.le16(0x4444) + BLE.le16(0x5555)  // extreme torque max, min
            + [0x66, 0x77, 0x88]  // extreme angles
            + BLE.le16(0x0099) + BLE.le16(0x00AA)  // top, bottom dead spot
            + BLE.le16(0x00BB)  // accumulated energy
    }

    // Vectors from sensor-vectors.md §2 (CP1–CP8). The first payload of a decoder derives nothing.
    @Test func vectorsFromSection2() {
        let vectors: [(String, Double)] = [
            ("00 00 D2 04", 1234),  // CP1
            ("30 00 D2 04 FF FF FF FF 03 3F FF 07 E7 0F", 1234),  // CP2
            ("00 00 FA 00", 250),  // CP3
            ("01 00 2C 01 64", 300),  // CP4
            ("00 08 40 01 0A 00", 320),  // CP5
            ("10 00 4B 01 39 30 00 00 00 08", 331),  // CP6
            ("20 00 70 01 90 01 00 04", 368),  // CP7
            ("31 08 94 01 6E 39 30 00 00 00 10 90 01 00 08 15 00", 404),  // CP8
        ]
        for (hex, watts) in vectors {
            var decoder = CyclingPowerDecoder()
            #expect(BLE.decode(&decoder, hex) == [power(watts)], "\(hex)")
        }
    }

    @Test func cp2CountersAreReadInTheRightPlaces() {
        // CP2 says crank (2047, 4071): CAD1 (§8) continues it to (2048, 5095) → 60 rpm; and the wheel
        // counter 4294967295 at 16131 rolls over to 1 at 16131 + 2048 → 2 revs in 1 s.
        var decoder = CyclingPowerDecoder()
        _ = BLE.decode(&decoder, "30 00 D2 04 FF FF FF FF 03 3F FF 07 E7 0F")
        let next =
            BLE.le16(0x0030) + BLE.le16(1234) + BLE.le32(1) + BLE.le16(16131 + 2048) + BLE.le16(2048)
            + BLE.le16(5095)
        #expect(BLE.decode(&decoder, next, at: 1000) == [power(1234), cadence(60), speed(2 * 2.096)])
    }

    @Test func cp8ThenOneSecondLater() {
        // CP8 (§2): wheel 12345 at 4096/2048 s, crank 400 at 2048/1024 s. One second later: +5 wheel
        // revs (10 m/s on a 2 m wheel) and +2 crank revs (120 rpm).
        var decoder = CyclingPowerDecoder(wheelCircumference: 2.0)
        _ = BLE.decode(&decoder, "31 08 94 01 6E 39 30 00 00 00 10 90 01 00 08 15 00")
        let next =
            BLE.le16(0x0831) + BLE.le16(404) + [0x6E] + BLE.le32(12350) + BLE.le16(6144) + BLE.le16(402)
            + BLE.le16(3072) + BLE.le16(21)
        #expect(BLE.decode(&decoder, next, at: 1000) == [power(404), cadence(120), speed(10)])
    }

    @Test func allFlagsAreReadInSpecificationOrder() {
        // If any optional field were read out of order or with the wrong size, the counters would be
        // misplaced and the derived values wrong (or the payload refused for trailing bytes).
        var decoder = CyclingPowerDecoder()
        let first = allFlags(wheel: 1000, wheelTime: 10_000, crank: 50, crankTime: 20_000)
        #expect(first.count == 34)
        #expect(BLE.decode(&decoder, first) == [power(321)])
        let second = allFlags(wheel: 1004, wheelTime: 10_000 + 4096, crank: 51, crankTime: 20_000 + 512)
        #expect(BLE.decode(&decoder, second, at: 1000) == [power(321), cadence(120), speed(4 * 2.096 / 2)])
    }

    @Test func cadenceRolloverOfBothCounters() {
        // CAD2 (§8): (0xFFFF, 0xFC00) → (0x0001, 0x0400): Δrevs 2, Δt 2048 → 60 rpm.
        var decoder = CyclingPowerDecoder()
        #expect(BLE.decode(&decoder, crank(0xFFFF, 0xFC00)) == [power(200)])
        #expect(BLE.decode(&decoder, crank(0x0001, 0x0400), at: 2000) == [power(200), cadence(60)])
        #expect(BLE.decode(&decoder, crank(0x0003, 0x0400 &+ 1024), at: 3000) == [power(200), cadence(120)])
        // Only the event time wraps.
        var timeOnly = CyclingPowerDecoder()
        _ = BLE.decode(&timeOnly, crank(100, 0xFE00))
        #expect(BLE.decode(&timeOnly, crank(101, 0x0200), at: 1000) == [power(200), cadence(60)])
    }

    @Test func coastingKeepsTheLastCadenceThenReadsZero() {
        // CAD3 (§8): an unchanged event time is no new revolution. No division by zero; the last value
        // stands until 3 s without a new event, then 0.
        var decoder = CyclingPowerDecoder()
        _ = BLE.decode(&decoder, crank(10, 1024))
        #expect(BLE.decode(&decoder, crank(11, 2048), at: 1000) == [power(200), cadence(60)])
        #expect(BLE.decode(&decoder, crank(11, 2048), at: 2000) == [power(200), cadence(60)])
        #expect(BLE.decode(&decoder, crank(11, 2048), at: 3900) == [power(200), cadence(60)])
        #expect(BLE.decode(&decoder, crank(11, 2048), at: 4000) == [power(200), cadence(0)])
        #expect(BLE.decode(&decoder, crank(11, 2048), at: 9000) == [power(200), cadence(0)])
        // Pedalling again: one rev in 0.5 s of event time.
        #expect(BLE.decode(&decoder, crank(12, 2560), at: 9500) == [power(200), cadence(120)])
    }

    @Test func coastingBeforeAnyCadenceReportsNothingUntilTheTimeout() {
        var decoder = CyclingPowerDecoder()
        _ = BLE.decode(&decoder, crank(10, 1024))
        #expect(BLE.decode(&decoder, crank(10, 1024), at: 1000) == [power(200)])
        #expect(BLE.decode(&decoder, crank(10, 1024), at: 3000) == [power(200), cadence(0)])
    }

    @Test func aLongGapOrAnImplausibleJumpRebaselines() {
        var decoder = CyclingPowerDecoder()
        _ = BLE.decode(&decoder, crank(10, 1024))
        // 70 s later: the 64 s event clock may have wrapped; nothing is derived, the new point is the base.
        #expect(BLE.decode(&decoder, crank(80, 3048), at: 70_000) == [power(200)])
        #expect(BLE.decode(&decoder, crank(81, 4072), at: 71_000) == [power(200), cadence(60)])
        // A counter reset (revs jump backwards → Δ near 65536) is not reported as cadence.
        #expect(BLE.decode(&decoder, crank(0, 5096), at: 72_000) == [power(200)])
        #expect(BLE.decode(&decoder, crank(1, 6120), at: 73_000) == [power(200), cadence(60)])
    }

    @Test func wheelSpeedUsesTheConfiguredCircumferenceAndWraps() {
        // CP6 (§2): 12345 revs at 2048/2048 s; +10 revs one second later.
        var decoder = CyclingPowerDecoder(wheelCircumference: 2.0)
        _ = BLE.decode(&decoder, "10 00 4B 01 39 30 00 00 00 08")
        #expect(BLE.decode(&decoder, wheel(12355, 4096), at: 1000) == [power(150), speed(20)])
        var rolling = CyclingPowerDecoder()
        _ = BLE.decode(&rolling, wheel(0xFFFF_FFFF, 0xF800))
        #expect(BLE.decode(&rolling, wheel(4, 0x0000), at: 1000) == [power(150), speed(5 * 2.096)])
        #expect(BLE.decode(&rolling, wheel(4, 0x0000), at: 2000) == [power(150), speed(5 * 2.096)])
        #expect(BLE.decode(&rolling, wheel(4, 0x0000), at: 4000) == [power(150), speed(0)])
    }

    @Test func aRefusedPayloadLeavesTheCountersAlone() {
        var decoder = CyclingPowerDecoder()
        _ = BLE.decode(&decoder, crank(10, 1024))
        // Crank data complete, accumulated energy cut short: refused, and the crank data not taken.
        let cut = BLE.le16(0x0820) + BLE.le16(200) + BLE.le16(11) + BLE.le16(2048) + [0x01]
        BLE.refusal(&decoder, cut, at: 500)
        for length in 0..<cut.count { BLE.refusal(&decoder, Array(cut.prefix(length)), at: 500) }
        // Had (11, 2048) been committed, this would be coasting with no cadence yet.
        #expect(BLE.decode(&decoder, crank(11, 2048), at: 1000) == [power(200), cadence(60)])
    }

    @Test func trailingAndReservedBits() {
        var decoder = CyclingPowerDecoder()
        BLE.refusal(&decoder, BLE.bytes("00 00 FA 00 01"))
        #expect(BLE.decode(&decoder, "00 20 FA 00 01") == [power(250)])  // bit 13 reserved
        #expect(BLE.decode(&decoder, "00 10 FA 00") == [power(250)])  // bit 12: offset compensation, no field
        #expect(BLE.decode(&decoder, "00 00 F6 FF") == [power(-10)])  // sint16
    }

    @Test func truncationAtEveryLength() {
        let make = { CyclingPowerDecoder() }
        BLE.checkTruncation(make, BLE.bytes("31 08 94 01 6E 39 30 00 00 00 10 90 01 00 08 15 00"))
        BLE.checkTruncation(make, BLE.bytes("30 00 D2 04 FF FF FF FF 03 3F FF 07 E7 0F"))
        BLE.checkTruncation(make, allFlags(wheel: 1, wheelTime: 2, crank: 3, crankTime: 4))
        BLE.checkTruncation(make, BLE.bytes("00 00 D2 04"))
    }

    @Test func garbageNeverCrashes() {
        var decoder = CyclingPowerDecoder()
        #expect(BLE.feedGarbage(&decoder, seed: 0x2A63) > 0)
    }
}

import PulseGateCore
import PulseGateSensors
import Testing

/// `ant:power`. A10.3 and A10.4 from /work/shared/sensor-vectors.md section 10, copied.
@Suite struct ANTPowerTests {
    @Test func a10_3_standardPowerWithEventAndAccumulatedRollover() throws {
        var d = ANTPowerDecoder()
        let m1 = try d.decode(antPage("10 FE FF 5A 00 FF C8 00"), at: antTime)
        #expect(m1 == [.measurement(.power, 200, unit: "W"), .measurement(.cadence, 90, unit: "/min")])
        #expect(d.averagePower == nil)
        let m2 = try d.decode(antPage("10 01 FF 5B 58 01 D2 00"), at: antTime)
        #expect(m2 == [.measurement(.power, 210, unit: "W"), .measurement(.cadence, 91, unit: "/min")])
        // Δevent 3, Δaccumulated 600 → 200 W.
        #expect(d.averagePower == 200)
    }

    @Test func standardPowerInvalidCadenceAndNoNewEvent() throws {
        var d = ANTPowerDecoder()
        #expect(try d.decode(antPage("10 05 FF FF 10 00 64 00"), at: antTime) == [.measurement(.power, 100, unit: "W")])
        _ = try d.decode(antPage("10 05 FF FF 10 00 64 00"), at: antTime)
        #expect(d.averagePower == nil)
    }

    @Test func a10_4_crankTorque() throws {
        var d = ANTPowerDecoder()
        #expect(try d.decode(antPage("12 0A 0A 5A 00 10 00 20"), at: antTime) == [])
        let m2 = try d.decode(antPage("12 0B 0B 5A 55 15 80 22"), at: antTime)
        try expectCrankTorque(m2)
    }

    @Test func crankTorqueRollsOverEventPeriodAndTorque() throws {
        var d = ANTPowerDecoder()
        _ = try d.decode(antPage("12 FF FF 5A 00 FF 00 FF"), at: antTime)
        // event 255 → 0, period 0xFF00 → 0x0455 (Δ1365), torque 0xFF00 → 0x0180 (Δ640).
        try expectCrankTorque(try d.decode(antPage("12 00 00 5A 55 04 80 01"), at: antTime))
    }

    private func expectCrankTorque(_ readings: [Reading]) throws {
        let power = try #require(antValues(readings, .power).first)
        let cadence = try #require(antValues(readings, .cadence).first)
        #expect(abs(power.value - 128 * Double.pi * 640 / 1365) < 1e-9)
        #expect(abs(power.value - 188.5) < 0.05)
        #expect(abs(cadence.value - 90.02) < 0.01)
        #expect(power.quality == .derived && cadence.quality == .derived)
        #expect(readings.count == 2)
    }

    @Test func torquePagesWithoutANewEventOrPeriodGiveNothing() throws {
        var d = ANTPowerDecoder()
        _ = try d.decode(antPage("12 0A 0A 5A 00 10 00 20"), at: antTime)
        // Same event count (coasting).
        #expect(try d.decode(antPage("12 0A 0A 5A 00 10 00 20"), at: antTime) == [])
        // Event advanced but the period did not: no division by zero.
        #expect(try d.decode(antPage("12 0B 0B 5A 00 10 80 22"), at: antTime) == [])
    }

    @Test func wheelTorque() throws {
        var d = ANTPowerDecoder()
        #expect(try d.decode(antPage("11 01 01 FF 00 10 00 20"), at: antTime) == [])
        let readings = try d.decode(antPage("11 02 02 55 00 18 00 24"), at: antTime)
        // Δperiod 2048, Δtorque 1024 → 128π·1024/2048 = 64π W; byte 3 = instantaneous cadence 85.
        #expect(antValues(readings, .cadence).map(\.value) == [85])
        let power = try #require(antValues(readings, .power).first)
        #expect(abs(power.value - 64 * Double.pi) < 1e-9 && power.quality == .derived)
    }

    @Test func interleavedPagesKeepSeparateState() throws {
        var d = ANTPowerDecoder()
        _ = try d.decode(antPage("12 0A 0A 5A 00 10 00 20"), at: antTime)
        _ = try d.decode(antPage("10 FE FF 5A 00 FF C8 00"), at: antTime)
        try expectCrankTorque(try d.decode(antPage("12 0B 0B 5A 55 15 80 22"), at: antTime))
        _ = try d.decode(antPage("10 01 FF 5B 58 01 D2 00"), at: antTime)
        #expect(d.averagePower == 200)
    }

    /// DERIVED: slope 25.0 N·m/Hz, offset 500 Hz; Δtime 1500/2000 s, Δticks 600 → 800 Hz − 500 = 300 Hz
    /// → 12 N·m; 1 event in 0.75 s = 80 rpm; P = 12·80·π/30 = 32π W.
    @Test func crankTorqueFrequencyBigEndian() throws {
        var d = ANTPowerDecoder(ctfOffset: 500)
        #expect(try d.decode(antPage("20 01 00 FA 10 00 20 00"), at: antTime) == [])
        let readings = try d.decode(antPage("20 02 00 FA 15 DC 22 58"), at: antTime)
        #expect(antValues(readings, .cadence).map(\.value) == [80])
        let power = try #require(antValues(readings, .power).first)
        #expect(abs(power.value - 32 * Double.pi) < 1e-9 && power.quality == .derived)
    }

    @Test func crankTorqueFrequencyRollsOverAndLearnsTheOffsetFromCalibration() throws {
        var d = ANTPowerDecoder()
        #expect(d.ctfOffset == nil)
        _ = try d.decode(antPage("20 FF 00 FA FF 00 FF 00"), at: antTime)
        // Without an offset: cadence only. event 255 → 0, time 0xFF00 → 0x04DC (Δ1500), ticks 0xFF00 → 0x0158 (Δ600).
        let before = try d.decode(antPage("20 00 00 FA 04 DC 01 58"), at: antTime)
        #expect(antValues(before, .cadence).map(\.value) == [80] && antValues(before, .power).isEmpty)
        // Calibration response: id 0x10, CTF id 0x01, offset 500 (0x01F4) big-endian in bytes 6–7.
        #expect(try d.decode(antPage("01 10 01 FF FF FF 01 F4"), at: antTime) == [])
        #expect(d.ctfOffset == 500)
        let after = try d.decode(antPage("20 01 00 FA 0A B8 03 B0"), at: antTime)
        let power = try #require(antValues(after, .power).first)
        #expect(abs(power.value - 32 * Double.pi) < 1e-9)
        // Torque below the offset gives 0 W, not negative power.
        let low = try d.decode(antPage("20 02 00 FA 10 94 04 D8"), at: antTime)
        #expect(antValues(low, .power).map(\.value) == [0])
    }

    @Test func otherPagesAreAcceptedAndYieldNothing() throws {
        var d = ANTPowerDecoder()
        for page in [
            "13 01 FF FF FF FF FF FF", "50 FF FF 01 0F 00 85 83", "52 FF FF 00 00 00 00 33", "01 AC 00 00 00 00 00 00",
        ] {
            #expect(try d.decode(antPage(page), at: antTime) == [])
        }
        #expect(d.ctfOffset == nil)
    }
}

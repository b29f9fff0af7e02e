import PulseGateCore
import PulseGateSensors
import Testing

/// `ant:speed-cadence`, `ant:speed`, `ant:cadence`. A10.5 from /work/shared/sensor-vectors.md
/// section 10, copied.
@Suite struct ANTSpeedCadenceTests {
    @Test func a10_5_combined() throws {
        var d = ANTSpeedCadenceDecoder(wheelCircumference: 2.1)
        #expect(try d.decode(antPage("00 04 0A 00 00 04 14 00"), at: antTime) == [])
        let readings = try d.decode(antPage("00 08 0B 00 00 08 16 00"), at: antTime)
        #expect(antValues(readings, .cadence).map(\.value) == [60])
        let speed = try #require(antValues(readings, .speed).first)
        #expect(abs(speed.value - 4.2) < 1e-12 && abs(speed.value * 3.6 - 15.12) < 1e-9)
        #expect(speed.quality == .derived)
    }

    @Test func combinedRollsOverTimesAndCounts() throws {
        var d = ANTSpeedCadenceDecoder()
        _ = try d.decode(antPage("00 FC FF FF 00 FE FE FF"), at: antTime)
        // crank: time 0xFC00 → 0x0000 (Δ1024), revs 0xFFFF → 0x0001 (Δ2) → 120 rpm.
        // wheel: time 0xFE00 → 0x0200 (Δ1024), revs 0xFFFE → 0x0002 (Δ4) → 4·2.096 m/s.
        let readings = try d.decode(antPage("00 00 01 00 00 02 02 00"), at: antTime)
        #expect(antValues(readings, .cadence).map(\.value) == [120])
        #expect(antValues(readings, .speed).map(\.value) == [4 * 2.096])
    }

    @Test func equalEventTimesMeanNoNewRevolution() throws {
        var d = ANTSpeedCadenceDecoder()
        _ = try d.decode(antPage("00 04 0A 00 00 04 14 00"), at: antTime)
        #expect(try d.decode(antPage("00 04 0A 00 00 04 14 00"), at: antTime) == [])
        // Only the wheel moved.
        let readings = try d.decode(antPage("00 04 0A 00 00 08 15 00"), at: antTime)
        #expect(antValues(readings, .cadence).isEmpty && antValues(readings, .speed).count == 1)
    }

    @Test func speedOnly() throws {
        var d = ANTSpeedDecoder()
        #expect(try d.decode(antPage("00 FF FF FF 00 04 14 00"), at: antTime) == [])
        // Toggle bit and another page: bytes 4–7 are the same fields.
        let readings = try d.decode(antPage("81 10 00 00 00 08 19 00"), at: antTime)
        #expect(readings == [.measurement(.speed, 5 * 2.096, unit: "m/s", quality: .derived)])
        #expect(try d.decode(antPage("81 10 00 00 00 08 19 00"), at: antTime) == [])
        // Rollover: time 0x0800 → 0x0400 is Δ0xFC00 = 63 s; revs 0x0019 → 0x0018 is Δ65535.
        // The arithmetic wraps, it does not trap.
        _ = try d.decode(antPage("00 FF FF FF 00 04 18 00"), at: antTime)
    }

    @Test func cadenceOnlyWithRollover() throws {
        var d = ANTCadenceDecoder()
        _ = try d.decode(antPage("00 FF FF FF 00 FA FE FF"), at: antTime)
        // time 0xFA00 → 0x0200 (Δ2048 = 2 s), revs 0xFFFE → 0x0001 (Δ3) → 90 rpm.
        let readings = try d.decode(antPage("03 01 02 03 00 02 01 00"), at: antTime)
        #expect(readings == [.measurement(.cadence, 90, unit: "/min", quality: .derived)])
    }

    @Test func factoryNamesEveryProfile() throws {
        #expect(antProfileNames == ["ant:hrm", "ant:power", "ant:speed-cadence", "ant:speed", "ant:cadence"])
        for name in antProfileNames {
            #expect(antDecoder(name, wheelCircumference: 2.096)?.profile == name)
        }
        #expect(antDecoder("ble:2a37", wheelCircumference: 2.096) == nil)
        var speed = try #require(antDecoder("ant:speed", wheelCircumference: 2.0))
        _ = try speed.decode(antPage("00 00 00 00 00 04 00 00"), at: antTime)
        #expect(
            try speed.decode(antPage("00 00 00 00 00 08 01 00"), at: antTime) == [
                .measurement(.speed, 2.0, unit: "m/s", quality: .derived)
            ])
        // A non-positive circumference falls back to 2.096 m.
        var fallback = try #require(antDecoder("ant:speed-cadence", wheelCircumference: 0))
        _ = try fallback.decode(antPage("00 00 00 00 00 04 00 00"), at: antTime)
        #expect(
            try fallback.decode(antPage("00 00 00 00 00 08 01 00"), at: antTime) == [
                .measurement(.speed, 2.096, unit: "m/s", quality: .derived)
            ])
        #expect(antProfileName(deviceType: 11) == "ant:power" && antProfileName(deviceType: 0x80 | 123) == "ant:speed")
        #expect(antProfileName(deviceType: 17) == nil)
    }
}

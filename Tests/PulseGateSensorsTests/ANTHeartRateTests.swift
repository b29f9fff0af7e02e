import PulseGateCore
import PulseGateSensors
import Testing

/// `ant:hrm`. Page vectors from /work/shared/sensor-vectors.md section 10 (A10.1, A10.2), copied.
@Suite struct ANTHeartRateTests {
    @Test func a10_1_page0HeartRateThenRRAcrossPayloads() throws {
        var d = ANTHeartRateDecoder()
        let first = try d.decode(antPage("00 FF FF FF 00 10 2A 48"), at: antTime)
        #expect(first == [.measurement(.heartRate, 72, unit: "/min")])
        let second = try d.decode(antPage("00 FF FF FF 55 13 2B 48"), at: antTime)
        #expect(
            second == [
                .measurement(.heartRate, 72, unit: "/min"),
                .measurement(.rrInterval, 853.0 * 1000 / 1024, unit: "ms", quality: .derived),
            ])
        // The same beat broadcast again: no second RR.
        #expect(
            try d.decode(antPage("80 FF FF FF 55 13 2B 48"), at: antTime) == [
                .measurement(.heartRate, 72, unit: "/min")
            ])
    }

    @Test func a10_2_page4GivesRRFromOnePayload() throws {
        var d = ANTHeartRateDecoder()
        let readings = try d.decode(antPage("04 FF 00 10 55 13 2B 48"), at: antTime)
        #expect(
            readings == [
                .measurement(.heartRate, 72, unit: "/min"),
                .measurement(.rrInterval, 853.0 * 1000 / 1024, unit: "ms"),
            ])
        // Toggle bit set: still page 4; same beat count: no repeat.
        #expect(try d.decode(antPage("84 FF 00 10 55 13 2B 48"), at: antTime).count == 1)
        // The toggle bit is not part of the page number: a fresh decoder reads 0x84 as page 4.
        var toggled = ANTHeartRateDecoder()
        #expect(
            try toggled.decode(antPage("84 FF 00 10 55 13 2B 48"), at: antTime).last
                == .measurement(.rrInterval, 853.0 * 1000 / 1024, unit: "ms"))
        #expect(try toggled.decode(antPage("87 55 00 03 55 13 2B 48"), at: antTime).last == .battery(85))
    }

    @Test func page4StillGivesRRAfterMissedBeats() throws {
        var d = ANTHeartRateDecoder()
        _ = try d.decode(antPage("04 FF 00 0C 00 10 2A 48"), at: antTime)
        let readings = try d.decode(antPage("04 FF 00 14 00 18 2C 48"), at: antTime)
        #expect(readings.last == .measurement(.rrInterval, 1000, unit: "ms"))
    }

    @Test func noRRWhenTheCountJumpsOnAPageWithoutThePreviousBeat() throws {
        var d = ANTHeartRateDecoder()
        _ = try d.decode(antPage("00 FF FF FF 00 10 2A 48"), at: antTime)
        let readings = try d.decode(antPage("00 FF FF FF 00 18 2C 48"), at: antTime)
        #expect(readings == [.measurement(.heartRate, 72, unit: "/min")])
    }

    @Test func beatCountAndEventTimeRollOver() throws {
        var d = ANTHeartRateDecoder()
        _ = try d.decode(antPage("00 FF FF FF F0 FF FF 48"), at: antTime)
        // count 255 → 0, time 0xFFF0 → 0x0330: 0x340 = 832 ticks = 812.5 ms.
        let readings = try d.decode(antPage("00 FF FF FF 30 03 00 48"), at: antTime)
        #expect(readings.last == .measurement(.rrInterval, 812.5, unit: "ms", quality: .derived))
        // Page 4 across the event-time rollover: previous 0xFE00, last 0x0200 → 1024 ticks.
        var p4 = ANTHeartRateDecoder()
        #expect(
            try p4.decode(antPage("04 00 00 FE 00 02 07 3C"), at: antTime).last
                == .measurement(.rrInterval, 1000, unit: "ms"))
    }

    @Test func zeroHeartRateIsInvalidAndEqualTimesGiveNoRR() throws {
        var d = ANTHeartRateDecoder()
        #expect(try d.decode(antPage("00 FF FF FF 00 10 2A 00"), at: antTime) == [])
        // Count advanced by one but the event time did not move: no zero RR.
        #expect(try d.decode(antPage("00 FF FF FF 00 10 2B 00"), at: antTime) == [])
    }

    @Test func page7Battery() throws {
        var d = ANTHeartRateDecoder()
        #expect(try d.decode(antPage("07 55 00 03 00 10 2A 48"), at: antTime).last == .battery(85))
        // 0xFF: percentage not given.
        #expect(
            try d.decode(antPage("87 FF 00 03 00 10 2A 48"), at: antTime) == [
                .measurement(.heartRate, 72, unit: "/min")
            ])
    }

    @Test func refusedPayloadsLeaveTheBeatStateAlone() throws {
        var d = ANTHeartRateDecoder()
        _ = try d.decode(antPage("00 FF FF FF 00 10 2A 48"), at: antTime)
        let next = antPage("00 FF FF FF 55 13 2B 48")
        for n in 0..<8 {
            #expect(throws: DecodeError.self) { try d.decode(Array(next[0..<n]), at: antTime) }
        }
        #expect(throws: DecodeError.self) { try d.decode(next + [0], at: antTime) }
        #expect(
            try d.decode(next, at: antTime).last
                == .measurement(.rrInterval, 853.0 * 1000 / 1024, unit: "ms", quality: .derived))
    }
}

let antTime = Timestamp(millisecondsSinceEpoch: 1_700_000_000_000)

/// An 8-byte page from hex; traps on a typo in a test vector.
func antPage(_ hex: String) -> [UInt8] {
    guard let bytes = Hex.bytes(hex) else { fatalError("bad hex in test: \(hex)") }
    return bytes
}

/// The values of one metric among `readings`, with their quality.
func antValues(_ readings: [Reading], _ metric: Metric) -> [(value: Double, quality: Quality)] {
    readings.compactMap {
        if case .measurement(let m, let v, _, let q, _) = $0, m == metric { return (v, q) }
        return nil
    }
}

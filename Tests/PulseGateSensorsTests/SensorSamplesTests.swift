import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct SensorSamplesTests {
    @Test func readingsBecomeSamplesAtTheirOffsetAndRefusalsAreReported() throws {
        let maker = SensorSamples(
            subject: "station-3", source: SourceRef(kind: .ble, station: "bike-3", device: .init(address: "AA:BB")))
        let t = try #require(Timestamp(rfc3339: "2026-11-20T07:00:00Z"))
        let result = maker.samples(
            from: [
                .measurement(.heartRate, 72, unit: "/min"),
                .measurement(.rrInterval, 1000, unit: "ms", quality: [.derived], offsetMillis: -1000),
                .measurement(.heartRate, 0, unit: "/min"),
                .battery(87),
            ], at: t, now: t)
        #expect(result.samples.count == 2)
        #expect(result.samples[0].metric == .heartRate && result.samples[0].start == t)
        #expect(result.samples[1].start == t.adding(milliseconds: -1000))
        #expect(result.samples[1].quality == [.derived])
        #expect(result.samples.allSatisfy { $0.subject == "station-3" && $0.source.station == "bike-3" })
        #expect(result.battery == 87)
        #expect(result.refused.count == 1 && result.refused[0].hasPrefix("heart_rate 0.0"))
    }
}

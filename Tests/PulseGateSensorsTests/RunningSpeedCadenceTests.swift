import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct RunningSpeedCadenceTests {
    func decode(_ hex: String, sourceLocation: SourceLocation = #_sourceLocation) -> [Reading] {
        var decoder = RunningSpeedCadenceDecoder()
        return BLE.decode(&decoder, hex, sourceLocation: sourceLocation)
    }

    func expected(speed: Double, cadence: Double) -> [Reading] {
        [.measurement(.speed, speed, unit: "m/s"), .measurement(.cadence, cadence, unit: "/min")]
    }

    // Vectors from sensor-vectors.md §4 (RSC1–RSC6).
    @Test func vectorsFromSection4() {
        #expect(decode("07 00 03 12 56 00 01 00 00 F0") == expected(speed: 3.0, cadence: 18))  // RSC1
        #expect(decode("00 80 02 B4") == expected(speed: 2.5, cadence: 180))  // RSC3
        #expect(decode("01 80 02 B4 55 00") == expected(speed: 2.5, cadence: 180))  // RSC4
        #expect(decode("02 80 02 B4 10 27 00 00") == expected(speed: 2.5, cadence: 180))  // RSC5
        #expect(decode("03 80 02 B4 55 00 10 27 00 00") == expected(speed: 2.5, cadence: 180))  // RSC6
        // Walking (bit 2 clear) changes nothing in the values.
        #expect(decode("04 00 01 5A") == expected(speed: 1.0, cadence: 90))
    }

    @Test func rsc2NineBytesOfTenIsRefused() {
        var decoder = RunningSpeedCadenceDecoder()
        let error = BLE.refusal(&decoder, Array(BLE.bytes("07 00 03 12 56 00 01 00 00 F0").prefix(9)))
        #expect(error?.reason.contains("total distance") == true)
    }

    @Test func trailingBytesAreRefused() {
        var decoder = RunningSpeedCadenceDecoder()
        BLE.refusal(&decoder, BLE.bytes("00 80 02 B4 55 00"))  // stride not announced
    }

    @Test func truncationAtEveryLength() {
        let make = { RunningSpeedCadenceDecoder() }
        BLE.checkTruncation(make, BLE.bytes("07 00 03 12 56 00 01 00 00 F0"))
        BLE.checkTruncation(make, BLE.bytes("03 80 02 B4 55 00 10 27 00 00"))
        BLE.checkTruncation(make, BLE.bytes("00 80 02 B4"))
    }

    @Test func garbageNeverCrashes() {
        var decoder = RunningSpeedCadenceDecoder()
        #expect(BLE.feedGarbage(&decoder, seed: 0x2A53) > 0)
    }
}

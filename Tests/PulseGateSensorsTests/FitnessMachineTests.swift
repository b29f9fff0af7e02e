import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct IndoorBikeDataTests {
    func decode(_ hex: String, sourceLocation: SourceLocation = #_sourceLocation) -> [Reading] {
        var decoder = IndoorBikeDataDecoder()
        return BLE.decode(&decoder, hex, sourceLocation: sourceLocation)
    }

    /// IBD4 from sensor-vectors.md §5, rewritten with a 2-byte resistance level (`07 00`): this
    /// decoder follows FTMS v1.0 (sint16), not the GSS YAML's uint8 that the original assumes.
    static let ibd4TwoByteResistance =
        "FE 1F B8 0B F0 0A A0 00 96 00 10 27 00 07 00 C8 00 B9 00 20 03 90 01 07 91 50 18 15 58 02"

    // Vectors from sensor-vectors.md §5.
    @Test func vectorsFromSection5() {
        // IBD1 (Schwinn IC4 capture): speed 7.30 km/h, cadence 129, power 290; HR 0 = no sensor.
        #expect(
            decode("44 02 DA 02 02 01 22 01 00") == [
                .measurement(.speed, 7.30, unit: "km/h"), .measurement(.cadence, 129, unit: "/min"),
                .measurement(.power, 290, unit: "W"),
            ])
        #expect(decode("01 00") == [])  // IBD2: More Data, every field absent
        // IBD3: speed 25.00 km/h, cadence 90, HR 155.
        #expect(
            decode("04 02 C4 09 B4 00 9B") == [
                .measurement(.speed, 25, unit: "km/h"), .measurement(.cadence, 90, unit: "/min"),
                .measurement(.heartRate, 155, unit: "/min"),
            ])
        // IBD4 with every field: speed 30.00, cadence 80.0, power 200, HR 145.
        #expect(
            decode(Self.ibd4TwoByteResistance) == [
                .measurement(.speed, 30, unit: "km/h"), .measurement(.cadence, 80, unit: "/min"),
                .measurement(.power, 200, unit: "W"), .measurement(.heartRate, 145, unit: "/min"),
            ])
    }

    @Test func ibd4AsWrittenForOneByteResistanceIsRefused() {
        // The original IBD4 is one byte short under the FTMS v1.0 layout: refused, not misread.
        var decoder = IndoorBikeDataDecoder()
        let original = "FE 1F B8 0B F0 0A A0 00 96 00 10 27 00 07 C8 00 B9 00 20 03 90 01 07 91 50 18 15 58 02"
        #expect(BLE.refusal(&decoder, BLE.bytes(original))?.reason.contains("remaining time") == true)
    }

    @Test func moreDataBitIsInverted() {
        // Bit 0 set: no speed; the cadence after the flags is read as cadence.
        #expect(decode("05 00 B4 00") == [.measurement(.cadence, 90, unit: "/min")])
        #expect(
            decode("40 00 10 00 E8 FF") == [
                .measurement(.speed, 0.16, unit: "km/h"), .measurement(.power, -24, unit: "W"),
            ])
    }

    @Test func trailingAndReservedBits() {
        var decoder = IndoorBikeDataDecoder()
        BLE.refusal(&decoder, BLE.bytes("01 00 00"))
        #expect(BLE.decode(&decoder, "01 20 00") == [])  // bit 13 reserved: vendor bytes tolerated
    }

    @Test func truncationAtEveryLength() {
        let make = { IndoorBikeDataDecoder() }
        BLE.checkTruncation(make, BLE.bytes(Self.ibd4TwoByteResistance))
        BLE.checkTruncation(make, BLE.bytes("44 02 DA 02 02 01 22 01 00"))
        BLE.checkTruncation(make, BLE.bytes("04 02 C4 09 B4 00 9B"))
    }

    @Test func garbageNeverCrashes() {
        var decoder = IndoorBikeDataDecoder()
        #expect(BLE.feedGarbage(&decoder, seed: 0x2AD2) > 0)
    }
}

@Suite struct TreadmillDataTests {
    func decode(_ hex: String, sourceLocation: SourceLocation = #_sourceLocation) -> [Reading] {
        var decoder = TreadmillDataDecoder()
        return BLE.decode(&decoder, hex, sourceLocation: sourceLocation)
    }

    /// TD3 from sensor-vectors.md §6, rewritten with 1-byte pace fields (`01`, `01` for `2C 01 36 01`):
    /// this decoder follows FTMS v1.0 (uint8, 0.1 km/min), not the GSS YAML's uint16.
    static let td3OneBytePace =
        "FE 1F 20 03 EE 02 88 13 00 CE FF 1E 00 64 00 32 00 01 01 F4 01 58 02 0A 8C 55 08 07 58 02 9C FF FA 00"

    // Vectors from sensor-vectors.md §6.
    @Test func vectorsFromSection6() {
        #expect(decode("01 00") == [])  // TD1
        // TD2: speed 12.50 km/h, average speed skipped, HR 155.
        #expect(
            decode("02 01 E2 04 B0 04 9B") == [
                .measurement(.speed, 12.5, unit: "km/h"), .measurement(.heartRate, 155, unit: "/min"),
            ])
        // TD3: speed 8.00 km/h, HR 140, force −100 N skipped, power 250 W.
        #expect(
            decode(Self.td3OneBytePace) == [
                .measurement(.speed, 8, unit: "km/h"), .measurement(.heartRate, 140, unit: "/min"),
                .measurement(.power, 250, unit: "W"),
            ])
    }

    @Test func td3AsWrittenForTwoBytePaceIsRefused() {
        // Under the FTMS v1.0 layout the original TD3 leaves two bytes over: refused, not misread.
        var decoder = TreadmillDataDecoder()
        let original =
            "FE 1F 20 03 EE 02 88 13 00 CE FF 1E 00 64 00 32 00 2C 01 36 01 F4 01 58 02 0A 8C 55 08 07 58 02 9C FF FA 00"
        #expect(BLE.refusal(&decoder, BLE.bytes(original))?.reason.contains("unexpected") == true)
    }

    @Test func fieldCombinations() {
        // Speed absent (More Data), distance (uint24) then HR.
        #expect(decode("05 01 10 27 00 78") == [.measurement(.heartRate, 120, unit: "/min")])
        // HR 0 means no sensor.
        #expect(decode("00 01 E8 03 00") == [.measurement(.speed, 10, unit: "km/h")])
        // Inclination + elevation + pace, then power.
        #expect(
            decode("39 10 0A 00 0A 00 05 00 01 00 01 28 00 2C 01") == [
                .measurement(.power, 300, unit: "W")
            ])
    }

    @Test func reservedBitsToleratePayloadsLikeTheFitshowTreadmill() {
        // hughesjs/FitnessMachine shows flags `84 24` (bit 13 reserved) followed by a vendor field.
        var decoder = TreadmillDataDecoder()
        let payload = BLE.bytes("84 24 E8 03 10 00 00 64 00 00 00 00 3C 00 05 00")
        #expect(BLE.decode(&decoder, payload) == [.measurement(.speed, 10, unit: "km/h")])
    }

    @Test func truncationAtEveryLength() {
        let make = { TreadmillDataDecoder() }
        BLE.checkTruncation(make, BLE.bytes(Self.td3OneBytePace))
        BLE.checkTruncation(make, BLE.bytes("02 01 E2 04 B0 04 9B"))
    }

    @Test func garbageNeverCrashes() {
        var decoder = TreadmillDataDecoder()
        #expect(BLE.feedGarbage(&decoder, seed: 0x2ACD) > 0)
    }
}

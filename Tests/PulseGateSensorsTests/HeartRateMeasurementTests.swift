import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct HeartRateMeasurementTests {
    func decode(_ hex: String, sourceLocation: SourceLocation = #_sourceLocation) -> [Reading] {
        var decoder = HeartRateMeasurementDecoder()
        return BLE.decode(&decoder, hex, sourceLocation: sourceLocation)
    }

    func hr(_ bpm: Double, _ quality: Quality = []) -> Reading {
        .measurement(.heartRate, bpm, unit: "/min", quality: quality)
    }

    func rr(_ raw: Double, offset: Int64) -> Reading {
        .measurement(.rrInterval, raw * 1000 / 1024, unit: "ms", offsetMillis: offset)
    }

    // Vectors from sensor-vectors.md §1 (HR1–HR10).
    @Test func vectorsFromSection1() {
        #expect(decode("00 2A") == [hr(42)])  // HR1
        #expect(decode("00 55") == [hr(85)])  // HR2: contact not supported → no flag
        #expect(decode("04 FF") == [hr(255, .contactLost)])  // HR3: supported, not detected
        #expect(decode("1E 55 32 00 21 00") == [hr(85), rr(33, offset: 0)])  // HR4
        // HR5: RR raw [1, 258, 65535]; the last beat is at 0, each earlier one before it.
        #expect(
            decode("1F 01 01 32 01 01 00 02 01 FF FF") == [
                hr(257), rr(1, offset: -64251), rr(258, offset: -63999), rr(65535, offset: 0),
            ])
        #expect(decode("00 50") == [hr(80)])  // HR7
        #expect(decode("01 C8 00") == [hr(200)])  // HR8
        #expect(decode("0E 4B 80 00") == [hr(75)])  // HR9: contact detected, energy skipped
        // HR10: RR 2.0 s and 4.0 s.
        #expect(decode("10 5A 00 08 00 10") == [hr(90), rr(2048, offset: -4000), rr(4096, offset: 0)])
    }

    @Test func hr6FlagsAnnounceMoreThanThePayloadHolds() {
        // HR6 (§1): uint16 HR plus RR announced, only the HR is there.
        var decoder = HeartRateMeasurementDecoder()
        let error = BLE.refusal(&decoder, BLE.bytes("17 01 01"))
        #expect(error?.reason.contains("RR interval") == true)
        #expect(error?.offset == 3)
    }

    @Test func rrValuesAreMillisecondsAndOffsetsAccumulate() {
        // The example in sensor-facts.md: 0x16 → contact supported+detected, RR 1024/1024 s.
        #expect(decode("16 48 00 04") == [hr(72), rr(1024, offset: 0)])
        let readings = decode("10 3C 00 04 00 02 00 03")
        #expect(
            readings == [
                hr(60), .measurement(.rrInterval, 1000, unit: "ms", offsetMillis: -1250),
                .measurement(.rrInterval, 500, unit: "ms", offsetMillis: -750),
                .measurement(.rrInterval, 750, unit: "ms", offsetMillis: 0),
            ])
    }

    @Test func contactFlagCombinations() {
        #expect(decode("00 48") == [hr(72)])  // not supported
        #expect(decode("02 48") == [hr(72)])  // "detected" without "supported" means nothing
        #expect(decode("04 48") == [hr(72, .contactLost)])
        #expect(decode("06 48") == [hr(72)])
        #expect(decode("0D 48 00 10 00") == [hr(72, .contactLost)])  // uint16 HR + energy, no contact
    }

    @Test func oddRRBytesAndTrailingBytesAreRefused() {
        var decoder = HeartRateMeasurementDecoder()
        BLE.refusal(&decoder, BLE.bytes("10 5A 00 08 00"))  // half an RR interval
        BLE.refusal(&decoder, BLE.bytes("00 50 00"))  // a byte no flag announced
        BLE.refusal(&decoder, BLE.bytes(""))
        // A reserved flag bit may announce fields this decoder does not know: the known ones stand.
        #expect(decode("20 50 00") == [hr(80)])
    }

    @Test func truncationAtEveryLength() {
        let make = { HeartRateMeasurementDecoder() }
        BLE.checkTruncation(make, BLE.bytes("1E 55 32 00 21 00"))
        BLE.checkTruncation(make, BLE.bytes("0E 4B 80 00"))
        BLE.checkTruncation(make, BLE.bytes("01 C8 00"))
        // Fewer RR intervals is a valid payload: after one and after two intervals.
        BLE.checkTruncation(make, BLE.bytes("1F 01 01 32 01 01 00 02 01 FF FF"), validPrefixLengths: [7, 9])
    }

    @Test func garbageNeverCrashes() {
        var decoder = HeartRateMeasurementDecoder()
        let decoded = BLE.feedGarbage(&decoder, seed: 0x2A37)
        #expect(decoded > 0)
    }
}

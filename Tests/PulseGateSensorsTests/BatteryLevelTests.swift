import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct BatteryLevelTests {
    // Vectors from sensor-vectors.md §7 (BAT1–BAT6).
    @Test func vectorsFromSection7() {
        var decoder = BatteryLevelDecoder()
        #expect(BLE.decode(&decoder, "00") == [.battery(0)])  // BAT1
        #expect(BLE.decode(&decoder, "2A") == [.battery(42)])  // BAT2
        #expect(BLE.decode(&decoder, "64") == [.battery(100)])  // BAT3
        #expect(BLE.decode(&decoder, "0F") == [.battery(15)])  // BAT4
        #expect(BLE.refusal(&decoder, BLE.bytes("65"))?.reason.contains("over 100") == true)  // BAT5
        BLE.refusal(&decoder, BLE.bytes("64 00"))  // BAT6
        BLE.refusal(&decoder, BLE.bytes("FF"))
        BLE.refusal(&decoder, [])
    }

    @Test func garbageNeverCrashes() {
        var decoder = BatteryLevelDecoder()
        #expect(BLE.feedGarbage(&decoder, seed: 0x2A19) >= 0)
    }
}

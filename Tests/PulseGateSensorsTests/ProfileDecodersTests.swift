import PulseGateCore
import PulseGateSensors
import Testing

@Suite struct ProfileDecodersTests {
    @Test func everyBLENameMakesItsDecoder() {
        #expect(
            ProfileDecoders.bleNames == [
                "ble:2a37", "ble:2a63", "ble:2a5b", "ble:2a53", "ble:2ad2", "ble:2acd", "ble:2a19",
            ])
        for name in ProfileDecoders.bleNames {
            #expect(ProfileDecoders.names.contains(name))
            #expect(ProfileDecoders.make(name)?.profile == name, "\(name)")
        }
        #expect(Set(ProfileDecoders.names).count == ProfileDecoders.names.count)
        #expect(ProfileDecoders.make("ble:2a38") == nil)
        #expect(ProfileDecoders.make("") == nil)
    }

    @Test func wheelCircumferenceReachesTheDecoder() throws {
        // SEQ1 (sensor-vectors.md §3): 10 wheel revs in 1 s.
        var decoder = try #require(ProfileDecoders.make("ble:2a5b", wheelCircumference: 2.34))
        _ = try decoder.decode(BLE.bytes("01 0A 00 00 00 00 00"), at: BLE.at(0))
        let readings = try decoder.decode(BLE.bytes("01 14 00 00 00 00 04"), at: BLE.at(1000))
        #expect(readings == [.measurement(.speed, 23.4, unit: "m/s", quality: .derived)])
        // A nonsense circumference falls back to 2.096 m.
        var fallback = try #require(ProfileDecoders.make("ble:2a63", wheelCircumference: -1))
        _ = try fallback.decode(BLE.bytes("10 00 00 00 00 00 00 00 00 00"), at: BLE.at(0))
        let next = try fallback.decode(BLE.bytes("10 00 00 00 01 00 00 00 00 08"), at: BLE.at(1000))
        #expect(BLE.values(next)["speed"] == 2.096)
    }

    @Test func everyDecoderSurvivesGarbageThroughTheExistential() {
        for (i, name) in ProfileDecoders.bleNames.enumerated() {
            guard var decoder = ProfileDecoders.make(name) else { continue }
            BLE.feedGarbage(&decoder, seed: UInt64(i + 1), count: 1000)
        }
    }
}

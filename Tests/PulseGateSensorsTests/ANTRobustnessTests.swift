import PulseGateCore
import PulseGateSensors
import Testing

/// Truncated, oversized and random pages: always a `DecodeError` or readings, never a trap, and a
/// refused payload never moves the rollover state.
@Suite struct ANTRobustnessTests {
    /// Every page vector of the ANT tests, by profile: a state-setting page, then the page under test.
    static let sequences: [(profile: String, pages: [String])] = [
        ("ant:hrm", ["00 FF FF FF 00 10 2A 48", "00 FF FF FF 55 13 2B 48"]),
        ("ant:hrm", ["04 FF 00 10 00 10 2A 48", "04 FF 00 10 55 13 2B 48"]),
        ("ant:hrm", ["07 55 00 03 00 10 2A 48", "07 55 00 03 55 13 2B 48"]),
        ("ant:power", ["10 FE FF 5A 00 FF C8 00", "10 01 FF 5B 58 01 D2 00"]),
        ("ant:power", ["11 01 01 FF 00 10 00 20", "11 02 02 55 00 18 00 24"]),
        ("ant:power", ["12 0A 0A 5A 00 10 00 20", "12 0B 0B 5A 55 15 80 22"]),
        ("ant:power", ["01 10 01 FF FF FF 01 F4", "01 10 01 FF FF FF 01 F4"]),
        ("ant:power", ["20 01 00 FA 10 00 20 00", "20 02 00 FA 15 DC 22 58"]),
        ("ant:speed-cadence", ["00 04 0A 00 00 04 14 00", "00 08 0B 00 00 08 16 00"]),
        ("ant:speed", ["00 FF FF FF 00 04 14 00", "81 10 00 00 00 08 19 00"]),
        ("ant:cadence", ["00 FF FF FF 00 FA FE FF", "03 01 02 03 00 02 01 00"]),
    ]

    @Test(arguments: sequences.indices)
    func truncationAtEveryLengthIsRefusedAndLeavesTheStateAlone(_ index: Int) throws {
        let (profile, pages) = Self.sequences[index]
        let first = antPage(pages[0])
        let second = antPage(pages[1])

        var reference = try #require(antDecoder(profile, wheelCircumference: 2.096))
        _ = try reference.decode(first, at: antTime)
        let expected = try reference.decode(second, at: antTime)

        var d = try #require(antDecoder(profile, wheelCircumference: 2.096))
        for n in 0..<8 {
            #expect(throws: DecodeError.self, "\(profile) first page cut to \(n)") {
                try d.decode(Array(first[0..<n]), at: antTime)
            }
        }
        _ = try d.decode(first, at: antTime)
        for n in 0..<8 {
            do {
                _ = try d.decode(Array(second[0..<n]), at: antTime)
                Issue.record("\(profile) accepted \(n) bytes")
            } catch {
                #expect(error.profile == profile)
                #expect(error.reason.contains("truncated"))
            }
        }
        for extra in 1...3 {
            #expect(throws: DecodeError.self) {
                try d.decode(second + [UInt8](repeating: 0x55, count: extra), at: antTime)
            }
        }
        // The broadcast payload with its channel byte still in front is 9 bytes: refused, not misread.
        #expect(throws: DecodeError.self) { try d.decode([0x00] + second, at: antTime) }
        #expect(try d.decode(second, at: antTime) == expected)
    }

    @Test(arguments: antProfileNames)
    func seededRandomPagesNeverTrap(_ profile: String) throws {
        var rng = ANTSeededGenerator(seed: 0xA17 &+ UInt64(profile.utf8.count))
        var d = try #require(antDecoder(profile, wheelCircumference: 2.096))
        var decoded = 0
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...10, using: &rng) < 8 ? 8 : Int.random(in: 0...12, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Steer byte 0 towards the pages that carry state, so the state paths are exercised.
            if length > 0, Bool.random(using: &rng) {
                bytes[0] = [0x00, 0x04, 0x07, 0x01, 0x10, 0x11, 0x12, 0x20].randomElement(using: &rng)!
            }
            do {
                for reading in try d.decode(bytes, at: antTime) {
                    if case .measurement(_, let value, _, _, _) = reading {
                        #expect(value.isFinite && value >= 0, "\(profile) \(bytes)")
                    }
                }
                decoded += 1
            } catch {
                #expect(error.profile == profile)
            }
        }
        #expect(decoded > 10_000)
    }
}

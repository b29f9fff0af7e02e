import PulseGateCore
import PulseGateSensors
import Testing

/// Helpers shared by the BLE decoder tests.
enum BLE {
    /// Arrival time `ms` after a fixed instant.
    static func at(_ ms: Int64) -> Timestamp { Timestamp(millisecondsSinceEpoch: 1_780_000_000_000 + ms) }

    static func bytes(_ hex: String) -> [UInt8] {
        guard let bytes = Hex.bytes(hex) else { preconditionFailure("bad hex in a test: \(hex)") }
        return bytes
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { le16(UInt16(v & 0xFFFF)) + le16(UInt16(v >> 16)) }

    /// The measurement readings as `metric → value`, so a test can look one up; battery excluded.
    static func values(_ readings: [Reading]) -> [String: Double] {
        var out = [String: Double]()
        for case .measurement(let metric, let value, _, _, _) in readings { out[metric.name] = value }
        return out
    }

    /// Decodes `hex` with `decoder` and records the error if it throws.
    static func decode(
        _ decoder: inout some ProfileDecoder, _ hex: String, at ms: Int64 = 0,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> [Reading] {
        decode(&decoder, bytes(hex), at: ms, sourceLocation: sourceLocation)
    }

    static func decode(
        _ decoder: inout some ProfileDecoder, _ payload: [UInt8], at ms: Int64 = 0,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> [Reading] {
        do {
            return try decoder.decode(payload, at: at(ms))
        } catch {
            Issue.record("refused \(payload): \(error)", sourceLocation: sourceLocation)
            return []
        }
    }

    /// The error `payload` is refused with, or `nil` (recorded as an issue) if it decodes.
    @discardableResult
    static func refusal(
        _ decoder: inout some ProfileDecoder, _ payload: [UInt8], at ms: Int64 = 0,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> DecodeError? {
        do {
            let readings = try decoder.decode(payload, at: at(ms))
            Issue.record("accepted \(payload) as \(readings)", sourceLocation: sourceLocation)
            return nil
        } catch {
            #expect(error.profile == decoder.profile, sourceLocation: sourceLocation)
            #expect(!error.reason.isEmpty, sourceLocation: sourceLocation)
            return error
        }
    }

    /// Every prefix shorter than `full` is refused with a `DecodeError`, except the lengths in
    /// `validPrefixLengths` (where the specification allows a shorter payload), which decode.
    static func checkTruncation(
        _ make: () -> some ProfileDecoder, _ full: [UInt8], validPrefixLengths: Set<Int> = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var whole = make()
        _ = decode(&whole, full, sourceLocation: sourceLocation)
        for length in 0..<full.count {
            var decoder = make()
            let prefix = Array(full.prefix(length))
            if validPrefixLengths.contains(length) {
                _ = decode(&decoder, prefix, sourceLocation: sourceLocation)
            } else {
                refusal(&decoder, prefix, sourceLocation: sourceLocation)
            }
        }
    }

    /// A small seeded generator (SplitMix64) so garbage tests are repeatable.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Feeds `count` random payloads (0–40 bytes) to one decoder in sequence: each must decode or be
    /// refused with a `DecodeError`, and every value it yields must be finite. Returns how many decoded.
    @discardableResult
    static func feedGarbage(_ decoder: inout some ProfileDecoder, seed: UInt64, count: Int = 3000) -> Int {
        var rng = SeededGenerator(state: seed)
        var decoded = 0
        for i in 0..<count {
            let length = Int.random(in: 0...40, using: &rng)
            let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            do {
                let readings = try decoder.decode(payload, at: at(Int64(i) * 250))
                decoded += 1
                for case .measurement(_, let value, _, _, _) in readings {
                    #expect(value.isFinite, "\(decoder.profile) yielded \(value) from \(payload)")
                }
            } catch {
                #expect(error.profile == decoder.profile)
            }
        }
        return decoded
    }
}

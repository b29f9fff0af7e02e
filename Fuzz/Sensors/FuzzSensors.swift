import Foundation
import PulseGateCore
import PulseGateSensors

/// The sensor decoders under libFuzzer: each input is split into payloads (a length byte, then that
/// many bytes, repeated) and fed in order to one profile decoder, as a sensor's notifications would
/// arrive, so the state carried across payloads (cumulative revolutions, beat counts) is fuzzed too.
/// `PULSEGATE_FUZZ_PROFILE=ble:2a63` fuzzes one decoder (one target per decoder); unset, the first byte
/// picks the decoder. Also: the ANT framing parser over the raw input and the sensor manager over the
/// same payloads. A crash, a sanitizer report or a broken invariant is a finding.
///
/// Built by `scripts/fuzz.sh sensors` (or `scripts/fuzz.sh ble:2a37`…); a plain `swift build` makes a
/// replay tool: `fuzz-sensors FILE...`.
enum FuzzSensors {
    static let start = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
    static let fixed: String? = {
        guard let name = getenv("PULSEGATE_FUZZ_PROFILE") else { return nil }
        return String(cString: name)
    }()

    static func run(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let names = ProfileDecoders.names
        let profile = fixed ?? names[Int(bytes[0]) % names.count]
        let body = fixed == nil ? bytes.dropFirst() : bytes[...]
        guard var decoder = ProfileDecoders.make(profile, wheelCircumference: 2.096) else {
            fatalError("unknown profile \(profile)")
        }
        var payloads = [[UInt8]]()
        var rest = body
        while let n = rest.first {
            rest = rest.dropFirst()
            payloads.append(Array(rest.prefix(Int(n))))
            rest = rest.dropFirst(Int(n))
        }
        let maker = SensorSamples(subject: "fuzz", source: SourceRef(kind: profile.hasPrefix("ant:") ? .ant : .ble))
        for (i, payload) in payloads.enumerated() {
            let at = start.adding(milliseconds: Int64(i) * 250)
            do {
                let readings = try decoder.decode(payload, at: at)
                for case .measurement(_, let value, _, _, let offset) in readings {
                    precondition(value.isFinite, "\(profile): a non-finite value from \(payload)")
                    // Earlier beats (RR intervals) lie in the past, at most 64 s each (16-bit 1/1024 s).
                    precondition(
                        offset <= 0 && offset >= -Int64(payload.count) * 32_000,
                        "\(profile): reading placed \(offset) ms away")
                }
                let made = maker.samples(from: readings, at: at, now: at)
                for s in made.samples { _ = SampleCodec.line(s) }
            } catch {
                precondition(error.offset.map { $0 >= 0 && $0 <= payload.count } ?? true, "offset outside: \(error)")
            }
        }

        // The same payloads through the manager, as a station would hear them.
        let sensor = SensorID(transport: profile.hasPrefix("ant:") ? .ant : .ble, address: "fuzz")
        let manager = SensorManager(
            stations: [Station(id: "s", name: "s", sensors: [sensor])], clock: { start }, emit: { _ in })
        for (i, payload) in payloads.enumerated() {
            manager.handle(.payload(sensor, profile: profile, bytes: payload, at: start.adding(milliseconds: Int64(i))))
        }

        // ANT framing: any byte stream, in two chunks.
        var parser = ANTFrameParser()
        let cut = bytes.count / 2
        _ = parser.append(Array(bytes[..<cut]))
        _ = parser.append(Array(bytes[cut...]))
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzSensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        guard let data else { return 0 }
        FuzzSensors.run(Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }

    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's entry point as `<module>_main`; this one hands the command line
    /// to libFuzzer's driver (see Fuzz/FIT).
    @_cdecl("FuzzSensors_main")
    func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        var argc = argc
        var argv = argv
        return runFuzzerDriver(&argc, &argv, fuzzSensors)
    }
#else
    /// Replays saved inputs through the same checks.
    @main
    enum Replay {
        static func main() {
            for path in CommandLine.arguments.dropFirst() {
                guard let data = FileManager.default.contents(atPath: path) else {
                    print("\(path): cannot read")
                    continue
                }
                FuzzSensors.run([UInt8](data))
                print("\(path): ok")
            }
        }
    }
#endif

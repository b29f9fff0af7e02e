import PulseGateCore
import PulseGateFIT

/// The FIT decoder under libFuzzer: every input goes through the strict and the salvaging sample
/// reader and a raw message walk that touches every field, and the results must agree with each other.
/// A crash, a sanitizer report or a broken invariant (`fatalError`) is a finding.
///
/// Built by `scripts/fuzz.sh fit` with `-sanitize=fuzzer,address -parse-as-library -DFUZZING`; a plain
/// `swift build` makes a replay tool instead: `fuzz-fit FILE...` runs the same checks on saved inputs
/// (a crash artifact, a fixture) without libFuzzer.
enum FuzzFIT {
    static let now = Timestamp(millisecondsSinceEpoch: 1_900_000_000_000)
    static let source = SourceRef(kind: .file)

    static func run(_ bytes: [UInt8]) {
        var walked = 0
        var decoder = FITDecoder(bytes: bytes)
        do {
            while let m = try decoder.next() {
                walked += 1
                for number in 0...255 {
                    let n = UInt8(number)
                    guard m.has(n) else { continue }
                    for i in 0..<m.count(n) { _ = m.raw(n, at: i) }
                    _ = m.string(n)
                    _ = m.bytes(n)
                }
                for field in m.developerFields {
                    for i in 0..<field.count { _ = field.value(at: i) }
                    _ = field.string
                }
            }
        } catch {
            precondition(error.offset >= 0 && error.offset <= bytes.count, "offset outside the stream: \(error)")
        }

        var strict = FITSampleReader(bytes: bytes, subject: "fuzz", source: source, now: now)
        let strictResult = drain(&strict)
        var salvage = FITSampleReader(bytes: bytes, subject: "fuzz", source: source, now: now, salvage: true)
        let salvageResult = drain(&salvage)
        switch (strictResult, salvageResult) {
        case (.success(let a), .success(let b)):
            precondition(salvage.stoppedAt != nil || a == b, "salvage of an intact file differs from strict")
            precondition(b.count <= a.count || salvage.stoppedAt != nil, "salvage produced more than strict")
        case (.success, .failure(let e)):
            fatalError("strict accepted what salvage rejected: \(e)")
        case (.failure, _):
            break
        }
        if case .success(let samples) = salvageResult {
            for s in samples {
                precondition(s.start <= now.adding(milliseconds: Sample.futureTolerance), "sample in the future")
                _ = SampleCodec.line(s)
            }
        }
    }

    static func drain(_ reader: inout FITSampleReader) -> Result<[Sample], FITError> {
        var all: [Sample] = []
        do {
            while true {
                let batch = try reader.next(max: 64)
                if batch.isEmpty { return .success(all) }
                precondition(batch.count <= 64, "batch larger than max")
                all += batch
            }
        } catch {
            return .failure(error)
        }
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzFIT(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        guard let data else { return 0 }
        FuzzFIT.run(Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }

    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's entry point as `<module>_main` (so tests can link executables),
    /// which shadows libFuzzer's own `main`; this one hands the command line to libFuzzer's driver.
    @_cdecl("FuzzFIT_main")
    func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        var argc = argc
        var argv = argv
        return runFuzzerDriver(&argc, &argv, fuzzFIT)
    }
#else
    import Foundation

    /// Replays saved inputs through the same checks.
    @main
    enum Replay {
        static func main() {
            for path in CommandLine.arguments.dropFirst() {
                guard let data = FileManager.default.contents(atPath: path) else {
                    print("\(path): cannot read")
                    continue
                }
                FuzzFIT.run([UInt8](data))
                print("\(path): ok")
            }
        }
    }
#endif

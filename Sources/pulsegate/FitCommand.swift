import ArgumentParser
import Foundation
import PulseGateCore
import PulseGateFIT

#if canImport(Glibc)
    import Glibc
#endif

/// `pulsegate fit`: FIT file tools for operators and for checking a device's files by hand.
struct FitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit", abstract: "FIT file tools.", subcommands: [Decode.self, Bench.self])

    /// Exit status of a rejected file (sysexits EX_DATAERR): scripts can tell bad input from a bad call.
    static let dataError: Int32 = 65

    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            ConfigOptions.fail("pulsegate: \(path): cannot read the file", code: 66)
        }
        return [UInt8](data)
    }

    /// Decodes one file and prints its samples as NDJSON (schema v1) on stdout.
    ///
    /// Exit status: 0 when the file decoded; 65 when it is rejected (one line on stderr names the file,
    /// the reason and the byte offset); 66 when it cannot be read. With `--salvage` a damaged file
    /// prints the samples before the damage, says on stderr where it stopped, and exits 0 — the caller
    /// asked for what can be had, and got it; a file with nothing before the damage is still rejected.
    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode a FIT file and print its samples as NDJSON (schema v1).",
            discussion:
                "A summary (samples, records, device, values the schema refused) goes to stderr. Exit 65 when the file is rejected; with --salvage the samples before the damage are printed and the exit status is 0."
        )

        @Argument(help: "The FIT file.") var file: String
        @Flag(help: "Keep the samples before the first damage instead of rejecting the file.") var salvage = false
        @Option(help: "Subject of the samples.") var subject: String = "fit-decode"

        func run() throws {
            let bytes = try FitCommand.read(file)
            var reader = FITSampleReader(
                bytes: bytes, subject: subject, source: SourceRef(kind: .file), now: .now, salvage: salvage)
            var out = [UInt8]()
            out.reserveCapacity(1 << 17)
            var count = 0
            do {
                while true {
                    let batch = try reader.next(max: 4096)
                    if batch.isEmpty { break }
                    for sample in batch {
                        SampleCodec.encode(sample, into: &out)
                        out.append(0x0A)
                    }
                    count += batch.count
                    if out.count >= 1 << 16 {
                        FileHandle.standardOutput.write(Data(out))
                        out.removeAll(keepingCapacity: true)
                    }
                }
            } catch {
                FileHandle.standardOutput.write(Data(out))
                ConfigOptions.fail(
                    "pulsegate: \(file): rejected: \(error.reason.rawValue) at byte \(error.offset): \(error.detail)",
                    code: FitCommand.dataError)
            }
            FileHandle.standardOutput.write(Data(out))
            var summary = "pulsegate: \(file): \(count) samples from \(reader.recordCount) records"
            if let d = reader.device {
                summary += " (device: \([d.manufacturer, d.model, d.serial].compactMap { $0 }.joined(separator: " "))"
                summary += ", \(reader.sensors.count) sensors)"
            }
            if reader.skipped > 0 { summary += "; \(reader.skipped) values refused by the schema or without a time" }
            FileHandle.standardError.write(Data((summary + "\n").utf8))
            if let stop = reader.stoppedAt {
                FileHandle.standardError.write(
                    Data(
                        "pulsegate: \(file): salvaged: stopped at byte \(stop.offset): \(stop.reason.rawValue): \(stop.detail)\n"
                            .utf8))
            }
        }
    }

    /// Decodes files repeatedly in-process and reports throughput, so benchmarks measure the decoder
    /// and the sample mapping rather than process start-up and output formatting.
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure FIT decode + normalize throughput (one JSON line per file).",
            discussion:
                "Each file is read into memory once, then decoded --iterations times three ways: into canonical samples (FITSampleReader: what `fit decode` and the vendor adapters do), into typed records in physical units (FITRecordReader: scale, offset, components, hr merge, no sample ids), and as a bare message walk. Reports the best iteration of each in MB/s (and samples/s), plus the median of the sample path."
        )

        @Argument(help: "FIT files.") var files: [String]
        @Option(help: "Decodes per file and path.") var iterations: Int = 20
        @Flag(help: "Also encode every sample as NDJSON (the `fit decode` output path).") var encode = false

        func run() throws {
            for file in files {
                let bytes = try FitCommand.read(file)
                var samples = 0
                var records = 0
                var full = [Double]()
                var typed = [Double]()
                var walk = [Double]()
                for _ in 0..<max(1, iterations) {
                    full.append(try Self.time { samples = try Self.decode(bytes, encode: encode) })
                    typed.append(try Self.time { records = try Self.records(bytes) })
                    walk.append(try Self.time { _ = try Self.walk(bytes) })
                }
                full.sort()
                let mb = Double(bytes.count) / 1e6
                let median = full[full.count / 2]
                let line =
                    "{\"file\":\"\(file)\",\"bytes\":\(bytes.count),\"samples\":\(samples),\"records\":\(records)"
                    + ",\"iterations\":\(full.count),\"best_s\":\(full[0]),\"median_s\":\(median)"
                    + ",\"mb_per_s\":\(mb / full[0]),\"median_mb_per_s\":\(mb / median)"
                    + ",\"samples_per_s\":\(Double(samples) / full[0]),\"records_mb_per_s\":\(mb / typed.min()!)"
                    + ",\"walk_mb_per_s\":\(mb / walk.min()!),\"encode\":\(encode)}"
                print(line)
            }
        }

        static func time(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }

        static func decode(_ bytes: [UInt8], encode: Bool) throws -> Int {
            var reader = FITSampleReader(
                bytes: bytes, subject: "bench", source: SourceRef(kind: .file), now: .now, salvage: true)
            var count = 0
            var out = [UInt8]()
            while true {
                let batch = try reader.next(max: 4096)
                if batch.isEmpty { break }
                count += batch.count
                if encode {
                    for sample in batch {
                        SampleCodec.encode(sample, into: &out)
                        out.append(0x0A)
                    }
                    out.removeAll(keepingCapacity: true)
                }
            }
            return count
        }

        static func records(_ bytes: [UInt8]) throws -> Int {
            var reader = FITRecordReader(bytes: bytes)
            var count = 0
            while let record = try? reader.next() {
                if record.timestamp != nil { count += 1 }
            }
            return count
        }

        static func walk(_ bytes: [UInt8]) throws -> Int {
            var decoder = FITDecoder(bytes: bytes)
            var count = 0
            while (try? decoder.next()) != nil { count += 1 }
            return count
        }
    }
}

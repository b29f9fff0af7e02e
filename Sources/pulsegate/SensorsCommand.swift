import ArgumentParser
import Foundation
import PulseGateCore
import PulseGateSensors

/// `pulsegate sensors`: tools for the people who install sensors.
struct SensorsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensors", abstract: "Sensor tools.", subcommands: [Decode.self])

    /// Decodes raw payloads of one sensor in order, so values derived across payloads (cadence from
    /// crank revolutions, RR from beat times) show too, and prints the canonical samples as NDJSON.
    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode raw payloads of one sensor (hex, in order) and print the canonical samples as NDJSON.",
            discussion:
                "PROFILE is ble:<characteristic> (ble:2a37 heart rate, ble:2a63 cycling power, ble:2a5b speed and cadence, ble:2a53 running, ble:2ad2 indoor bike, ble:2acd treadmill, ble:2a19 battery) or ant:<profile> (ant:hrm, ant:power, ant:speed-cadence, ant:speed, ant:cadence). Payloads are taken as received interval-ms apart."
        )

        @Argument(help: "The profile, e.g. ble:2a37 or ant:hrm.") var profile: String
        @Argument(help: "Payloads in hex, one argument each (spaces inside quotes, ':' and ',' are fine).")
        var payloads: [String]
        @Option(help: "Milliseconds between payloads.") var intervalMs: Int = 250
        @Option(help: "RFC 3339 time of the first payload (default: now).") var start: String?
        @Option(help: "Subject of the samples.") var subject: String = "sensor-decode"
        @Option(help: "Wheel circumference in metres, for speed from wheel revolutions.")
        var wheelCircumference: Double = 2.096

        func validate() throws {
            guard !payloads.isEmpty else { throw ValidationError("give at least one payload") }
            guard intervalMs > 0 else { throw ValidationError("--interval-ms must be positive") }
            guard wheelCircumference > 0, wheelCircumference < 10 else {
                throw ValidationError("--wheel-circumference must be in metres, e.g. 2.096")
            }
        }

        func run() throws {
            guard var decoder = ProfileDecoders.make(profile, wheelCircumference: wheelCircumference) else {
                throw ValidationError(
                    "unknown profile '\(profile)'; one of \(ProfileDecoders.names.joined(separator: ", "))")
            }
            let first: Timestamp
            if let start {
                guard let t = Timestamp(rfc3339: start) else { throw ValidationError("--start is not RFC 3339") }
                first = t
            } else {
                first = .now
            }
            let kind: SourceRef.Kind = profile.hasPrefix("ant:") ? .ant : .ble
            let maker = SensorSamples(
                subject: subject, source: SourceRef(kind: kind, device: SourceRef.Device(address: "decode")))
            var failures = 0
            var out = [UInt8]()
            for (i, text) in payloads.enumerated() {
                guard let bytes = Hex.bytes(text) else {
                    throw ValidationError("payload \(i + 1) '\(text)' is not hex")
                }
                let time = first.adding(milliseconds: Int64(i * intervalMs))
                do {
                    let readings = try decoder.decode(bytes, at: time)
                    let result = maker.samples(from: readings, at: time, now: time.adding(milliseconds: 60_000))
                    for sample in result.samples { out += SampleCodec.line(sample) }
                    if let battery = result.battery { warn("payload \(i + 1): battery \(battery) %") }
                    for reason in result.refused { warn("payload \(i + 1): refused \(reason)") }
                } catch {
                    failures += 1
                    warn("payload \(i + 1) rejected: \(error)")
                }
            }
            FileHandle.standardOutput.write(Data(out))
            if failures > 0 { throw ExitCode(1) }
        }

        func warn(_ line: String) {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}

import ArgumentParser
import Foundation
import PulseGateCore
import PulseGateDaemon
import PulseGateSensors

/// `pulsegate sensors`: tools for the people who install sensors.
struct SensorsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensors", abstract: "Sensor tools.", subcommands: [Scan.self, Decode.self])

    /// Lists what every configured backend hears, with signal strength: the first thing an installer
    /// runs beside a new bike. A backend that cannot run here says why on its own line.
    struct Scan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Scan for sensors on every backend (BlueZ, raw HCI, ANT+) and list them with RSSI.",
            discussion:
                "Backends come from the configuration's sensors.backends (default: bluez, plus ant when an ANT+ network key is configured); --backend picks others. Exit 0 when at least one backend could scan, 69 when none could."
        )
        @OptionGroup var options: ConfigOptions
        @Option(help: "Seconds to listen.") var seconds: Double = 10
        @Option(name: .customLong("backend"), help: "bluez, hci or ant (repeatable; default: the configured ones).")
        var backends: [String] = []
        @Flag(help: "One JSON object per sensor instead of a table.") var json = false

        func validate() throws {
            guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be 0…600") }
            for b in backends where !["bluez", "hci", "ant"].contains(b) {
                throw ValidationError("unknown backend '\(b)'; one of bluez, hci, ant")
            }
        }

        func run() async throws {
            var config = try options.load().sensors
            if !backends.isEmpty { config.backends = backends }
            var scanned = 0
            var rows = [SensorAdvert]()
            for backend in Daemon.sensorBackends(config) {
                do {
                    let found = try await backend.scan(seconds: seconds)
                    scanned += 1
                    rows += found
                    FileHandle.standardError.write(Data("\(backend.name): \(found.count) sensor(s)\n".utf8))
                } catch {
                    FileHandle.standardError.write(Data("\(backend.name): \(error.message)\n".utf8))
                }
            }
            for advert in rows.sorted(by: { ($0.rssi ?? -200) > ($1.rssi ?? -200) }) {
                if json {
                    var object: [String: JSONValue] = [
                        "id": .string(advert.id.description), "backend": .string(advert.backend),
                        "profiles": .array(advert.profiles.map(JSONValue.string)),
                    ]
                    if let name = advert.name { object["name"] = .string(name) }
                    if let rssi = advert.rssi { object["rssi"] = .int(Int64(rssi)) }
                    print(String(decoding: JSONValue.object(object).bytes, as: UTF8.self))
                } else {
                    let rssi = advert.rssi.map { "\($0) dBm" } ?? "-"
                    print(
                        "\(advert.backend)\t\(advert.id)\t\(rssi)\t\(advert.name ?? "-")\t\(advert.profiles.joined(separator: ","))"
                    )
                }
            }
            if scanned == 0 { throw ExitCode(69) }
        }
    }

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

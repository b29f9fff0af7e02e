import ArgumentParser
import Foundation
import Logging
import PulseGateCore
import PulseGateDaemon
import PulseGateServer
import PulseGateStore

#if canImport(Glibc)
    import Glibc
#endif

/// `pulsegate`: the daemon and its operator tools.
@main
struct PulseGate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pulsegate",
        abstract: "Connects fitness devices to a training platform: one canonical sample stream, delivered durably.",
        version: PulseGateVersion.current,
        subcommands: [
            Serve.self, Doctor.self, ConfigCommand.self, OutboxCommand.self, APIKeyCommand.self, VendorsCommand.self,
            ReplayCommand.self, TokensCommand.self, SensorsCommand.self, FitCommand.self, Version.self,
        ]
    )
}

/// Options every command that reads the configuration shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (default: $PULSEGATE_CONFIG, else the embedded defaults).")
    var config: String?

    var path: String? { config ?? ProcessInfo.processInfo.environment["PULSEGATE_CONFIG"] }

    /// The validated configuration, or exit 78 with the key named.
    func load() throws -> DaemonConfiguration {
        do {
            if let path {
                return try DaemonConfiguration.load(path: path, environment: ProcessInfo.processInfo.environment)
            }
            return try DaemonConfiguration.load(path: nil, environment: ProcessInfo.processInfo.environment)
        } catch {
            Self.fail("pulsegate: invalid configuration: \(error)", code: 78)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        Glibc.exit(code)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon until SIGTERM or SIGINT.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        StructuredLogHandler.bootstrap(level: config.logLevel, format: config.logFormat)
        let logger = Logger(label: "pulsegate")
        // A file-size limit (RLIMIT_FSIZE) must surface as a failed write (EFBIG) that the store and the
        // sinks handle, not as a signal that kills the process.
        signal(SIGXFSZ, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let daemon: Daemon
        do {
            daemon = try Daemon(configuration: config, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error.message)", "exit_code": "\(error.exitCode)"])
            ConfigOptions.fail("pulsegate: \(error.message)", code: error.exitCode)
        }
        do {
            try await daemon.run()
        } catch {
            logger.critical("daemon failed", metadata: ["error": "\(error)"])
            throw ExitCode(70)
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and the sample schema version.")
    @Flag(help: "Also print the metric registry (name, unit, kind, Open mHealth schema, LOINC).")
    var metrics = false

    func run() {
        print("pulsegate \(PulseGateVersion.current) (sample schema v\(Sample.schemaVersion))")
        guard metrics else { return }
        for m in Metric.all {
            let accepted = m.unit.accepted.map(\.code).joined(separator: " ")
            print(
                [m.name, m.unit.code, m.kind.rawValue, accepted, m.openMHealthSchema ?? "-", m.loinc ?? "-"]
                    .joined(separator: "\t"))
        }
    }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with the configuration.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate the configuration; name the failing key.")
        @OptionGroup var options: ConfigOptions

        func run() throws {
            let config = try options.load()
            print("configuration OK: \(options.path ?? "embedded defaults")")
            print("  listen \(config.host):\(config.port), state \(config.stateDirectory)")
            for sink in config.sinks { print("  sink \(sink.id) (\(sink.typeName))") }
            print("  api keys: \(config.apiKeys.count)")
            for vendor in config.vendors { print("  vendor \(vendor.id)") }
        }
    }
}

struct APIKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apikey", abstract: "Make API keys.", subcommands: [New.self])

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a key: prints the key once and the config entry that holds only its hash.")
        @Option(help: "Name shown in logs and metrics.") var name: String
        @Option(help: "Comma-separated scopes: samples:write, stream:read, links:create, kiosk:bind, admin.")
        var scopes: String = "samples:write"

        func run() throws {
            let key = APIKey.generate()
            let hash = APIKey.hash(key)
            print("key: \(key)")
            print("sha256: \(hash)")
            print("")
            print("# add to api_keys in the configuration:")
            print("  - name: \(name)")
            print("    sha256: \(hash)")
            print(
                "    scopes: [\(scopes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", "))]"
            )
        }
    }
}

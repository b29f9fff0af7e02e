import ArgumentParser
import Foundation
import Logging
import PulseGateAccounts
import PulseGateCore
import PulseGateDaemon
import PulseGateDelivery
import PulseGateOAuth
import PulseGateStore

/// `pulsegate doctor`: one verdict per line for everything the daemon needs, and exit 1 if any failed.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check configuration, state directory, store and sinks; one verdict per line.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        var failures = 0
        func verdict(_ ok: Bool, _ what: String, _ detail: String) {
            print("\(ok ? "ok  " : "FAIL") \(what): \(detail)")
            if !ok { failures += 1 }
        }
        let config: DaemonConfiguration
        do {
            config = try DaemonConfiguration.load(path: options.path, environment: ProcessInfo.processInfo.environment)
            verdict(true, "configuration", options.path ?? "embedded defaults")
        } catch {
            verdict(false, "configuration", "\(error)")
            throw ExitCode(1)
        }
        var logger = Logger(label: "pulsegate.doctor")
        logger.logLevel = .critical
        let daemon: Daemon
        do {
            daemon = try Daemon(configuration: config, logger: logger)
            verdict(true, "state directory", "\(config.stateDirectory) is writable")
        } catch {
            verdict(false, "state directory / store", error.message)
            throw ExitCode(1)
        }
        do {
            try await daemon.store.checkWritable()
            verdict(true, "store", "\(config.storePath): \(daemon.outbox.depth) samples waiting")
        } catch {
            verdict(false, "store", "\(error)")
        }
        for pump in daemon.pumps {
            if let problem = await pump.sink.healthCheck() {
                verdict(false, "sink \(pump.sink.id) (\(pump.sink.kind))", problem)
            } else {
                verdict(true, "sink \(pump.sink.id) (\(pump.sink.kind))", "reachable, \(pump.lag) samples behind")
            }
        }
        verdict(true, "token key", "\(config.tokenKeyFile) (key id \(daemon.engine.cipher.current.id.hexString))")
        let counts = (try? await daemon.accounts.connectionCounts()) ?? [:]
        for vendor in config.vendors {
            let byStatus = counts[vendor.id] ?? [:]
            let summary =
                byStatus.isEmpty
                ? "no connections" : byStatus.sorted { $0.key < $1.key }.map { "\($1) \($0)" }.joined(separator: ", ")
            let relink = byStatus["needs_relink"] ?? 0
            verdict(
                true, "vendor \(vendor.id)",
                "\(summary)\(relink > 0 ? " (people must link again)" : ""); webhooks at \(config.publicURL)/v1/webhooks/\(vendor.id)"
            )
        }
        await daemon.close()
        if failures > 0 { throw ExitCode(1) }
    }
}

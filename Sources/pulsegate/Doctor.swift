import ArgumentParser
import Foundation
import Logging
import PulseGateAccounts
import PulseGateCore
import PulseGateDaemon
import PulseGateDelivery
import PulseGateOAuth
import PulseGateSensors
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
        await sensorVerdicts(config.sensors, verdict: verdict)
        await daemon.close()
        if failures > 0 { throw ExitCode(1) }
    }
}

extension Doctor {
    /// The Bluetooth adapter and ANT+ sticks: a short scan on each backend. Finding none is a plain
    /// message for a daemon without kiosk stations (it serves cloud vendors), and a failure only when
    /// stations are configured and their backend cannot run.
    func sensorVerdicts(
        _ sensors: DaemonConfiguration.SensorConfiguration, verdict: (Bool, String, String) -> Void
    ) async {
        let kiosk = !sensors.stations.isEmpty
        var probe = sensors
        if !kiosk {
            probe.backends = ["bluez"] + (sensors.antNetworkKey == nil ? [] : ["ant"])
        }
        for backend in Daemon.sensorBackends(probe) {
            let what = backend.name == "ant" ? "ANT+ sticks (ant)" : "Bluetooth (\(backend.name))"
            do {
                let found = try await backend.scan(seconds: 2)
                verdict(true, what, "scanning works; \(found.count) sensor(s) heard in 2 s")
            } catch {
                let needed = kiosk && sensors.backends.contains(backend.name)
                verdict(!needed, what, needed ? error.message : "\(error.message) (no kiosk stations configured)")
            }
        }
        if !kiosk {
            if sensors.antNetworkKey == nil {
                verdict(
                    true, "ANT+ sticks (ant)", "not checked: no ANT+ network key configured (sensors.ant_network_key)")
            }
            verdict(true, "kiosk", "no stations configured: direct sensors are off")
        } else {
            verdict(
                true, "kiosk",
                "\(sensors.stations.count) station(s): \(sensors.stations.map(\.id).joined(separator: ", "))")
        }
    }
}

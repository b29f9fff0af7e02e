import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import PulseGateAccounts
import PulseGateCore
import PulseGateDelivery
import PulseGateOAuth
import PulseGateSensors
import PulseGateServer
import PulseGateStore
import PulseGateVendorKit
import ServiceLifecycle
import UnixSignals

/// Why the daemon could not start, with the process exit code that tells an operator (or systemd's
/// `RestartPreventExitStatus=`) what kind of problem it is.
public struct DaemonError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// `sysexits.h`: 73 cannot create (state directory), 78 configuration, 70 internal.
    public let exitCode: Int32

    public static func stateDirectory(_ message: String) -> DaemonError { .init(message: message, exitCode: 73) }
    public static func config(_ error: ConfigError) -> DaemonError {
        .init(message: "invalid configuration: \(error)", exitCode: 78)
    }
    public static func internalFailure(_ message: String) -> DaemonError { .init(message: message, exitCode: 70) }

    public var description: String { message }
}

/// The assembled daemon: store → outbox → sinks → HTTP server, built the same way by `main` and by
/// tests (tests pass port 0 and their own configuration).
public final class Daemon: Sendable {
    public let configuration: DaemonConfiguration
    public let store: SQLiteStore
    public let outbox: Outbox
    public let pumps: [SinkPump]
    public let telemetry: Telemetry
    public let notifier: SystemdNotifier
    public let accounts: AccountStore
    public let engine: AccountEngine
    let sensors: SensorService
    /// Only made when something speaks HTTP outward (an HTTP sink, a vendor): it must be shut down.
    private let httpClient: HTTPClient?
    private let logger: Logger

    /// Opens the state directory, the store and the sinks. Nothing listens yet.
    public init(configuration: DaemonConfiguration, logger: Logger, telemetry: Telemetry = Telemetry())
        throws(DaemonError)
    {
        self.configuration = configuration
        self.logger = logger
        self.telemetry = telemetry
        try Self.prepareStateDirectory(configuration.stateDirectory)
        do {
            store = try SQLiteStore(path: configuration.storePath, synchronous: configuration.synchronous)
            outbox = try Outbox(
                store: store, sinkIDs: configuration.sinks.map(\.id), highWatermark: configuration.highWatermark,
                logger: logger)
        } catch {
            if error.code == .cannotOpen || error.code == .storageFull {
                throw .stateDirectory(error.message)
            }
            throw .internalFailure(error.message)
        }
        let needsHTTP =
            !configuration.vendors.isEmpty
            || configuration.sinks.contains {
                if case .http = $0.kind { return true }; return false
            }
        var clientConfig = HTTPClient.Configuration()
        clientConfig.redirectConfiguration = .disallow
        clientConfig.timeout = .init(connect: .seconds(5))
        clientConfig.connectionPool = .init(idleTimeout: .seconds(60))
        let client = needsHTTP ? HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfig) : nil
        httpClient = client
        notifier = SystemdNotifier(logger: logger)
        let outbox = self.outbox
        pumps = configuration.sinks.map { sinkConfig in
            let sink: any Sink
            switch sinkConfig.kind {
            case .http(let url, let secret, let timeout, _):
                sink = HTTPSink(
                    id: sinkConfig.id, url: url, secret: secret, timeout: timeout, client: client!, logger: logger)
            case .file(let path, let rotateBytes, let keepFiles):
                sink = FileSink(id: sinkConfig.id, path: path, rotateBytes: rotateBytes, keepFiles: keepFiles)
            case .stdout:
                sink = StdoutSink(id: sinkConfig.id)
            }
            return SinkPump(
                sink: sink, outbox: outbox, batchSize: sinkConfig.batchSize, backoff: sinkConfig.backoff,
                drainTimeout: configuration.shutdownTimeout, metricsFactory: telemetry.factory, logger: logger)
        }
        accounts = AccountStore(store: store, logger: logger)
        let cipher = try Self.tokenCipher(configuration)
        var runtimes = [VendorRuntime]()
        let adapters: [String: any VendorAdapter]
        do {
            adapters = Dictionary(uniqueKeysWithValues: try VendorRegistry.adapters().map { ($0.manifest.id, $0) })
        } catch {
            throw .internalFailure("built-in vendor manifest: \(error)")
        }
        for vendor in configuration.vendors {
            guard let adapter = adapters[vendor.id] else { continue }
            let settings = Self.vendorSettings(vendor, manifest: adapter.manifest, publicURL: configuration.publicURL)
            let http = VendorHTTP(
                vendor: vendor.id, transport: AsyncHTTPTransport(client: client!), rules: settings.rateLimits,
                headerReader: adapter.rateLimitHeaders, logger: logger, metricsFactory: telemetry.factory)
            let context = VendorContext(
                manifest: adapter.manifest, settings: settings, http: http,
                state: StoredVendorState(vendor: vendor.id, accounts: accounts, cipher: cipher), logger: logger)
            runtimes.append(VendorRuntime(adapter: adapter, settings: settings, context: context))
        }
        engine = AccountEngine(
            vendors: runtimes, accounts: accounts, outbox: outbox, cipher: cipher, settings: configuration.accounts,
            logger: logger, metricsFactory: telemetry.factory)
        sensors = SensorService(
            stations: configuration.sensors.stations, timing: configuration.sensors.timing,
            // A cloud-only daemon (no stations) opens no radio.
            backends: configuration.sensors.stations.isEmpty ? [] : Self.sensorBackends(configuration.sensors),
            outbox: outbox, logger: logger,
            metricsFactory: telemetry.factory)
    }

    /// The configured sensor backends (also what `sensors scan` and `doctor` probe).
    public static func sensorBackends(_ c: DaemonConfiguration.SensorConfiguration) -> [any SensorBackend] {
        c.backends.compactMap { name -> (any SensorBackend)? in
            switch name {
            case "bluez": return BlueZBackend(busAddress: c.bluezBus)
            case "hci": return HCIBackend(adapter: c.hciAdapter)
            // A malformed key was refused by the configuration; `nil` makes the backend say so again.
            case "ant": return ANTBackend(networkKey: c.antNetworkKey.flatMap { try? ANTNetworkKey(hex: $0.text) })
            default: return nil
            }
        }
    }

    /// The manifest's documented defaults merged with the operator's settings for one vendor.
    static func vendorSettings(
        _ v: DaemonConfiguration.VendorConfiguration, manifest: VendorManifest, publicURL: String
    ) -> VendorSettings {
        var urls = [String: URL]()
        for (name, text) in manifest.urls { urls[name] = URL(string: v.urls[name] ?? text)! }
        return VendorSettings(
            clientID: v.clientID, clientSecret: v.clientSecret, urls: urls, scopes: v.scopes ?? manifest.oauth.scopes,
            redirectURI: "\(publicURL)/v1/oauth/\(v.id)/callback", webhookURL: "\(publicURL)/v1/webhooks/\(v.id)",
            secrets: v.secrets, allowedHosts: manifest.allowedHosts + v.allowedHosts, rateLimits: manifest.rateLimits,
            backfillDays: v.backfillDays ?? manifest.backfill.defaultDays,
            silenceHours: v.silenceHours ?? manifest.silenceHours)
    }

    /// Loads the token key (and previous keys). Without a configured key file, a key is created in the
    /// state directory on first start (mode 0600), so `make run` works with encryption at rest from the
    /// first token; a configured file that is missing is an error (a lost key would orphan every token).
    static func tokenCipher(_ c: DaemonConfiguration) throws(DaemonError) -> TokenCipher {
        let fm = FileManager.default
        if !fm.fileExists(atPath: c.tokenKeyFile) {
            guard !c.tokenKeyConfigured else {
                throw .config(ConfigError(key: "tokens.key_file", "\(c.tokenKeyFile) does not exist"))
            }
            let hex = TokenCipher.Key.generate().hexString + "\n"
            guard
                fm.createFile(atPath: c.tokenKeyFile, contents: Data(hex.utf8), attributes: [.posixPermissions: 0o600])
            else { throw .stateDirectory("cannot create the token key \(c.tokenKeyFile)") }
        }
        do {
            let current = try TokenCipher.Key(file: c.tokenKeyFile)
            var previous = [TokenCipher.Key]()
            for file in c.previousTokenKeyFiles { previous.append(try TokenCipher.Key(file: file)) }
            return TokenCipher(current: current, previous: previous)
        } catch {
            throw .config(ConfigError(key: "tokens.key_file", error.description))
        }
    }

    /// Creates the directory if needed and proves it is writable, so a bad path fails at start with a
    /// clear message rather than at the first sample.
    static func prepareStateDirectory(_ path: String) throws(DaemonError) {
        let fm = FileManager.default
        do {
            try fm.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        } catch {
            throw .stateDirectory("state directory \(path) cannot be created: \(error.localizedDescription)")
        }
        let probe = "\(path)/.pulsegate-write-probe-\(getpid())"
        guard fm.createFile(atPath: probe, contents: Data("ok".utf8)) else {
            throw .stateDirectory("state directory \(path) is not writable by uid \(getuid())")
        }
        try? fm.removeItem(atPath: probe)
    }

    /// The HTTP application with every route, the delivery pumps and the systemd notifier as services.
    public func makeApplication() -> some ApplicationProtocol {
        let router = Router()
        let keyring = APIKeyring(keys: configuration.apiKeys)
        let engine = self.engine
        HealthController(
            store: store, outbox: outbox, pumps: pumps, telemetry: telemetry,
            beforeScrape: { await engine.recordGauges() }
        ).register(on: router)
        IntakeController(
            outbox: outbox, keyring: keyring, maxBodyBytes: configuration.maxBodyBytes,
            retryAfterSeconds: configuration.retryAfterSeconds, metricsFactory: telemetry.factory, logger: logger
        ).register(on: router)
        AccountsController(engine: engine, keyring: keyring, logger: logger).register(on: router)
        KioskController(manager: sensors.manager, keyring: keyring, maxBinding: configuration.sensors.maxBinding)
            .register(on: router)
        let notifier = self.notifier
        let logger = self.logger
        let sinks = configuration.sinks.map { "\($0.id) (\($0.typeName))" }.joined(separator: ", ")
        let storePath = configuration.storePath
        return Application(
            router: router,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "pulsegate"),
            services: [
                DeliveryService(pumps: pumps), AccountWorkers(engine: engine, logger: logger), sensors, notifier,
            ],
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                logger.notice(
                    "pulsegate ready",
                    metadata: [
                        "address": "\(address)", "store": "\(storePath)", "sinks": "\(sinks)",
                        "version": "\(PulseGateVersion.current)",
                    ])
                notifier.ready(status: "listening on \(address)")
            },
            logger: logger)
    }

    /// Runs until SIGTERM/SIGINT, then stops intake, drains the sinks for up to the shutdown timeout and
    /// closes the store.
    public func run() async throws {
        let app = makeApplication()
        var groupConfig = ServiceGroupConfiguration(
            services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfig.maximumGracefulShutdownDuration = configuration.shutdownTimeout + .seconds(5)
        let group = ServiceGroup(configuration: groupConfig)
        do {
            try await group.run()
        } catch {
            await close()
            throw error
        }
        await close()
        logger.notice("pulsegate stopped", metadata: ["outbox_depth": "\(outbox.depth)"])
    }

    /// Refuses further intake and releases the HTTP client and the store.
    public func close() async {
        outbox.close()
        try? await httpClient?.shutdown()
        try? store.close()
    }
}

/// The daemon's version, printed by `pulsegate version` and in the ready log line.
public enum PulseGateVersion {
    public static let current = "0.1.0"
}

import Foundation
import Logging
import PulseGateAccounts
import PulseGateCore
import PulseGateDelivery
import PulseGateOAuth
import PulseGateSensors
import PulseGateServer
import PulseGateStore
import PulseGateVendorKit
import Yams

/// The validated configuration the daemon runs with: defaults applied, paths resolved, secrets read.
///
/// Built by ``load(path:environment:)`` from one YAML file plus `PULSEGATE__…` environment overrides;
/// ``embeddedDefaults`` is what `make run` uses without any file.
public struct DaemonConfiguration: Sendable {
    /// Listen address; loopback unless an operator opens it up.
    public var host = "127.0.0.1"
    /// `0` picks a free port.
    public var port = 8080
    public var maxBodyBytes = 8 * 1024 * 1024
    /// Absolute path of the state directory (created if missing).
    public var stateDirectory: String
    public var storePath: String
    public var synchronous = SQLiteStore.Synchronous.full
    public var highWatermark = 1_000_000
    public var retryAfterSeconds = 5
    public var sinks: [SinkConfiguration]
    public var shutdownTimeout = Duration.seconds(25)
    public var logLevel = Logger.Level.info
    public var logFormat = LogFormat.json
    public var apiKeys: [APIKey] = []
    /// Where vendors and browsers reach this daemon (OAuth callbacks, webhooks); no trailing slash.
    public var publicURL: String
    /// The token key file, and whether the operator named it (then it must exist; otherwise it is
    /// created in the state directory on first start).
    public var tokenKeyFile: String
    public var tokenKeyConfigured = false
    public var previousTokenKeyFiles: [String] = []
    public var accounts = AccountSettings()
    public var vendors: [VendorConfiguration] = []
    public var sensors = SensorConfiguration()

    /// Direct sensors and kiosk stations; without stations no backend runs.
    public struct SensorConfiguration: Sendable {
        public var backends: [String] = []
        public var bluezBus: String?
        public var hciAdapter = "hci0"
        public var antNetworkKey: Secret?
        public var timing = SensorManager.Timing()
        public var stations: [Station] = []
        public var maxBinding = Duration.seconds(12 * 3600)
    }

    /// One vendor app as configured; the manifest supplies everything not given here.
    public struct VendorConfiguration: Sendable {
        public var id: String
        public var clientID: String
        public var clientSecret: Secret
        public var scopes: [String]?
        public var urls: [String: String]
        public var allowedHosts: [String]
        public var secrets: [String: Secret]
        public var backfillDays: Int?
        public var silenceHours: Double?
    }

    public enum LogFormat: String, Sendable, CaseIterable {
        case json, text
    }

    /// One configured sink.
    public struct SinkConfiguration: Sendable {
        public enum Kind: Sendable {
            case http(url: String, secret: Secret?, timeout: Duration, backoff: Backoff)
            case file(path: String, rotateBytes: Int64, keepFiles: Int)
            case stdout
        }
        public var id: String
        public var kind: Kind
        public var batchSize: Int
        public var backoff: Backoff

        public var typeName: String {
            switch kind {
            case .http: "http"
            case .file: "file"
            case .stdout: "stdout"
            }
        }
    }

    /// No file: SQLite and an NDJSON file sink under `./var`.
    public static var embeddedDefaults: DaemonConfiguration {
        try! resolve(ConfigFile(), environment: [:], baseDirectory: FileManager.default.currentDirectoryPath)
    }

    /// Reads `path` (or nothing: the embedded defaults), applies environment overrides, validates.
    ///
    /// - Parameter environment: the process environment; `PULSEGATE__A__B=v` sets key `a.b`, list items
    ///   by index (`PULSEGATE__SINKS__0__URL`), values read as YAML scalars. `CREDENTIALS_DIRECTORY`
    ///   resolves relative `hmac_secret_file` paths (systemd `LoadCredential=`).
    public static func load(path: String?, environment: [String: String]) throws(ConfigError) -> DaemonConfiguration {
        var tree: Any = [String: Any]()
        var baseDirectory = FileManager.default.currentDirectoryPath
        if let path {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigError(key: "", "cannot read config file \(path): \(error.localizedDescription)")
            }
            do {
                tree = try Yams.load(yaml: text) ?? [String: Any]()
            } catch {
                throw ConfigError(key: "", "\(path) is not valid YAML: \(error)")
            }
            guard tree is [String: Any] else { throw ConfigError(key: "", "\(path) must hold a YAML mapping") }
            baseDirectory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            if baseDirectory.isEmpty { baseDirectory = FileManager.default.currentDirectoryPath }
            if !path.hasPrefix("/") {
                baseDirectory =
                    URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
                    .appendingPathComponent(path).deletingLastPathComponent().path
            }
        }
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("PULSEGATE__") {
            let parts = name.dropFirst("PULSEGATE__".count).components(separatedBy: "__").map { $0.lowercased() }
            guard !parts.contains(where: \.isEmpty) else { throw ConfigError(key: name, "malformed override name") }
            let scalar: Any = (try? Yams.load(yaml: value)).flatMap { $0 } ?? value
            tree = try set(scalar, at: parts[...], in: tree, name: name)
        }
        let file: ConfigFile
        do {
            let yaml = try Yams.dump(object: tree)
            file = try YAMLDecoder().decode(ConfigFile.self, from: yaml)
            let known = try Yams.load(yaml: try YAMLEncoder().encode(file)) ?? [String: Any]()
            if let unknown = firstUnknownKey(tree, known: known, path: "") {
                throw ConfigError(key: unknown, "unknown key")
            }
        } catch let error as ConfigError {
            throw error
        } catch let error as DecodingError {
            throw describe(error)
        } catch {
            throw ConfigError(key: "", "cannot read configuration: \(error)")
        }
        return try resolve(file, environment: environment, baseDirectory: baseDirectory)
    }

    private static func set(_ value: Any, at path: ArraySlice<String>, in node: Any, name: String) throws(ConfigError)
        -> Any
    {
        guard let head = path.first else { return value }
        let rest = path.dropFirst()
        if var list = node as? [Any] {
            guard let index = Int(head), index >= 0, index <= list.count else {
                throw ConfigError(key: name, "'\(head)' is not an index of a list with \(list.count) items")
            }
            if index == list.count {
                list.append(try set(value, at: rest, in: [String: Any](), name: name))
            } else {
                list[index] = try set(value, at: rest, in: list[index], name: name)
            }
            return list
        }
        var map = node as? [String: Any] ?? [:]
        let child = map[head] ?? (Int(rest.first ?? "") != nil ? [Any]() : [String: Any]())
        map[head] = try set(value, at: rest, in: child, name: name)
        return map
    }

    private static func firstUnknownKey(_ given: Any, known: Any, path: String) -> String? {
        if let map = given as? [String: Any] {
            let knownMap = known as? [String: Any] ?? [:]
            for key in map.keys.sorted() {
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard let knownChild = knownMap[key] else {
                    if map[key] is NSNull { continue }
                    return childPath
                }
                if let unknown = firstUnknownKey(map[key]!, known: knownChild, path: childPath) { return unknown }
            }
        } else if let list = given as? [Any] {
            let knownList = known as? [Any] ?? []
            for (i, item) in list.enumerated() where i < knownList.count {
                if let unknown = firstUnknownKey(item, known: knownList[i], path: "\(path)[\(i)]") { return unknown }
            }
        }
        return nil
    }

    private static func describe(_ error: DecodingError) -> ConfigError {
        func path(_ c: DecodingError.Context) -> String {
            var out = ""
            for key in c.codingPath {
                if let i = key.intValue {
                    out += "[\(i)]"
                } else {
                    out += out.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
            return out
        }
        switch error {
        case .typeMismatch(let type, let c): return ConfigError(key: path(c), "expected \(typeName(type))")
        case .valueNotFound(let type, let c): return ConfigError(key: path(c), "expected \(typeName(type))")
        case .keyNotFound(let key, let c): return ConfigError(key: path(c), "missing key \(key.stringValue)")
        case .dataCorrupted(let c): return ConfigError(key: path(c), c.debugDescription)
        @unknown default: return ConfigError(key: "", "\(error)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is Double.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        default: type is any Collection.Type ? "a list" : "a mapping"
        }
    }

    private static func isLowerAlphanumeric(_ c: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c)
    }

    static func resolve(_ file: ConfigFile, environment: [String: String], baseDirectory: String) throws(ConfigError)
        -> DaemonConfiguration
    {
        func absolute(_ path: String, against base: String) -> String {
            path.hasPrefix("/")
                ? path : URL(fileURLWithPath: base).appendingPathComponent(path).standardizedFileURL.path
        }
        let stateDirectory = absolute(file.stateDirectory ?? "var", against: baseDirectory)
        var c = DaemonConfiguration(
            stateDirectory: stateDirectory,
            storePath: absolute(file.store?.sqlite?.path ?? "pulsegate.sqlite", against: stateDirectory),
            sinks: [], publicURL: "",
            tokenKeyFile: absolute(file.tokens?.keyFile ?? "token.key", against: stateDirectory))

        if let host = file.server?.host {
            guard !host.isEmpty else { throw ConfigError(key: "server.host", "must not be empty") }
            c.host = host
        }
        if let port = file.server?.port {
            guard (0...65535).contains(port) else {
                throw ConfigError(key: "server.port", "must be 0...65535, not \(port)")
            }
            c.port = port
        }
        if let max = file.server?.maxBodyBytes {
            guard max >= 1024 else { throw ConfigError(key: "server.max_body_bytes", "must be at least 1024") }
            c.maxBodyBytes = max
        }
        if let sync = file.store?.sqlite?.synchronous {
            guard let value = SQLiteStore.Synchronous(rawValue: sync) else {
                throw ConfigError(key: "store.sqlite.synchronous", "must be full or normal, not '\(sync)'")
            }
            c.synchronous = value
        }
        if let hw = file.outbox?.highWatermark {
            guard hw >= 1 else { throw ConfigError(key: "outbox.high_watermark", "must be positive") }
            c.highWatermark = hw
        }
        if let ra = file.outbox?.retryAfterSeconds {
            guard (1...3600).contains(ra) else {
                throw ConfigError(key: "outbox.retry_after_seconds", "must be 1...3600")
            }
            c.retryAfterSeconds = ra
        }
        let defaultBatch = file.outbox?.batchSize ?? 1000
        guard (1...100_000).contains(defaultBatch) else {
            throw ConfigError(key: "outbox.batch_size", "must be 1...100000")
        }
        if let t = file.shutdown?.timeoutSeconds {
            guard t >= 0, t <= 3600 else { throw ConfigError(key: "shutdown.timeout_seconds", "must be 0...3600") }
            c.shutdownTimeout = .milliseconds(Int64(t * 1000))
        }
        if let level = file.log?.level {
            guard let value = Logger.Level(rawValue: level) else {
                let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
                throw ConfigError(key: "log.level", "must be one of \(levels)")
            }
            c.logLevel = value
        }
        if let format = file.log?.format {
            guard let value = LogFormat(rawValue: format) else {
                throw ConfigError(key: "log.format", "must be json or text")
            }
            c.logFormat = value
        }

        let sinks = file.sinks ?? [ConfigFile.Sink(id: "archive", type: "file", path: "samples.ndjson")]
        guard !sinks.isEmpty else {
            throw ConfigError(key: "sinks", "at least one sink is needed: without one, accepted samples go nowhere")
        }
        var seen = Set<String>()
        for (i, sink) in sinks.enumerated() {
            let key = "sinks[\(i)]"
            guard let id = sink.id, (1...63).contains(id.utf8.count),
                id.utf8.allSatisfy({ isLowerAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }),
                isLowerAlphanumeric(id.utf8.first!)
            else {
                throw ConfigError(key: "\(key).id", "required: lowercase letters, digits, '_' or '-'")
            }
            guard seen.insert(id).inserted else { throw ConfigError(key: "\(key).id", "'\(id)' is used twice") }
            let batch = sink.batchSize ?? defaultBatch
            guard (1...100_000).contains(batch) else {
                throw ConfigError(key: "\(key).batch_size", "must be 1...100000")
            }
            let initial = sink.backoff?.initialMs ?? 200
            let maximum = sink.backoff?.maxMs ?? 60_000
            guard initial >= 1, maximum >= initial else {
                throw ConfigError(key: "\(key).backoff", "initial_ms must be ≥ 1 and max_ms ≥ initial_ms")
            }
            let backoff = Backoff(initial: .milliseconds(initial), maximum: .milliseconds(maximum))
            let kind: SinkConfiguration.Kind
            func forbid(_ name: String, _ value: Any?) throws(ConfigError) {
                if value != nil {
                    throw ConfigError(key: "\(key).\(name)", "does not apply to a \(sink.type ?? "") sink")
                }
            }
            switch sink.type {
            case "file":
                try forbid("url", sink.url)
                try forbid("hmac_secret", sink.hmacSecret)
                try forbid("hmac_secret_file", sink.hmacSecretFile)
                try forbid("timeout_seconds", sink.timeoutSeconds)
                guard let path = sink.path, !path.isEmpty else {
                    throw ConfigError(key: "\(key).path", "required for a file sink")
                }
                let rotate = sink.rotateBytes ?? 100 * 1024 * 1024
                guard rotate >= 4096 else { throw ConfigError(key: "\(key).rotate_bytes", "must be at least 4096") }
                let keep = sink.keepFiles ?? 10
                guard keep >= 0 else { throw ConfigError(key: "\(key).keep_files", "must not be negative") }
                kind = .file(path: absolute(path, against: stateDirectory), rotateBytes: Int64(rotate), keepFiles: keep)
            case "http":
                try forbid("path", sink.path)
                try forbid("rotate_bytes", sink.rotateBytes)
                try forbid("keep_files", sink.keepFiles)
                guard let url = sink.url, let parsed = URL(string: url),
                    ["http", "https"].contains(parsed.scheme ?? ""),
                    parsed.host?.isEmpty == false
                else {
                    throw ConfigError(key: "\(key).url", "not an http(s) URL")
                }
                let secret = try readSecret(
                    inline: sink.hmacSecret, file: sink.hmacSecretFile, key: "\(key).hmac_secret",
                    environment: environment, baseDirectory: baseDirectory)
                if let secret, secret.bytes.count < 16 {
                    throw ConfigError(
                        key: sink.hmacSecret != nil ? "\(key).hmac_secret" : "\(key).hmac_secret_file",
                        "must be at least 16 bytes")
                }
                let timeout = sink.timeoutSeconds ?? 10
                guard timeout > 0, timeout <= 600 else {
                    throw ConfigError(key: "\(key).timeout_seconds", "must be in (0, 600]")
                }
                kind = .http(url: url, secret: secret, timeout: .milliseconds(Int64(timeout * 1000)), backoff: backoff)
            case "stdout":
                for (name, value) in [("path", sink.path as Any?), ("url", sink.url), ("hmac_secret", sink.hmacSecret)]
                {
                    try forbid(name, value)
                }
                kind = .stdout
            case let other:
                throw ConfigError(key: "\(key).type", "must be http, file or stdout, not '\(other ?? "nothing")'")
            }
            c.sinks.append(SinkConfiguration(id: id, kind: kind, batchSize: batch, backoff: backoff))
        }

        for (i, entry) in (file.apiKeys ?? []).enumerated() {
            let key = "api_keys[\(i)]"
            guard let name = entry.name, !name.isEmpty else { throw ConfigError(key: "\(key).name", "required") }
            guard let hash = entry.sha256?.lowercased(), hash.utf8.count == 64,
                hash.utf8.allSatisfy({ isLowerAlphanumeric($0) && $0 <= UInt8(ascii: "f") })  // 0-9, a-f
            else {
                throw ConfigError(
                    key: "\(key).sha256", "required: the hex SHA-256 of the key (pulsegate apikey new prints it)")
            }
            var scopes = Set<Scope>()
            for (j, name) in (entry.scopes ?? []).enumerated() {
                guard let scope = Scope(rawValue: name) else {
                    let all = Scope.allCases.map(\.rawValue).joined(separator: ", ")
                    throw ConfigError(key: "\(key).scopes[\(j)]", "'\(name)' is not one of \(all)")
                }
                scopes.insert(scope)
            }
            guard !scopes.isEmpty else { throw ConfigError(key: "\(key).scopes", "at least one scope is needed") }
            var limit: APIKey.RateLimit?
            if let r = entry.rateLimit {
                guard let rps = r.requestsPerSecond, rps > 0 else {
                    throw ConfigError(key: "\(key).rate_limit.requests_per_second", "must be a positive number")
                }
                let burst = r.burst ?? max(1, rps)
                guard burst >= 1 else { throw ConfigError(key: "\(key).rate_limit.burst", "must be at least 1") }
                limit = .init(requestsPerSecond: rps, burst: burst)
            }
            c.apiKeys.append(APIKey(name: name, sha256: hash, scopes: scopes, rateLimit: limit))
        }
        try resolveAccounts(file, into: &c, environment: environment, baseDirectory: baseDirectory)
        try resolveSensors(file, into: &c, environment: environment, baseDirectory: baseDirectory)
        return c
    }

    /// Reads a secret given inline or as a file (relative to `$CREDENTIALS_DIRECTORY` when set).
    static func readSecret(
        inline: String?, file: String?, key: String, environment: [String: String], baseDirectory: String
    ) throws(ConfigError) -> Secret? {
        if inline != nil, file != nil { throw ConfigError(key: key, "give \(key) or \(key)_file, not both") }
        if let inline {
            guard !inline.isEmpty else { throw ConfigError(key: key, "must not be empty") }
            return Secret(inline)
        }
        guard let file else { return nil }
        let base = environment["CREDENTIALS_DIRECTORY"] ?? baseDirectory
        let path = file.hasPrefix("/") ? file : URL(fileURLWithPath: base).appendingPathComponent(file).path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(key: "\(key)_file", "cannot read \(path)")
        }
        var bytes = [UInt8](data)
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        guard !bytes.isEmpty else { throw ConfigError(key: "\(key)_file", "\(path) is empty") }
        return Secret(bytes: bytes)
    }

    static func resolveAccounts(
        _ file: ConfigFile, into c: inout DaemonConfiguration, environment: [String: String], baseDirectory: String
    ) throws(ConfigError) {
        if let url = file.publicURL {
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil,
                parsed.query == nil
            else { throw ConfigError(key: "public_url", "must be an absolute http(s) URL without a query") }
            c.publicURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        } else {
            c.publicURL = "http://\(c.host):\(c.port)"
        }
        c.tokenKeyConfigured = file.tokens?.keyFile != nil
        if let credential = file.tokens?.keyCredential {
            // systemd's LoadCredential=<name>:<path> puts the key at $CREDENTIALS_DIRECTORY/<name>.
            guard file.tokens?.keyFile == nil else {
                throw ConfigError(key: "tokens.key_credential", "give key_file or key_credential, not both")
            }
            guard let directory = environment["CREDENTIALS_DIRECTORY"] else {
                throw ConfigError(
                    key: "tokens.key_credential", "set, but $CREDENTIALS_DIRECTORY is not (LoadCredential= in the unit)"
                )
            }
            c.tokenKeyFile = URL(fileURLWithPath: directory).appendingPathComponent(credential).path
            c.tokenKeyConfigured = true
        }
        c.previousTokenKeyFiles = (file.tokens?.previousKeyFiles ?? []).map {
            $0.hasPrefix("/") ? $0 : URL(fileURLWithPath: c.stateDirectory).appendingPathComponent($0).path
        }
        if let a = file.accounts {
            if let ttl = a.stateTTLSeconds {
                guard (1...86_400).contains(ttl) else {
                    throw ConfigError(key: "accounts.state_ttl_seconds", "must be 1...86400")
                }
                c.accounts.stateLifetime = .seconds(ttl)
            }
            if let days = a.rawRetentionDays {
                guard days >= 0 else { throw ConfigError(key: "accounts.raw_retention_days", "must not be negative") }
                c.accounts.rawRetention = .seconds(Int64(days * 86_400))
            }
            if let days = a.inboxRetentionDays {
                guard days >= 0 else { throw ConfigError(key: "accounts.inbox_retention_days", "must not be negative") }
                c.accounts.inboxRetention = .seconds(Int64(days * 86_400))
            }
            if let s = a.watchdogIntervalSeconds {
                guard s >= 1 else { throw ConfigError(key: "accounts.watchdog_interval_seconds", "must be positive") }
                c.accounts.watchdogInterval = .seconds(s)
            }
            if let n = a.refreshConcurrency {
                guard (1...1000).contains(n) else {
                    throw ConfigError(key: "accounts.refresh_concurrency", "must be 1...1000")
                }
                c.accounts.refreshConcurrency = n
            }
            if let n = a.jobConcurrency {
                guard (1...1000).contains(n) else {
                    throw ConfigError(key: "accounts.job_concurrency", "must be 1...1000")
                }
                c.accounts.jobConcurrency = n
            }
        }
        let manifests: [String: VendorManifest]
        do {
            manifests = Dictionary(
                uniqueKeysWithValues: try VendorRegistry.adapters().map { ($0.manifest.id, $0.manifest) })
        } catch {
            throw ConfigError(key: "vendors", "a built-in vendor manifest is broken: \(error)")
        }
        for (id, entry) in (file.vendors ?? [:]).sorted(by: { $0.key < $1.key }) {
            let key = "vendors.\(id)"
            guard let manifest = manifests[id] else {
                throw ConfigError(
                    key: key, "unknown vendor (known: \(manifests.keys.sorted().joined(separator: ", ")))")
            }
            if entry.enabled == false { continue }
            guard let clientID = entry.clientID, !clientID.isEmpty else {
                throw ConfigError(key: "\(key).client_id", "required (from the vendor's developer portal)")
            }
            guard
                let secret = try readSecret(
                    inline: entry.clientSecret, file: entry.clientSecretFile, key: "\(key).client_secret",
                    environment: environment, baseDirectory: baseDirectory)
            else { throw ConfigError(key: "\(key).client_secret", "required (or client_secret_file)") }
            for (name, url) in entry.urls ?? [:] {
                guard manifest.urls[name] != nil else {
                    throw ConfigError(
                        key: "\(key).urls.\(name)",
                        "unknown endpoint (known: \(manifest.urls.keys.sorted().joined(separator: ", ")))")
                }
                guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil
                else { throw ConfigError(key: "\(key).urls.\(name)", "must be an absolute http(s) URL") }
            }
            var secrets = [String: Secret]()
            for (name, value) in entry.webhook ?? [:] {
                if name.hasSuffix("_file") {
                    let base = String(name.dropLast(5))
                    secrets[base] = try readSecret(
                        inline: nil, file: value, key: "\(key).webhook.\(base)", environment: environment,
                        baseDirectory: baseDirectory)
                } else {
                    secrets[name] = try readSecret(
                        inline: value, file: entry.webhook?["\(name)_file"], key: "\(key).webhook.\(name)",
                        environment: environment, baseDirectory: baseDirectory)
                }
            }
            if let days = entry.backfillDays {
                guard (0...manifest.backfill.horizonDays).contains(days) else {
                    throw ConfigError(
                        key: "\(key).backfill_days",
                        "must be 0...\(manifest.backfill.horizonDays) (the vendor's horizon)")
                }
            }
            if let hours = entry.silenceHours, hours < 0 {
                throw ConfigError(key: "\(key).silence_hours", "must not be negative (0 turns the watchdog off)")
            }
            c.vendors.append(
                VendorConfiguration(
                    id: id, clientID: clientID, clientSecret: secret, scopes: entry.scopes, urls: entry.urls ?? [:],
                    allowedHosts: entry.allowedHosts ?? [], secrets: secrets, backfillDays: entry.backfillDays,
                    silenceHours: entry.silenceHours))
        }
    }
}

extension DaemonConfiguration {
    /// `sensors` and `kiosk`: backends, the ANT+ key, timing, stations with their sensors and priorities.
    static func resolveSensors(
        _ file: ConfigFile, into c: inout DaemonConfiguration, environment: [String: String], baseDirectory: String
    ) throws(ConfigError) {
        let s = file.sensors
        c.sensors.bluezBus = s?.bluezBus
        if let adapter = s?.hciAdapter {
            guard adapter.hasPrefix("hci"), Int(adapter.dropFirst(3)) != nil else {
                throw ConfigError(key: "sensors.hci_adapter", "must name an adapter like hci0")
            }
            c.sensors.hciAdapter = adapter
        }
        c.sensors.antNetworkKey = try readSecret(
            inline: s?.antNetworkKey, file: s?.antNetworkKeyFile, key: "sensors.ant_network_key",
            environment: environment, baseDirectory: baseDirectory)
        if let key = c.sensors.antNetworkKey {
            let hex = key.text.filter { !$0.isWhitespace }
            guard hex.count == 16, [UInt8](hex: hex) != nil else {
                throw ConfigError(key: "sensors.ant_network_key", "must be 8 bytes in hex (16 hex digits)")
            }
        }
        let known = ["bluez", "hci", "ant"]
        let backends = s?.backends ?? (c.sensors.antNetworkKey == nil ? ["bluez"] : ["bluez", "ant"])
        for (i, name) in backends.enumerated() where !known.contains(name) {
            throw ConfigError(key: "sensors.backends[\(i)]", "unknown backend '\(name)' (known: bluez, hci, ant)")
        }
        if backends.contains("ant"), c.sensors.antNetworkKey == nil {
            throw ConfigError(
                key: "sensors.ant_network_key",
                "the ant backend needs the ANT+ network key (licensed from the ANT+ alliance; never shipped)")
        }
        c.sensors.backends = backends
        if let lost = s?.lostAfterSeconds {
            guard (1...600).contains(lost) else {
                throw ConfigError(key: "sensors.lost_after_seconds", "must be 1...600")
            }
            c.sensors.timing.lostAfter = .milliseconds(Int64(lost * 1000))
        }
        if let after = s?.failoverAfterSeconds {
            guard (0.5...600).contains(after) else {
                throw ConfigError(key: "sensors.failover_after_seconds", "must be 0.5...600")
            }
            c.sensors.timing.failoverAfter = .milliseconds(Int64(after * 1000))
        }
        if let hours = file.kiosk?.maxBindingHours {
            guard hours > 0, hours <= 168 else {
                throw ConfigError(key: "kiosk.max_binding_hours", "must be more than 0 and at most 168")
            }
            c.sensors.maxBinding = .seconds(Int64(hours * 3600))
        }
        var ids = Set<String>()
        for (i, entry) in (file.kiosk?.stations ?? []).enumerated() {
            let key = "kiosk.stations[\(i)]"
            guard let id = entry.id, (1...63).contains(id.utf8.count),
                id.utf8.allSatisfy({ isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") })
            else { throw ConfigError(key: "\(key).id", "required: lowercase letters, digits, '-' or '_'") }
            guard ids.insert(id).inserted else { throw ConfigError(key: "\(key).id", "'\(id)' is used twice") }
            func sensor(_ text: String, _ at: String) throws(ConfigError) -> SensorID {
                guard let parsed = SensorID(parsing: text) else {
                    throw ConfigError(
                        key: at, "'\(text)' is not a sensor (ble:AA:BB:CC:DD:EE:FF or ant:<device number>/<type>)")
                }
                return parsed
            }
            var sensors = [SensorID]()
            for (j, text) in (entry.sensors ?? []).enumerated() {
                sensors.append(try sensor(text, "\(key).sensors[\(j)]"))
            }
            guard !sensors.isEmpty else {
                throw ConfigError(key: "\(key).sensors", "a station needs at least one sensor")
            }
            var priority = [String: [SensorID]]()
            for (metric, list) in entry.priority ?? [:] {
                guard Metric.named(metric) != nil else {
                    throw ConfigError(key: "\(key).priority.\(metric)", "unknown metric")
                }
                var ranked = [SensorID]()
                for (j, text) in list.enumerated() {
                    ranked.append(try sensor(text, "\(key).priority.\(metric)[\(j)]"))
                }
                priority[metric] = ranked
            }
            let wheel = entry.wheelCircumferenceM ?? 2.096
            guard (0.5...4).contains(wheel) else {
                throw ConfigError(key: "\(key).wheel_circumference_m", "must be 0.5...4 metres")
            }
            c.sensors.stations.append(
                Station(
                    id: id, name: entry.name ?? id, sensors: sensors, priority: priority, wheelCircumference: wheel))
        }
    }
}

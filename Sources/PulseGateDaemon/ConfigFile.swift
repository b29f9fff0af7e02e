/// The configuration file as written: every key optional, names exactly as in YAML.
///
/// This layer only mirrors the file; ``DaemonConfiguration`` applies defaults and validates. Every key
/// is documented in README.md ("Configuration") and in the packaged systemd/pulsegate.yaml.
struct ConfigFile: Codable {
    var server: Server?
    var stateDirectory: String?
    var store: Store?
    var outbox: Outbox?
    var sinks: [Sink]?
    var shutdown: Shutdown?
    var log: Log?
    var apiKeys: [APIKeyEntry]?
    var publicURL: String?
    var tokens: Tokens?
    var accounts: Accounts?
    var vendors: [String: Vendor]?
    var sensors: Sensors?
    var kiosk: Kiosk?

    enum CodingKeys: String, CodingKey {
        case server, store, outbox, sinks, shutdown, log, tokens, accounts, vendors, sensors, kiosk
        case stateDirectory = "state_directory"
        case apiKeys = "api_keys"
        case publicURL = "public_url"
    }

    struct Tokens: Codable {
        var keyFile: String?
        var keyCredential: String?
        var previousKeyFiles: [String]?
        enum CodingKeys: String, CodingKey {
            case keyFile = "key_file"
            case keyCredential = "key_credential"
            case previousKeyFiles = "previous_key_files"
        }
    }

    struct Accounts: Codable {
        var stateTTLSeconds: Int?
        var rawRetentionDays: Double?
        var inboxRetentionDays: Double?
        var watchdogIntervalSeconds: Int?
        var refreshConcurrency: Int?
        var jobConcurrency: Int?
        enum CodingKeys: String, CodingKey {
            case stateTTLSeconds = "state_ttl_seconds"
            case rawRetentionDays = "raw_retention_days"
            case inboxRetentionDays = "inbox_retention_days"
            case watchdogIntervalSeconds = "watchdog_interval_seconds"
            case refreshConcurrency = "refresh_concurrency"
            case jobConcurrency = "job_concurrency"
        }
    }

    /// One vendor app. Secrets may be given inline or as `…_file` (relative to
    /// `$CREDENTIALS_DIRECTORY` when systemd provides one).
    struct Vendor: Codable {
        var enabled: Bool?
        var clientID: String?
        var clientSecret: String?
        var clientSecretFile: String?
        var scopes: [String]?
        var urls: [String: String]?
        var allowedHosts: [String]?
        /// Webhook secrets by name (`verify_token`, `authorization`, `signature_secret_key`, …) and
        /// `<name>_file` for the same read from a file.
        var webhook: [String: String]?
        var backfillDays: Int?
        var silenceHours: Double?
        enum CodingKeys: String, CodingKey {
            case enabled, scopes, urls, webhook
            case clientID = "client_id"
            case clientSecret = "client_secret"
            case clientSecretFile = "client_secret_file"
            case allowedHosts = "allowed_hosts"
            case backfillDays = "backfill_days"
            case silenceHours = "silence_hours"
        }
    }

    /// Direct sensors (a kiosk's Bluetooth adapter and ANT+ sticks).
    struct Sensors: Codable {
        /// Which backends to run: `bluez`, `hci`, `ant` (default: bluez, plus ant when a key is given).
        var backends: [String]?
        /// D-Bus address of the bus bluetoothd is on (default: the system bus).
        var bluezBus: String?
        var hciAdapter: String?
        /// The ANT+ network key (8 bytes in hex); licensed by the ANT+ alliance, never shipped.
        var antNetworkKey: String?
        var antNetworkKeyFile: String?
        var lostAfterSeconds: Double?
        var failoverAfterSeconds: Double?
        enum CodingKeys: String, CodingKey {
            case backends
            case bluezBus = "bluez_bus"
            case hciAdapter = "hci_adapter"
            case antNetworkKey = "ant_network_key"
            case antNetworkKeyFile = "ant_network_key_file"
            case lostAfterSeconds = "lost_after_seconds"
            case failoverAfterSeconds = "failover_after_seconds"
        }
    }

    struct Kiosk: Codable {
        var stations: [Station]?
        /// The longest a binding may last (hours).
        var maxBindingHours: Double?
        enum CodingKeys: String, CodingKey {
            case stations
            case maxBindingHours = "max_binding_hours"
        }

        struct Station: Codable {
            var id: String?
            var name: String?
            /// `ble:AA:BB:CC:DD:EE:FF` or `ant:<device number>/<device type>`, in default priority order.
            var sensors: [String]?
            /// Per metric, the sensors to take it from, best first.
            var priority: [String: [String]]?
            var wheelCircumferenceM: Double?
            enum CodingKeys: String, CodingKey {
                case id, name, sensors, priority
                case wheelCircumferenceM = "wheel_circumference_m"
            }
        }
    }

    struct Server: Codable {
        var host: String?
        var port: Int?
        var maxBodyBytes: Int?
        enum CodingKeys: String, CodingKey {
            case host, port
            case maxBodyBytes = "max_body_bytes"
        }
    }

    struct Store: Codable {
        var sqlite: SQLite?
        struct SQLite: Codable {
            var path: String?
            var synchronous: String?
        }
    }

    struct Outbox: Codable {
        var highWatermark: Int?
        var retryAfterSeconds: Int?
        var batchSize: Int?
        enum CodingKeys: String, CodingKey {
            case highWatermark = "high_watermark"
            case retryAfterSeconds = "retry_after_seconds"
            case batchSize = "batch_size"
        }
    }

    struct Sink: Codable {
        var id: String?
        var type: String?
        // file
        var path: String?
        var rotateBytes: Int?
        var keepFiles: Int?
        // http
        var url: String?
        var hmacSecret: String?
        var hmacSecretFile: String?
        var timeoutSeconds: Double?
        var batchSize: Int?
        var backoff: Backoff?

        struct Backoff: Codable {
            var initialMs: Int?
            var maxMs: Int?
            enum CodingKeys: String, CodingKey {
                case initialMs = "initial_ms"
                case maxMs = "max_ms"
            }
        }

        enum CodingKeys: String, CodingKey {
            case id, type, path, url, backoff
            case rotateBytes = "rotate_bytes"
            case keepFiles = "keep_files"
            case hmacSecret = "hmac_secret"
            case hmacSecretFile = "hmac_secret_file"
            case timeoutSeconds = "timeout_seconds"
            case batchSize = "batch_size"
        }
    }

    struct Shutdown: Codable {
        var timeoutSeconds: Double?
        enum CodingKeys: String, CodingKey {
            case timeoutSeconds = "timeout_seconds"
        }
    }

    struct Log: Codable {
        var level: String?
        var format: String?
    }

    struct APIKeyEntry: Codable {
        var name: String?
        var sha256: String?
        var scopes: [String]?
        var rateLimit: RateLimit?
        struct RateLimit: Codable {
            var requestsPerSecond: Double?
            var burst: Double?
            enum CodingKeys: String, CodingKey {
                case requestsPerSecond = "requests_per_second"
                case burst
            }
        }
        enum CodingKeys: String, CodingKey {
            case name, sha256, scopes
            case rateLimit = "rate_limit"
        }
    }
}

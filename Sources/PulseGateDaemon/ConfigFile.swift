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

    enum CodingKeys: String, CodingKey {
        case server, store, outbox, sinks, shutdown, log
        case stateDirectory = "state_directory"
        case apiKeys = "api_keys"
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

/// An invalid configuration, naming the key (`sinks[0].url`) and why. The daemon exits with 78
/// (`EX_CONFIG`) on it.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// Dotted key path with list indexes, e.g. `sinks[1].backoff.max_ms`; empty for the file itself.
    public let key: String
    public let reason: String

    public init(key: String, _ reason: String) {
        self.key = key
        self.reason = reason
    }

    public var description: String { key.isEmpty ? reason : "\(key): \(reason)" }
}

import Foundation
import Logging
import PulseGateCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Structured log lines on standard error: one JSON object per line (or a readable text line), with
/// secrets redacted.
///
/// Redaction works on metadata keys that name secrets (token, secret, password, authorization, …) and
/// on values that look like pulsegate API keys, so a careless `"\(request.headers)"` cannot leak a
/// credential into the journal.
public struct StructuredLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let format: DaemonConfiguration.LogFormat

    private static let lock = Mutex(())
    static let secretKeyFragments = [
        "secret", "token", "password", "authorization", "cookie", "credential", "hmac", "signature", "api_key",
    ]

    public init(label: String, level: Logger.Level, format: DaemonConfiguration.LogFormat) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Bootstraps swift-log for the process (call once, in `main`).
    public static func bootstrap(level: Logger.Level, format: DaemonConfiguration.LogFormat) {
        LoggingSystem.bootstrap { label in StructuredLogHandler(label: label, level: level, format: format) }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line = render(level: event.level, message: "\(event.message)", metadata: merged, source: event.source)
        Self.lock.withLock { _ in
            line.withCString { p in
                var offset = 0
                let count = strlen(p)
                while offset < count {
                    let n = Glibc.write(2, p + offset, count - offset)
                    if n <= 0 { if errno == EINTR { continue }; break }
                    offset += n
                }
            }
        }
    }

    func render(level: Logger.Level, message: String, metadata: Logger.Metadata, source: String) -> String {
        let time = Timestamp.now.description
        var fields: [(String, String)] = []
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            fields.append((key, Self.redact(key: key, value: "\(value)")))
        }
        switch format {
        case .json:
            var out =
                "{\"time\":\(Self.quote(time)),\"level\":\(Self.quote(level.rawValue)),\"logger\":\(Self.quote(label)),\"message\":\(Self.quote(Self.redact(key: "", value: message)))"
            for (key, value) in fields { out += ",\(Self.quote(key)):\(Self.quote(value))" }
            return out + "}\n"
        case .text:
            var out = "\(time) \(level.rawValue.uppercased()) \(label): \(Self.redact(key: "", value: message))"
            for (key, value) in fields { out += " \(key)=\(value)" }
            return out + "\n"
        }
    }

    /// `[redacted]` for secret-named keys; API-key-looking words masked anywhere.
    static func redact(key: String, value: String) -> String {
        let lower = key.lowercased()
        if secretKeyFragments.contains(where: { lower.contains($0) }) { return "[redacted]" }
        guard value.contains("pgk_") else { return value }
        return value.replacing(/pgk_[A-Za-z0-9_\-]+/, with: "pgk_[redacted]")
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += "\\u00" + [UInt8(c.value)].hexString
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

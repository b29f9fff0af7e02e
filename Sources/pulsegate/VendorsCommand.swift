import ArgumentParser
import Foundation
import Logging
import PulseGateAccounts
import PulseGateCore
import PulseGateDaemon
import PulseGateOAuth
import PulseGateVendorKit

/// `pulsegate vendors`: every built-in adapter with what it can do and whether this config enables it.
struct VendorsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vendors", abstract: "List the cloud vendor adapters, their capabilities and configuration.")
    @OptionGroup var options: ConfigOptions
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        let config = try options.load()
        let adapters: [any VendorAdapter]
        do {
            adapters = try VendorRegistry.adapters()
        } catch {
            ConfigOptions.fail("pulsegate: \(error)", code: 70)
        }
        let configured = Set(config.vendors.map(\.id))
        var rows = [JSONValue]()
        for adapter in adapters.sorted(by: { $0.manifest.id < $1.manifest.id }) {
            let m = adapter.manifest
            let row: [String: JSONValue] = [
                "id": .string(m.id), "display_name": .string(m.displayName),
                "configured": .bool(configured.contains(m.id)),
                "pkce": .bool(m.oauth.pkce), "client_authentication": .string(m.oauth.clientAuthentication.rawValue),
                "refresh_tokens": .string(m.oauth.refreshTokens.rawValue),
                "webhook_signature": .string(m.webhook.signature), "webhook_handshake": .string(m.webhook.handshake),
                "callback_url": .string("\(config.publicURL)/v1/oauth/\(m.id)/callback"),
                "webhook_url": .string("\(config.publicURL)/v1/webhooks/\(m.id)"),
                "backfill_horizon_days": .int(Int64(m.backfill.horizonDays)),
                "metrics": .array(m.metrics.map(JSONValue.string)),
                "developer_portal": m.developerPortal.map(JSONValue.string) ?? .null,
            ]
            rows.append(.object(row))
            guard !json else { continue }
            print("\(m.id)\t\(m.displayName)\t\(configured.contains(m.id) ? "configured" : "not configured")")
            print(
                "  oauth: \(m.oauth.clientAuthentication.rawValue) client auth, PKCE \(m.oauth.pkce ? "S256" : "no"), refresh tokens \(m.oauth.refreshTokens.rawValue)"
            )
            print("  webhook: \(m.webhook.handshake); \(m.webhook.signature)")
            print("  callback: \(config.publicURL)/v1/oauth/\(m.id)/callback")
            print("  webhooks: \(config.publicURL)/v1/webhooks/\(m.id)")
            print("  metrics: \(m.metrics.joined(separator: ", "))")
            print("  backfill: up to \(m.backfill.horizonDays) days (default \(m.backfill.defaultDays))")
        }
        if json { print(String(decoding: JSONValue.array(rows).bytes, as: UTF8.self)) }
    }
}

/// `pulsegate replay`: re-maps kept raw vendor payloads with the current mapping into the outbox.
struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Map kept raw vendor payloads again (after a mapping fix) and send the samples to the sinks.")
    @OptionGroup var options: ConfigOptions
    @Option(help: "Vendor id (see `pulsegate vendors`).") var vendor: String
    @Option(help: "RFC 3339 time: replay payloads fetched at or after it.") var since: String

    func run() async throws {
        guard let from = Timestamp(rfc3339: since) else {
            ConfigOptions.fail("pulsegate: --since must be an RFC 3339 time like 2026-11-01T00:00:00Z", code: 64)
        }
        let config = try options.load()
        let daemon: Daemon
        do {
            daemon = try Daemon(configuration: config, logger: Logger(label: "pulsegate"))
        } catch {
            ConfigOptions.fail("pulsegate: \(error.message)", code: error.exitCode)
        }
        do {
            let (records, samples) = try await daemon.engine.replay(vendor: vendor, since: from)
            await daemon.close()
            print("replayed \(records) records of \(vendor) into \(samples) samples")
        } catch {
            await daemon.close()
            ConfigOptions.fail("pulsegate: \(error.message)", code: error.code == .unknownVendor ? 64 : 70)
        }
    }
}

/// `pulsegate tokens new-key`: a fresh token encryption key, for `tokens.key_file`.
struct TokensCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens", abstract: "Token encryption keys.", subcommands: [NewKey.self])

    struct NewKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "new-key",
            abstract:
                "Print a new 256-bit key (hex). To rotate: make it tokens.key_file, list the old file under tokens.previous_key_files, restart; tokens are re-sealed at start."
        )

        func run() {
            print(TokenCipher.Key.generate().hexString)
        }
    }
}

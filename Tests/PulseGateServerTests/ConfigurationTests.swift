import Foundation
import PulseGateCore
import PulseGateTestSupport
import Testing

@testable import PulseGateDaemon

@Suite("Configuration")
struct ConfigurationTests {
    func load(_ yaml: String, env: [String: String] = [:]) throws -> DaemonConfiguration {
        let dir = temporaryDirectory()
        try yaml.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        return try DaemonConfiguration.load(path: dir + "/c.yaml", environment: env)
    }

    func failure(_ yaml: String, env: [String: String] = [:]) -> ConfigError? {
        do { _ = try load(yaml, env: env); return nil } catch { return error as? ConfigError }
    }

    @Test("embedded defaults: loopback 8080, SQLite and a file sink under ./var")
    func defaults() throws {
        let c = DaemonConfiguration.embeddedDefaults
        #expect(c.host == "127.0.0.1" && c.port == 8080)
        #expect(c.stateDirectory.hasSuffix("/var") && c.storePath.hasSuffix("/var/pulsegate.sqlite"))
        #expect(c.sinks.count == 1 && c.sinks[0].id == "archive" && c.sinks[0].typeName == "file")
    }

    @Test("environment overrides reach nested keys and list items")
    func overrides() throws {
        let c = try load(
            "sinks:\n  - {id: a, type: http, url: 'http://127.0.0.1:1/x'}\n",
            env: ["PULSEGATE__SERVER__PORT": "9090", "PULSEGATE__SINKS__0__URL": "http://127.0.0.1:2/y", "OTHER": "1"])
        #expect(c.port == 9090)
        guard case .http(let url, _, _, _) = c.sinks[0].kind else { Issue.record("not http"); return }
        #expect(url == "http://127.0.0.1:2/y")
    }

    @Test(
        "invalid configuration names the failing key",
        arguments: [
            ("server: {prot: 80}", "server.prot"),
            ("server: {port: eighty}", "server.port"),
            ("server: {port: 70000}", "server.port"),
            ("sinks:\n  - {id: a, type: http, url: 'ftp://x'}", "sinks[0].url"),
            ("sinks:\n  - {id: a, type: file}", "sinks[0].path"),
            ("sinks:\n  - {id: a, type: kafka}", "sinks[0].type"),
            ("sinks:\n  - {id: a, type: file, path: x}\n  - {id: a, type: stdout}", "sinks[1].id"),
            ("sinks:\n  - {id: a, type: http, url: 'http://h/x', hmac_secret: short}", "sinks[0].hmac_secret"),
            ("sinks:\n  - {id: a, type: file, path: x, url: 'http://h/'}", "sinks[0].url"),
            ("sinks: []", "sinks"),
            ("log: {level: loud}", "log.level"),
            ("api_keys:\n  - {name: k, sha256: abc, scopes: [admin]}", "api_keys[0].sha256"),
            (
                "api_keys:\n  - {name: k, sha256: '\(String(repeating: "a", count: 64))', scopes: [root]}",
                "api_keys[0].scopes[0]"
            ),
            ("outbox: {high_watermark: 0}", "outbox.high_watermark"),
            ("vendors: {nope: {client_id: x, client_secret: y}}", "vendors.nope"),
            ("vendors: {strava: {client_secret: y}}", "vendors.strava.client_id"),
            ("vendors: {strava: {client_id: x}}", "vendors.strava.client_secret"),
            (
                "vendors: {strava: {client_id: x, client_secret: y, urls: {tokn: 'http://h/'}}}",
                "vendors.strava.urls.tokn"
            ),
            (
                "vendors: {strava: {client_id: x, client_secret: y, urls: {token: 'ftp://h/'}}}",
                "vendors.strava.urls.token"
            ),
            (
                "vendors: {strava: {client_id: x, client_secret: y, backfill_days: 99999}}",
                "vendors.strava.backfill_days"
            ),
            ("vendors: {strava: {client_id: x, client_secret: y, colour: red}}", "vendors.strava.colour"),
            ("public_url: 'ftp://x'", "public_url"),
            ("tokens: {key_credential: token-key}", "tokens.key_credential"),
        ])
    func invalid(yaml: String, key: String) {
        #expect(failure(yaml)?.key == key)
    }

    @Test("vendors: manifest defaults, secrets from files, the token key from a systemd credential")
    func vendors() throws {
        let dir = temporaryDirectory()
        try "s3cret\n".write(toFile: dir + "/strava-secret", atomically: true, encoding: .utf8)
        let c = try load(
            """
            public_url: https://pg.example/
            tokens: {key_credential: token-key}
            vendors:
              strava:
                client_id: "42"
                client_secret_file: strava-secret
                webhook: {verify_token: vt}
                urls: {api: 'http://127.0.0.1:9/api/v3'}
            """, env: ["CREDENTIALS_DIRECTORY": dir])
        #expect(c.publicURL == "https://pg.example")
        #expect(c.tokenKeyFile == dir + "/token-key" && c.tokenKeyConfigured)
        let strava = try #require(c.vendors.first)
        #expect(strava.id == "strava" && strava.clientID == "42")
        #expect(strava.clientSecret.bytes == Array("s3cret".utf8), "trailing newline stripped")
        #expect(strava.secrets["verify_token"]?.bytes == Array("vt".utf8))
        #expect(strava.urls["api"] == "http://127.0.0.1:9/api/v3")
        #expect("\(strava.clientSecret)" == "[redacted]")
    }

    @Test("an override of a missing list item is an error, not silence")
    func badOverride() {
        #expect(failure("{}", env: ["PULSEGATE__SINKS__5__URL": "x"]) != nil)
    }

    @Test("secrets never print")
    func redaction() throws {
        let c = try load(
            "sinks:\n  - {id: a, type: http, url: 'http://127.0.0.1:1/x', hmac_secret: 'super-secret-value-123'}\n")
        guard case .http(_, let secret, _, _) = c.sinks[0].kind else { Issue.record("not http"); return }
        #expect("\(String(describing: secret))".contains("super-secret") == false)
        #expect("\(c)".contains("super-secret") == false)
        #expect(StructuredLogHandler.redact(key: "hmac_secret", value: "abc") == "[redacted]")
        #expect(
            StructuredLogHandler.redact(key: "detail", value: "key pgk_abcDEF_12-3 used") == "key pgk_[redacted] used")
    }
}

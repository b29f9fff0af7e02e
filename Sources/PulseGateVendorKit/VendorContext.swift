import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth

/// One deployment's settings for a vendor: the manifest's defaults merged with the operator's config.
public struct VendorSettings: Sendable {
    public var clientID: String
    public var clientSecret: Secret
    /// Every named endpoint (manifest `urls`, each overridable in config).
    public var urls: [String: URL]
    public var scopes: [String]
    /// Where the vendor sends the user back: `<public_url>/v1/oauth/<id>/callback`.
    public var redirectURI: String
    /// Where the vendor posts notifications: `<public_url>/v1/webhooks/<id>`.
    public var webhookURL: String
    /// Webhook secrets by name (`verify_token`, `authorization`, `signing_key`, `public_key_pem`).
    public var secrets: [String: Secret]
    /// Hosts payload URLs may point to: the manifest's, the configured ones, and the hosts of the
    /// configured endpoints (a host the operator points the API at is as trusted as the API).
    public var allowedHosts: [String]
    public var rateLimits: [RateLimitRule]
    public var backfillDays: Int
    public var silenceHours: Double

    public init(
        clientID: String, clientSecret: Secret, urls: [String: URL], scopes: [String], redirectURI: String,
        webhookURL: String, secrets: [String: Secret], allowedHosts: [String], rateLimits: [RateLimitRule],
        backfillDays: Int, silenceHours: Double
    ) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.urls = urls
        self.scopes = scopes
        self.redirectURI = redirectURI
        self.webhookURL = webhookURL
        self.secrets = secrets
        self.allowedHosts = allowedHosts
        self.rateLimits = rateLimits
        self.backfillDays = backfillDays
        self.silenceHours = silenceHours
    }

    /// The OAuth client these settings describe.
    public func oauthSettings(_ manifest: VendorManifest) -> OAuthClientSettings {
        OAuthClientSettings(
            clientID: clientID, clientSecret: clientSecret, authorizeURL: urls["authorize"]!, tokenURL: urls["token"]!,
            redirectURI: redirectURI, scopes: scopes, scopeSeparator: manifest.oauth.scopeSeparator,
            usePKCE: manifest.oauth.pkce, clientAuthentication: manifest.oauth.clientAuthentication,
            extraAuthorizeParameters: Self.pairs(manifest.oauth.extraAuthorizeParameters),
            extraTokenParameters: Self.pairs(manifest.oauth.extraTokenParameters),
            extraRefreshParameters: Self.pairs(manifest.oauth.extraRefreshParameters))
    }

    /// A manifest's parameter map in a stable order (requests are compared byte for byte in tests).
    private static func pairs(_ map: [String: String]?) -> [(String, String)] {
        (map ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

/// Small persistent values an adapter keeps per vendor (subscription ids and expiry, a webhook signing
/// key the vendor issued once). Secret values are sealed by the engine.
public protocol VendorStateStore: Sendable {
    func value(_ key: String) async throws(VendorError) -> JSONValue?
    func setValue(_ key: String, _ value: JSONValue?) async throws(VendorError)
    func secret(_ key: String) async throws(VendorError) -> Secret?
    func setSecret(_ key: String, _ value: Secret?) async throws(VendorError)
}

/// Everything an adapter may use: its settings, the rate-limited HTTP client, its persistent state,
/// the clock and a logger. Built once per vendor by the engine.
public final class VendorContext: Sendable {
    public let manifest: VendorManifest
    public let settings: VendorSettings
    public let http: VendorHTTP
    public let state: any VendorStateStore
    public let logger: Logger
    private let clock: @Sendable () -> Timestamp

    public init(
        manifest: VendorManifest, settings: VendorSettings, http: VendorHTTP, state: any VendorStateStore,
        logger: Logger, clock: @escaping @Sendable () -> Timestamp = { .now }
    ) {
        self.manifest = manifest
        self.settings = settings
        self.http = http
        self.state = state
        self.logger = logger
        self.clock = clock
    }

    public var now: Timestamp { clock() }

    /// A configured endpoint with `path` appended and `query` added.
    public func url(_ name: String, path: String = "", query: [(String, String)] = []) -> URL {
        guard let base = settings.urls[name] else { preconditionFailure("vendor \(manifest.id) has no url '\(name)'") }
        var text = base.absoluteString
        if !path.isEmpty {
            if text.hasSuffix("/") { text.removeLast() }
            text += path.hasPrefix("/") ? path : "/" + path
        }
        var components = URLComponents(string: text)!
        if !query.isEmpty {
            components.percentEncodedQuery = query.map { "\(FormEncoding.escape($0.0))=\(FormEncoding.escape($0.1))" }
                .joined(separator: "&")
        }
        return components.url!
    }

    /// The SSRF guard: a URL taken from a vendor payload is used only if it is https (or http to a
    /// configured endpoint's host, for emulators) and its host is one of the vendor's allowed hosts.
    public func checkPayloadURL(_ text: String) throws(VendorError) -> URL {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased()
        else { throw .forbiddenURL("'\(text.prefix(200))' is not an absolute URL") }
        guard url.user == nil, url.password == nil else { throw .forbiddenURL("URL with credentials refused") }
        let configuredHosts = Set(settings.urls.values.compactMap { Self.authority($0) })
        let authority = Self.authority(url) ?? host
        let allowed =
            settings.allowedHosts.contains { pattern in
                let p = pattern.lowercased()
                if p.hasPrefix("*.") { return host.hasSuffix(String(p.dropFirst(1))) }
                return p == host || p == authority
            } || configuredHosts.contains(authority)
        guard allowed else { throw .forbiddenURL("host \(authority) is not allowed for \(manifest.id)") }
        guard scheme == "https" || (scheme == "http" && configuredHosts.contains(authority)) else {
            throw .forbiddenURL("scheme \(scheme) refused for \(authority)")
        }
        return url
    }

    static func authority(_ url: URL) -> String? {
        guard let host = url.host?.lowercased() else { return nil }
        return url.port.map { "\(host):\($0)" } ?? host
    }

    /// GETs `url` with the connection's bearer token and reads the answer as JSON; maps statuses to
    /// ``VendorError`` (401 unauthorized, 403/404 rejected, others through ``VendorHTTP``).
    public func getJSON(_ url: URL, connection: ConnectionContext) async throws(VendorError) -> (JSONValue, [UInt8]) {
        let response = try await http.send(
            OutboundRequest(
                method: .get, url: url,
                headers: [("Authorization", "Bearer \(connection.accessToken.text)"), ("Accept", "application/json")]),
            user: connection.id)
        try Self.expectSuccess(response, url: url)
        do {
            return (try JSONValue.parse(response.body), response.body)
        } catch {
            throw .malformed("\(url.path): \(error)")
        }
    }

    /// Turns a non-2xx answer into the right ``VendorError``.
    public static func expectSuccess(_ response: InboundResponse, url: URL) throws(VendorError) {
        switch response.status {
        case 200..<300: return
        case 401: throw .unauthorized("\(url.path) answered 401")
        case 400, 403, 404, 405, 409, 410, 422:
            throw .rejected(
                "\(url.path) answered \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))"
            )
        default: throw .unavailable("\(url.path) answered \(response.status)", retryAfter: nil)
        }
    }
}

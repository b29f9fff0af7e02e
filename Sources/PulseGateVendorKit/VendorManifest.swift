import Foundation
import PulseGateCore
import PulseGateOAuth
import Yams

/// What a vendor documents about itself, read from its `vendors/<id>/vendor.yaml`: endpoints, OAuth
/// flavour, webhook scheme, rate limits, hosts payload URLs may point to, backfill horizon, metrics.
///
/// The manifest holds the vendor's *documented defaults*; an operator's config overrides URLs, scopes,
/// allowed hosts and limits per deployment (emulators, proxies, raised quotas).
public struct VendorManifest: Sendable, Decodable {
    public var id: String
    public var displayName: String
    /// Named endpoints: `authorize`, `token`, `revoke`, `api`, and any the adapter needs.
    public var urls: [String: String]
    public var oauth: OAuth
    public var webhook: Webhook
    public var rateLimits: [RateLimitRule]
    /// Hosts a URL taken from a vendor payload may point to (exact host, or `*.suffix`).
    public var allowedHosts: [String]
    public var backfill: Backfill
    /// Hours without a webhook or sync after which the silence watchdog reconciles a connection.
    public var silenceHours: Double
    /// Canonical metric names this adapter can emit.
    public var metrics: [String]
    /// Where the operator registers an app; shown by `pulsegate vendors`.
    public var developerPortal: String?

    public struct OAuth: Sendable, Decodable {
        public var scopes: [String]
        public var scopeSeparator: String
        public var pkce: Bool
        public var clientAuthentication: OAuthClientSettings.ClientAuthentication
        /// Documented access-token lifetime in seconds, when the token response may omit it.
        public var accessTokenLifetimeSeconds: Int?
        public var refreshTokens: RefreshTokens
        public var extraAuthorizeParameters: [String: String]?
        /// Sent with every token request (code exchange and refresh).
        public var extraTokenParameters: [String: String]?
        /// Sent with refresh requests only.
        public var extraRefreshParameters: [String: String]?

        public enum RefreshTokens: String, Sendable, Decodable {
            /// Every refresh returns a new refresh token; the old one dies.
            case rotating
            /// A refresh may or may not return a new refresh token; always keep the newest.
            case mayRotate = "may_rotate"
            /// The refresh token stays the same (Google).
            case stable
            /// No refresh tokens: long-lived access tokens, re-consent when they expire (Polar).
            case none
        }
    }

    public struct Webhook: Sendable, Decodable {
        /// How the vendor proves a notification is its own, in words (listed by `pulsegate vendors`).
        public var signature: String
        /// How the vendor checks our endpoint when a subscription is made.
        public var handshake: String
        /// The vendor's answer deadline in seconds.
        public var deadlineSeconds: Double
        /// Largest notification body accepted.
        public var maxBodyBytes: Int
    }

    public struct Backfill: Sendable, Decodable {
        /// How far back the vendor serves data.
        public var horizonDays: Int
        /// Window fetched on link unless configured otherwise.
        public var defaultDays: Int
    }

    enum CodingKeys: String, CodingKey {
        case id, displayName = "display_name", urls, oauth, webhook, rateLimits = "rate_limits"
        case allowedHosts = "allowed_hosts", backfill, silenceHours = "silence_hours", metrics
        case developerPortal = "developer_portal"
    }

    /// Parses and checks a manifest: every URL absolute, every metric known.
    public static func parse(yaml: String) throws(ManifestError) -> VendorManifest {
        let manifest: VendorManifest
        do {
            manifest = try YAMLDecoder().decode(VendorManifest.self, from: yaml)
        } catch {
            throw ManifestError("vendor.yaml: \(error)")
        }
        for (name, url) in manifest.urls where URL(string: url)?.host == nil {
            throw ManifestError("vendor.yaml of \(manifest.id): urls.\(name) '\(url)' is not an absolute URL")
        }
        for name in manifest.metrics where Metric.named(name) == nil {
            throw ManifestError("vendor.yaml of \(manifest.id): unknown metric '\(name)'")
        }
        return manifest
    }

    /// Reads `vendor.yaml` from a vendor target's bundle.
    public static func load(from bundle: Bundle) throws(ManifestError) -> VendorManifest {
        guard let url = bundle.url(forResource: "vendor", withExtension: "yaml"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else { throw ManifestError("vendor.yaml is missing from \(bundle.bundlePath)") }
        return try parse(yaml: text)
    }
}

extension VendorManifest.OAuth: Equatable {}
extension VendorManifest.OAuth {
    enum CodingKeys: String, CodingKey {
        case scopes, scopeSeparator = "scope_separator", pkce, clientAuthentication = "client_authentication"
        case accessTokenLifetimeSeconds = "access_token_lifetime_seconds", refreshTokens = "refresh_tokens"
        case extraAuthorizeParameters = "extra_authorize_parameters"
        case extraTokenParameters = "extra_token_parameters", extraRefreshParameters = "extra_refresh_parameters"
    }
}

extension VendorManifest.Webhook {
    enum CodingKeys: String, CodingKey {
        case signature, handshake, deadlineSeconds = "deadline_seconds", maxBodyBytes = "max_body_bytes"
    }
}

extension VendorManifest.Backfill {
    enum CodingKeys: String, CodingKey {
        case horizonDays = "horizon_days", defaultDays = "default_days"
    }
}

/// A request budget the vendor documents: `requests` per `seconds`, for the whole app or per user.
public struct RateLimitRule: Sendable, Decodable, Equatable {
    public enum Scope: String, Sendable, Decodable { case app, user }
    public var scope: Scope
    public var requests: Int
    public var seconds: Int
    /// Windows start at multiples of `seconds` since the epoch (Strava: :00/:15/:30/:45 and midnight
    /// UTC) rather than sliding.
    public var aligned: Bool

    public init(scope: Scope, requests: Int, seconds: Int, aligned: Bool = false) {
        self.scope = scope
        self.requests = requests
        self.seconds = seconds
        self.aligned = aligned
    }

    enum CodingKeys: String, CodingKey { case scope, requests, seconds, aligned }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scope = try c.decode(Scope.self, forKey: .scope)
        requests = try c.decode(Int.self, forKey: .requests)
        seconds = try c.decode(Int.self, forKey: .seconds)
        aligned = try c.decodeIfPresent(Bool.self, forKey: .aligned) ?? false
    }
}

public struct ManifestError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateStore
import PulseGateVendorKit
import Synchronization

/// One configured vendor: its adapter with this deployment's settings, OAuth client and context.
public final class VendorRuntime: Sendable {
    public let adapter: any VendorAdapter
    public let settings: VendorSettings
    public let context: VendorContext
    public let oauth: OAuthClient

    public init(adapter: any VendorAdapter, settings: VendorSettings, context: VendorContext) {
        self.adapter = adapter
        self.settings = settings
        self.context = context
        oauth = OAuthClient(settings: settings.oauthSettings(adapter.manifest))
    }

    public var id: String { adapter.manifest.id }
    public var manifest: VendorManifest { adapter.manifest }
}

/// Vendor state in the store: plain values as JSON, secrets sealed with the token key.
///
/// Reads are cached for a few seconds: webhook verification reads the signing key on every request,
/// and a store read plus an AES-GCM open per notification would cost more than the rest of intake.
/// A value written here is seen at once; one written by another replica within `cacheLifetime`.
public final class StoredVendorState: VendorStateStore {
    let vendor: String
    let accounts: AccountStore
    let cipher: TokenCipher
    let cacheLifetime: Int64 = 10_000

    private enum Cached {
        case value(JSONValue?)
        case secret(Secret?)
    }
    private let cache = Mutex([String: (Cached, until: Int64)]())

    public init(vendor: String, accounts: AccountStore, cipher: TokenCipher) {
        self.vendor = vendor
        self.accounts = accounts
        self.cipher = cipher
    }

    /// The associated data a vendor secret is sealed with: bound to its vendor and name.
    static func context(vendor: String, key: String) -> String { "vendor-state:\(vendor):\(key)" }

    private func cached(_ key: String) -> Cached? {
        let now = Timestamp.now.millisecondsSinceEpoch
        return cache.withLock { c in
            guard let (value, until) = c[key], until > now else { return nil }
            return value
        }
    }

    private func remember(_ key: String, _ value: Cached) {
        let until = Timestamp.now.millisecondsSinceEpoch + cacheLifetime
        cache.withLock { $0[key] = (value, until) }
    }

    public func value(_ key: String) async throws(VendorError) -> JSONValue? {
        if case .value(let v) = cached("v:\(key)") { return v }
        do {
            let value = try await accounts.vendorState(vendor: vendor, key: key).flatMap { try? JSONValue.parse($0) }
            remember("v:\(key)", .value(value))
            return value
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
    }

    public func setValue(_ key: String, _ value: JSONValue?) async throws(VendorError) {
        do {
            try await accounts.setVendorState(
                vendor: vendor, key: key, value: value?.bytes, now: Timestamp.now.millisecondsSinceEpoch)
            remember("v:\(key)", .value(value))
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
    }

    public func secret(_ key: String) async throws(VendorError) -> Secret? {
        if case .secret(let s) = cached("s:\(key)") { return s }
        let sealed: [UInt8]?
        do {
            sealed = try await accounts.vendorState(vendor: vendor, key: "secret:\(key)")
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
        do throws(TokenCipher.CipherError) {
            let secret = try sealed.map { s throws(TokenCipher.CipherError) in
                try cipher.open(s, context: Self.context(vendor: vendor, key: key))
            }
            remember("s:\(key)", .secret(secret))
            return secret
        } catch {
            throw .unavailable("vendor secret \(key): \(error)", retryAfter: nil)
        }
    }

    public func setSecret(_ key: String, _ value: Secret?) async throws(VendorError) {
        do {
            try await accounts.setVendorState(
                vendor: vendor, key: "secret:\(key)",
                value: value.map { cipher.seal($0, context: Self.context(vendor: vendor, key: key)) },
                now: Timestamp.now.millisecondsSinceEpoch)
            remember("s:\(key)", .secret(value))
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
    }
}

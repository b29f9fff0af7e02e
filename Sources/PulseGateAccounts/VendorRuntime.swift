import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateStore
import PulseGateVendorKit

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
public struct StoredVendorState: VendorStateStore {
    let vendor: String
    let accounts: AccountStore
    let cipher: TokenCipher

    public init(vendor: String, accounts: AccountStore, cipher: TokenCipher) {
        self.vendor = vendor
        self.accounts = accounts
        self.cipher = cipher
    }

    public func value(_ key: String) async throws(VendorError) -> JSONValue? {
        do {
            guard let bytes = try await accounts.vendorState(vendor: vendor, key: key) else { return nil }
            return try? JSONValue.parse(bytes)
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
    }

    public func setValue(_ key: String, _ value: JSONValue?) async throws(VendorError) {
        do {
            try await accounts.setVendorState(
                vendor: vendor, key: key, value: value?.bytes, now: Timestamp.now.millisecondsSinceEpoch)
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
    }

    public func secret(_ key: String) async throws(VendorError) -> Secret? {
        do {
            guard let sealed = try await accounts.vendorState(vendor: vendor, key: "secret:\(key)") else { return nil }
            return try cipher.open(sealed, context: "vendor-state:\(vendor):\(key)")
        } catch let error as TokenCipher.CipherError {
            throw .unavailable("vendor secret \(key): \(error)", retryAfter: nil)
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
    }

    public func setSecret(_ key: String, _ value: Secret?) async throws(VendorError) {
        do {
            try await accounts.setVendorState(
                vendor: vendor, key: "secret:\(key)",
                value: value.map { cipher.seal($0, context: "vendor-state:\(vendor):\(key)") },
                now: Timestamp.now.millisecondsSinceEpoch)
        } catch {
            throw .unavailable("vendor state: \(error)", retryAfter: nil)
        }
    }
}

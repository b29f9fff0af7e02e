import Foundation
import Logging
import Metrics
import PulseGateCore
import PulseGateOAuth
import PulseGateStore
import PulseGateVendorKit
import Synchronization

/// What one refresh attempt ended in.
public enum RefreshOutcome: Sendable, Equatable {
    case refreshed
    /// Nothing to refresh (no refresh token, or not due).
    case notNeeded
    /// Another refresher got there first, or the connection is no longer active.
    case skipped
    /// A transient failure; the connection is rescheduled.
    case retryLater(String)
    /// The vendor refused the grant for good; the connection now needs re-linking.
    case needsRelink(String)
}

extension AccountEngine {
    /// Refreshes a connection's tokens once, however many callers ask at the same time.
    public func refresh(connectionID: String) async -> RefreshOutcome {
        let task = refreshes.withLock { running -> Task<RefreshOutcome, Never> in
            if let task = running[connectionID] { return task }
            let task = Task { await self.performRefresh(connectionID) }
            running[connectionID] = task
            return task
        }
        let outcome = await task.value
        refreshes.withLock { running in
            if running[connectionID] == task { running[connectionID] = nil }
        }
        return outcome
    }

    /// One refresh, in the order that never loses a rotated refresh token:
    /// 1. journal "a refresh is in flight" durably (compare-and-set on the token generation);
    /// 2. send the refresh request (never retried blindly: a refresh may rotate);
    /// 3. store the answer's tokens over the generation it started from, clearing the journal;
    /// 4. only then is the new access token handed out.
    /// If the process dies between 2 and 3, the journal survives and the next start refreshes again
    /// with the refresh token it still holds; vendors that rotate keep the previous refresh token
    /// valid until the new one is used (vendors/README.md), so the retry gets a fresh pair.
    func performRefresh(_ id: String) async -> RefreshOutcome {
        let nowTS = Timestamp.now
        let now = nowTS.millisecondsSinceEpoch
        guard let c = try? await accounts.connection(id: id), c.status == .active, let vendor = vendors[c.vendor] else {
            return .skipped
        }
        guard let sealedRefresh = c.refreshToken else {
            if let expires = c.accessExpiresAt, expires <= now {
                return await needsRelink(
                    c, reason: "the access token expired and \(vendor.manifest.displayName) issues no refresh token",
                    at: nowTS)
            }
            return .notNeeded
        }
        let refreshToken: Secret
        do {
            refreshToken = try cipher.open(sealedRefresh, context: Self.tokenContext(c.id, "refresh"))
        } catch {
            // Our key problem, not the user's: never unlink for it.
            logger.error("cannot open a refresh token", metadata: ["connection": "\(c.id)", "error": "\(error)"])
            await rescheduleRefresh(c, reason: "token key: \(error)", retryAfter: .seconds(900), outcomeUnknown: false)
            return .retryLater("token key")
        }
        let resumed = c.refreshInFlightSince != nil
        do {
            guard try await accounts.beginRefresh(id: c.id, generation: c.tokenGeneration, now: now) else {
                return .skipped
            }
        } catch {
            return .retryLater("store: \(error.message)")
        }
        let response: InboundResponse
        do {
            response = try await vendor.context.http.send(
                vendor.oauth.refreshRequest(refreshToken: refreshToken), user: c.id, budgeted: false)
        } catch {
            metrics.refreshes(vendor.id, "transient").increment()
            if case .rateLimited(_, let wait) = error {
                await rescheduleRefresh(c, reason: "\(error)", retryAfter: wait, outcomeUnknown: false)
            } else {
                // No answer: the vendor may have rotated. The journal stays set.
                await rescheduleRefresh(c, reason: "\(error)", retryAfter: nil, outcomeUnknown: true)
            }
            return .retryLater("\(error)")
        }
        let grant: TokenGrant
        do {
            grant = try vendor.adapter.readTokenResponse(
                response, client: vendor.oauth, now: Timestamp.now, previousRefreshToken: refreshToken)
        } catch {
            switch error {
            case .grantRejected(let why):
                metrics.refreshes(vendor.id, "grant_rejected").increment()
                let reason = resumed ? "\(why) (after an interrupted refresh)" : why
                return await needsRelink(c, reason: reason, at: nowTS)
            case .clientRejected(let why):
                metrics.refreshes(vendor.id, "client_rejected").increment()
                logger.error(
                    "vendor refuses our app's credentials; check client_id/client_secret",
                    metadata: ["vendor": "\(vendor.id)", "error": "\(why)"])
                await rescheduleRefresh(
                    c, reason: "client rejected: \(why)", retryAfter: .seconds(900), outcomeUnknown: false)
                return .retryLater(why)
            case .transient(let why, let wait):
                metrics.refreshes(vendor.id, "transient").increment()
                await rescheduleRefresh(c, reason: why, retryAfter: wait, outcomeUnknown: response.status >= 500)
                return .retryLater(why)
            }
        }
        let expiresAt = grant.expiresAt ?? defaultExpiry(vendor, now: Timestamp.now)
        do {
            let stored = try await accounts.storeRefreshedTokens(
                id: c.id, generation: c.tokenGeneration,
                accessToken: cipher.seal(grant.accessToken, context: Self.tokenContext(c.id, "access")),
                refreshToken: grant.refreshToken.map { cipher.seal($0, context: Self.tokenContext(c.id, "refresh")) },
                accessExpiresAt: expiresAt?.millisecondsSinceEpoch,
                refreshDueAt: refreshDue(expiresAt: expiresAt, now: Timestamp.now), scopes: grant.scopes,
                now: Timestamp.now.millisecondsSinceEpoch)
            if !stored {
                logger.warning("a refresh answer arrived after the tokens changed", metadata: ["connection": "\(c.id)"])
                return .skipped
            }
        } catch {
            // The vendor answered but we could not store it: the journal stays set, so the retry
            // happens with the refresh token we still hold.
            logger.error("storing refreshed tokens failed", metadata: ["connection": "\(c.id)", "error": "\(error)"])
            return .retryLater("store: \(error.message)")
        }
        metrics.refreshes(vendor.id, resumed ? "refreshed_after_interruption" : "refreshed").increment()
        return .refreshed
    }

    func rescheduleRefresh(_ c: ConnectionRecord, reason: String, retryAfter: Duration?, outcomeUnknown: Bool) async {
        let now = Self.nowMillis
        // The first failure and every tenth one reach the log; the rest only the metrics and
        // `status_reason`, so a vendor outage with many connections does not flood the journal.
        if c.refreshFailures % 10 == 0 {
            logger.warning(
                "token refresh failing; retrying",
                metadata: [
                    "vendor": "\(c.vendor)", "connection": "\(c.id)", "failures": "\(c.refreshFailures + 1)",
                    "reason": "\(reason.prefix(200))",
                ])
        }
        let backoff = min(1_800_000, 15_000 * Int64(1 << min(c.refreshFailures, 7)))
        var delay = Int64.random(in: max(5_000, backoff / 2)...max(5_001, backoff))
        if let retryAfter { delay = max(delay, Int64(retryAfter.components.seconds) * 1000) }
        try? await accounts.refreshFailed(
            id: c.id, retryAt: now + delay, reason: String(reason.prefix(300)), outcomeUnknown: outcomeUnknown, now: now
        )
    }

    func needsRelink(_ c: ConnectionRecord, reason: String, at now: Timestamp) async -> RefreshOutcome {
        do {
            try await emit([
                DataEvent(kind: .needsRelink, subject: c.subject, vendor: c.vendor, at: now, reason: reason)
            ])
            try await accounts.deactivate(
                id: c.id, status: .needsRelink, reason: reason, now: now.millisecondsSinceEpoch)
        } catch {
            return .retryLater("store: \(error.message)")
        }
        logger.notice(
            "connection needs re-linking",
            metadata: ["vendor": "\(c.vendor)", "connection": "\(c.id)", "reason": "\(reason)"])
        return .needsRelink(reason)
    }

    /// A usable access token for `c`: refreshed first when it expires within a minute (or when `force`,
    /// after the vendor answered 401).
    func accessToken(for c: ConnectionRecord, force: Bool = false) async throws(VendorError) -> (
        Secret, ConnectionRecord
    ) {
        var c = c
        let soon = Self.nowMillis + 60_000
        if c.refreshToken != nil, force || (c.accessExpiresAt.map { $0 <= soon } ?? false) {
            let outcome = await refresh(connectionID: c.id)
            guard let fresh = try? await accounts.connection(id: c.id) else {
                throw .unavailable("connection \(c.id) cannot be read", retryAfter: nil)
            }
            c = fresh
            if case .retryLater(let why) = outcome, c.accessExpiresAt.map({ $0 <= Self.nowMillis }) ?? force {
                throw .unavailable("token refresh pending: \(why)", retryAfter: .seconds(30))
            }
        }
        guard c.status == .active, let sealed = c.accessToken else {
            throw .grantRevoked("connection is \(c.status.rawValue)")
        }
        do {
            return (try cipher.open(sealed, context: Self.tokenContext(c.id, "access")), c)
        } catch {
            throw .unavailable("token key: \(error)", retryAfter: .seconds(300))
        }
    }

    /// Claims due refreshes and runs them with bounded concurrency; returns how many ran.
    public func refreshDue(limit: Int = 64) async -> Int {
        guard
            let due = try? await accounts.claimDueRefreshes(
                now: Self.nowMillis, limit: limit, leaseMillis: 30_000), !due.isEmpty
        else { return 0 }
        await Self.forEach(due, width: settings.refreshConcurrency) { c in _ = await self.refresh(connectionID: c.id) }
        return due.count
    }

    /// Runs `work` for every item, at most `width` at a time.
    static func forEach<T: Sendable>(_ items: [T], width: Int, _ work: @escaping @Sendable (T) async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            var iterator = items.makeIterator()
            for _ in 0..<width {
                guard let item = iterator.next() else { break }
                group.addTask { await work(item) }
            }
            while await group.next() != nil {
                if let item = iterator.next() { group.addTask { await work(item) } }
            }
        }
    }

    /// Re-seals everything a previous key sealed (after key rotation): connection tokens and vendor
    /// secrets (a webhook signing key a vendor issued once). Returns how many rows changed.
    public func resealTokens() async throws(StoreError) -> Int {
        // Without a previous key nothing can need re-sealing: skip the scan of every connection.
        guard !cipher.previous.isEmpty else { return 0 }
        let cipher = self.cipher
        @Sendable func reseal(_ sealed: [UInt8], _ context: String) -> [UInt8]? {
            guard cipher.needsRotation(sealed), let secret = try? cipher.open(sealed, context: context) else {
                return nil
            }
            return cipher.seal(secret, context: context)
        }
        let tokens = try await accounts.resealTokens { id, field, sealed in
            reseal(sealed, Self.tokenContext(id, field))
        }
        let secrets = try await accounts.resealVendorSecrets { vendor, key, sealed in
            reseal(sealed, StoredVendorState.context(vendor: vendor, key: key))
        }
        return tokens + secrets
    }
}

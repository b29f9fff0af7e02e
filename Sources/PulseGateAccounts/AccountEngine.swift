import Crypto
import Foundation
import Logging
import Metrics
import PulseGateCore
import PulseGateOAuth
import PulseGateStore
import PulseGateVendorKit
import Synchronization

/// Tunables of the account engine, with the defaults a deployment starts from.
public struct AccountSettings: Sendable {
    /// How long an authorize URL (its `state`) stays usable.
    public var stateLifetime: Duration = .seconds(600)
    /// Refresh this fraction of the token lifetime before expiry (bounded below and above), plus jitter
    /// up to half as much again, so 10,000 tokens issued together do not refresh together.
    public var refreshAheadFraction = 0.1
    public var refreshAheadMin: Duration = .seconds(60)
    public var refreshAheadMax: Duration = .seconds(3600)
    /// Connections refreshed at once.
    public var refreshConcurrency = 16
    /// Jobs run at once.
    public var jobConcurrency = 8
    /// Attempts before a failing job is parked (kept, not run again) and reported.
    public var jobMaxAttempts = 20
    /// Processed webhook notifications are kept this long so a late duplicate is still recognised.
    public var inboxRetention: Duration = .seconds(7 * 86_400)
    /// Raw vendor payloads are kept this long for `pulsegate replay`.
    public var rawRetention: Duration = .seconds(30 * 86_400)
    /// How often the silence watchdog looks for quiet connections, and subscriptions are maintained.
    public var watchdogInterval: Duration = .seconds(600)
    public var maintenanceInterval: Duration = .seconds(6 * 3600)

    public init() {}
}

/// Why an account operation was refused, worded for the person or service that asked.
public struct AccountError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case unknownVendor = "unknown_vendor"
        case notFound = "not_found"
        case unavailable
        case vendorRefused = "vendor_refused"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// The outcome of the OAuth callback, shown to the person who just left the vendor's consent page.
public struct LinkOutcome: Sendable {
    public var vendor: String
    public var displayName: String
    public var connection: ConnectionRecord?
    /// A sentence for the person when linking failed.
    public var failure: String?
    /// Short machine reason for the failure (`expired_state`, `access_denied`, …).
    public var failureCode: String?
    public var returnTo: String?
    public var linkSession: String?
}

/// The vendor-agnostic engine: links accounts, keeps tokens alive, takes webhooks, runs fetch jobs, and
/// turns vendor records into samples and events in the outbox. Adapters supply the vendor specifics.
///
/// Durability rules it follows: a webhook is answered only after it is in the store; a fetched
/// record's samples are in the outbox before its job is deleted; a rotated refresh token is in the
/// store before the new access token is used; every event goes through the outbox.
public final class AccountEngine: Sendable {
    public let accounts: AccountStore
    public let outbox: Outbox
    public let cipher: TokenCipher
    public let settings: AccountSettings
    let vendors: [String: VendorRuntime]
    let logger: Logger
    let metrics: EngineMetrics
    /// Rung when a webhook is stored or a job created, so workers start at once instead of polling.
    public let inboxBell = Doorbell()
    public let jobBell = Doorbell()
    /// In-process single flight: one refresh per connection at a time (the store's token generation
    /// guards across processes).
    let refreshes = Mutex([String: Task<RefreshOutcome, Never>]())

    public init(
        vendors: [VendorRuntime], accounts: AccountStore, outbox: Outbox, cipher: TokenCipher,
        settings: AccountSettings = AccountSettings(), logger: Logger, metricsFactory: (any MetricsFactory)? = nil
    ) {
        self.vendors = Dictionary(uniqueKeysWithValues: vendors.map { ($0.id, $0) })
        self.accounts = accounts
        self.outbox = outbox
        self.cipher = cipher
        self.settings = settings
        self.logger = logger
        metrics = EngineMetrics(factory: metricsFactory ?? MetricsSystem.factory)
    }

    public func vendor(_ id: String) -> VendorRuntime? { vendors[id] }
    public var vendorIDs: [String] { vendors.keys.sorted() }

    static var nowMillis: Int64 { Timestamp.now.millisecondsSinceEpoch }

    static func stateHash(_ state: String) -> String { Array(SHA256.hash(data: Array(state.utf8))).hexString }

    // MARK: linking

    /// Starts linking `subject` to `vendor`: stores a single-use state (hashed, with the PKCE verifier
    /// sealed) and returns the vendor's authorize URL.
    public func startLink(vendor id: String, subject: String, linkSession: String? = nil, returnTo: String? = nil)
        async throws(AccountError) -> (url: URL, expiresAt: Timestamp)
    {
        guard let vendor = vendors[id] else { throw AccountError(.unknownVendor, "vendor '\(id)' is not configured") }
        let state = Base64URL.random()
        let hash = Self.stateHash(state)
        let pkce = vendor.manifest.oauth.pkce ? PKCE() : nil
        let now = Self.nowMillis
        let expires = now + Int64(settings.stateLifetime.components.seconds) * 1000
        do {
            try await accounts.insertState(
                hash: hash,
                OAuthStateRecord(
                    vendor: id, subject: subject, linkSession: linkSession,
                    pkceVerifier: pkce.map { cipher.seal(Secret($0.verifier), context: "oauth-state:\(hash)") },
                    returnTo: returnTo, createdAt: now, expiresAt: expires))
        } catch {
            throw AccountError(.unavailable, "cannot store the link request: \(error.message)")
        }
        return (vendor.oauth.authorizeURL(state: state, pkce: pkce), Timestamp(millisecondsSinceEpoch: expires))
    }

    /// Handles the vendor's redirect back: checks the state (known, unused, fresh, for this vendor),
    /// exchanges the code, lets the adapter finish the link, stores the sealed tokens, emits
    /// `connection.linked` and queues the backfill.
    public func completeLink(vendor id: String, query: [String: String]) async -> LinkOutcome {
        let display = vendors[id]?.manifest.displayName ?? id
        var outcome = LinkOutcome(vendor: id, displayName: display)
        func fail(_ code: String, _ message: String) -> LinkOutcome {
            metrics.links(id, code).increment()
            outcome.failure = message
            outcome.failureCode = code
            logger.info("link failed", metadata: ["vendor": "\(id)", "reason": "\(code)"])
            return outcome
        }
        guard let vendor = vendors[id] else { return fail("unknown_vendor", "\(id) is not available here.") }
        guard let state = query["state"], !state.isEmpty else {
            return fail("missing_state", "The link request was incomplete. Please start again.")
        }
        let hash = Self.stateHash(state)
        let record: OAuthStateRecord
        do {
            switch try await accounts.consumeState(hash: hash, now: Self.nowMillis) {
            case .success(let r): record = r
            case .failure(.unknown):
                return fail("unknown_state", "This link is not valid. Please start again from your app.")
            case .failure(.expired(let r)):
                outcome.returnTo = r.returnTo
                outcome.linkSession = r.linkSession
                return fail("expired_state", "This link has expired. Please start again from your app.")
            case .failure(.alreadyUsed(let r)):
                outcome.returnTo = r.returnTo
                outcome.linkSession = r.linkSession
                return fail("reused_state", "This link was already used. Please start again from your app.")
            }
        } catch {
            return fail("unavailable", "pulsegate cannot complete the link right now. Please try again in a minute.")
        }
        outcome.returnTo = record.returnTo
        outcome.linkSession = record.linkSession
        guard record.vendor == id else {
            return fail("wrong_vendor", "This link was made for another service. Please start again.")
        }
        if let error = query["error"] {
            return fail(
                error == "access_denied" ? "access_denied" : "vendor_error",
                error == "access_denied"
                    ? "You did not allow access at \(display), so nothing was linked."
                    : "\(display) reported a problem (\(error.prefix(60))). Please try again.")
        }
        guard let code = query["code"], !code.isEmpty else {
            return fail("missing_code", "\(display) did not send an authorization code. Please try again.")
        }
        let pkce: PKCE?
        if let sealed = record.pkceVerifier {
            guard let verifier = try? cipher.open(sealed, context: "oauth-state:\(hash)") else {
                return fail("unavailable", "pulsegate cannot complete the link right now. Please try again.")
            }
            pkce = PKCE(verifier: verifier.text)
        } else {
            pkce = nil
        }
        let now = Timestamp.now
        let grant: TokenGrant
        do {
            let response = try await vendor.context.http.send(
                vendor.oauth.codeExchangeRequest(code: code, pkce: pkce), user: nil, budgeted: false)
            grant = try vendor.adapter.readTokenResponse(
                response, client: vendor.oauth, now: now, previousRefreshToken: nil)
        } catch let error as OAuthError {
            logger.warning("code exchange refused", metadata: ["vendor": "\(id)", "error": "\(error)"])
            return fail("exchange_failed", "\(display) did not accept the link. Please start again.")
        } catch {
            logger.warning("code exchange failed", metadata: ["vendor": "\(id)", "error": "\(error)"])
            return fail("vendor_unavailable", "\(display) could not be reached. Please try again in a few minutes.")
        }
        let vendorUserID: String
        do {
            vendorUserID = try await vendor.adapter.didLink(grant: grant, callback: query, context: vendor.context)
        } catch {
            logger.warning("link refused by adapter", metadata: ["vendor": "\(id)", "error": "\(error)"])
            if case .rejected(let why) = error { return fail("insufficient_access", "\(display): \(why).") }
            return fail(
                "vendor_unavailable", "\(display) could not finish the link. Please try again in a few minutes.")
        }
        let connectionID = UUID().uuidString.lowercased()
        let expiresAt = grant.expiresAt ?? defaultExpiry(vendor, now: now)
        var connection = ConnectionRecord(
            id: connectionID, vendor: id, subject: record.subject, vendorUserID: vendorUserID,
            scopes: grant.scopes ?? vendor.settings.scopes, accessToken: nil, refreshToken: nil,
            accessExpiresAt: expiresAt?.millisecondsSinceEpoch,
            refreshDueAt: grant.refreshToken == nil ? nil : refreshDue(expiresAt: expiresAt, now: now),
            linkedAt: now.millisecondsSinceEpoch, updatedAt: now.millisecondsSinceEpoch)
        do {
            // A re-link keeps the existing id; the sealed tokens are bound to the id, so seal after.
            let existing = try await accounts.connections(subject: record.subject).first { $0.vendor == id }
            if let existing { connection.id = existing.id }
            connection.accessToken = cipher.seal(grant.accessToken, context: Self.tokenContext(connection.id, "access"))
            connection.refreshToken = grant.refreshToken.map {
                cipher.seal($0, context: Self.tokenContext(connection.id, "refresh"))
            }
            connection = try await accounts.link(connection)
            try await emit([DataEvent(kind: .linked, subject: record.subject, vendor: id, at: now)])
            try await queueBackfill(vendor, connection: connection, now: now)
        } catch {
            logger.error("storing a link failed", metadata: ["vendor": "\(id)", "error": "\(error)"])
            return fail("unavailable", "pulsegate cannot complete the link right now. Please try again in a minute.")
        }
        metrics.links(id, "linked").increment()
        logger.notice("connection linked", metadata: ["vendor": "\(id)", "connection": "\(connection.id)"])
        outcome.connection = connection
        return outcome
    }

    static func tokenContext(_ connectionID: String, _ field: String) -> String {
        "connection:\(connectionID):\(field)"
    }

    func defaultExpiry(_ vendor: VendorRuntime, now: Timestamp) -> Timestamp? {
        vendor.manifest.oauth.accessTokenLifetimeSeconds.map { now.adding(milliseconds: Int64($0) * 1000) }
    }

    /// When to refresh a token expiring at `expiresAt`: ahead by a fraction of its remaining life
    /// (bounded), minus jitter.
    func refreshDue(expiresAt: Timestamp?, now: Timestamp) -> Int64? {
        guard let expiresAt else { return nil }
        let life = max(0, expiresAt.millisecondsSinceEpoch - now.millisecondsSinceEpoch)
        let minAhead = Int64(settings.refreshAheadMin.components.seconds) * 1000
        let maxAhead = Int64(settings.refreshAheadMax.components.seconds) * 1000
        let ahead = min(maxAhead, max(minAhead, Int64(Double(life) * settings.refreshAheadFraction)))
        let jitter = Int64.random(in: 0...max(1, ahead / 2))
        return max(now.millisecondsSinceEpoch, expiresAt.millisecondsSinceEpoch - ahead - jitter)
    }

    func queueBackfill(_ vendor: VendorRuntime, connection: ConnectionRecord, now: Timestamp) async throws(StoreError) {
        let days = min(vendor.settings.backfillDays, vendor.manifest.backfill.horizonDays)
        guard days > 0, let context = try? connectionContext(connection, token: Secret("")) else { return }
        let from = now.adding(milliseconds: -Int64(days) * 86_400_000)
        let tasks = vendor.adapter.backfillTasks(from: from, to: now, connection: context)
        try await accounts.enqueueJobs(
            tasks.map { jobSpec($0, connection: connection, due: now.millisecondsSinceEpoch) },
            now: now.millisecondsSinceEpoch)
        jobBell.ring()
    }

    func jobSpec(_ task: FetchTask, connection: ConnectionRecord, due: Int64) -> JobSpec {
        let payload = (try? JSONEncoder().encode(task)).map { Array($0) } ?? []
        return JobSpec(
            connectionID: connection.id, vendor: connection.vendor, kind: "fetch", payload: payload,
            dedupeKey: "\(connection.id):\(task.key)", dueAt: due)
    }

    /// A job that maps a record delivered inside a notification (payload: the record's key).
    func mapJobSpec(_ key: String, connection: ConnectionRecord, due: Int64) -> JobSpec {
        JobSpec(
            connectionID: connection.id, vendor: connection.vendor, kind: "map", payload: Array(key.utf8),
            dedupeKey: "\(connection.id):map:\(key)", dueAt: due)
    }

    func connectionContext(_ c: ConnectionRecord, token: Secret) throws(StoreError) -> ConnectionContext {
        ConnectionContext(
            id: c.id, subject: c.subject, vendorUserID: c.vendorUserID, scopes: c.scopes, accessToken: token,
            cursor: c.cursor.flatMap { try? JSONValue.parse($0) } ?? .null)
    }

    /// Appends events to the outbox (durably, beside the samples).
    func emit(_ events: [DataEvent]) async throws(StoreError) {
        guard !events.isEmpty else { return }
        _ = try await outbox.enqueue(events.map(\.line))
        for e in events { metrics.events(e.kind.rawValue).increment() }
    }

    /// Sets the gauges read from the store: connections by vendor and status, the webhook backlog,
    /// waiting jobs. Called at scrape time, so they are never stale and cost nothing between scrapes.
    public func recordGauges() async {
        let factory = metrics.factory
        if let counts = try? await accounts.connectionCounts() {
            for vendor in vendors.keys {
                for status in ConnectionRecord.Status.allCases {
                    Gauge(
                        label: "pulsegate_connections", dimensions: [("vendor", vendor), ("status", status.rawValue)],
                        factory: factory
                    ).record(counts[vendor]?[status.rawValue] ?? 0)
                }
            }
        }
        if let backlog = try? await accounts.inboxBacklog() {
            Gauge(label: "pulsegate_webhook_inbox_backlog", factory: factory).record(backlog)
        }
        if let jobs = try? await accounts.jobCount() {
            Gauge(label: "pulsegate_vendor_jobs_waiting", factory: factory).record(jobs)
        }
    }

    // MARK: connections

    public func connections(subject: String) async throws(AccountError) -> [ConnectionRecord] {
        do {
            return try await accounts.connections(subject: subject)
        } catch {
            throw AccountError(.unavailable, error.message)
        }
    }

    public func connection(id: String) async throws(AccountError) -> ConnectionRecord? {
        do {
            return try await accounts.connection(id: id)
        } catch {
            throw AccountError(.unavailable, error.message)
        }
    }

    /// Unlinks: revokes at the vendor (queued for retry when the vendor is unreachable), emits
    /// `connection.unlinked` and a tombstone, deletes the connection with its tokens, jobs and raw payloads.
    public func unlink(connectionID: String) async throws(AccountError) {
        let connection: ConnectionRecord
        do {
            guard let c = try await accounts.connection(id: connectionID) else {
                throw AccountError(.notFound, "no connection \(connectionID)")
            }
            connection = c
        } catch let error as AccountError {
            throw error
        } catch {
            throw AccountError(.unavailable, "\(error)")
        }
        let now = Timestamp.now
        if let vendor = vendors[connection.vendor], let sealed = connection.accessToken,
            let token = try? cipher.open(sealed, context: Self.tokenContext(connection.id, "access"))
        {
            await revokeOrQueue(vendor, connection: connection, token: token, now: now)
        }
        do {
            try await emit([
                DataEvent(
                    kind: .unlinked, subject: connection.subject, vendor: connection.vendor, at: now, reason: "unlinked"
                ),
                DataEvent(
                    kind: .tombstone, subject: connection.subject, vendor: connection.vendor, at: now,
                    reason: "unlinked"),
            ])
            try await accounts.delete(id: connection.id)
        } catch {
            throw AccountError(.unavailable, "cannot unlink right now: \(error.message)")
        }
        metrics.links(connection.vendor, "unlinked").increment()
        logger.notice(
            "connection unlinked", metadata: ["vendor": "\(connection.vendor)", "connection": "\(connection.id)"])
    }

    /// Revokes now; if the vendor cannot be reached, queues a revoke job holding the sealed token so the
    /// grant still dies at the vendor later.
    func revokeOrQueue(_ vendor: VendorRuntime, connection: ConnectionRecord, token: Secret, now: Timestamp) async {
        let context = ConnectionContext(
            id: connection.id, subject: connection.subject, vendorUserID: connection.vendorUserID,
            scopes: connection.scopes, accessToken: token)
        do {
            try await vendor.adapter.revoke(connection: context, context: vendor.context)
            metrics.revocations(vendor.id, "revoked").increment()
        } catch {
            if case .rejected = error {
                metrics.revocations(vendor.id, "refused").increment()
                return
            }
            let jobKey = "revoke:\(connection.id)"
            let payload = JSONValue.object([
                "token": .string(Array(cipher.seal(token, context: jobKey)).hexString),
                "vendor_user_id": connection.vendorUserID.map(JSONValue.string) ?? .null,
                "subject": .string(connection.subject), "connection_id": .string(connection.id),
            ])
            try? await accounts.enqueueJobs(
                [
                    JobSpec(
                        connectionID: nil, vendor: vendor.id, kind: "revoke", payload: payload.bytes, dedupeKey: jobKey,
                        dueAt: now.millisecondsSinceEpoch + 60_000)
                ], now: now.millisecondsSinceEpoch)
            metrics.revocations(vendor.id, "queued").increment()
            logger.warning(
                "revoke at vendor failed; queued", metadata: ["vendor": "\(vendor.id)", "error": "\(error)"])
        }
    }
}

/// The engine's counters, by vendor and outcome. Counters are made once per label set and kept:
/// making one asks the metrics backend to look it up under a lock, too slow for the webhook path.
final class EngineMetrics: Sendable {
    let factory: any MetricsFactory
    private let counters = Mutex([String: Counter]())

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        let key = ([label] + dimensions.map { "\($0.0)=\($0.1)" }).joined(separator: "\u{1F}")
        return counters.withLock { c in
            if let existing = c[key] { return existing }
            let made = Counter(label: label, dimensions: dimensions, factory: factory)
            c[key] = made
            return made
        }
    }

    func links(_ vendor: String, _ outcome: String) -> Counter {
        counter("pulsegate_links_total", [("vendor", vendor), ("outcome", outcome)])
    }
    func webhooks(_ vendor: String, _ outcome: String) -> Counter {
        counter("pulsegate_webhooks_total", [("vendor", vendor), ("outcome", outcome)])
    }
    func refreshes(_ vendor: String, _ outcome: String) -> Counter {
        counter("pulsegate_token_refreshes_total", [("vendor", vendor), ("outcome", outcome)])
    }
    func jobs(_ vendor: String, _ outcome: String) -> Counter {
        counter("pulsegate_vendor_jobs_total", [("vendor", vendor), ("outcome", outcome)])
    }
    func samples(_ vendor: String) -> Counter {
        counter("pulsegate_vendor_samples_total", [("vendor", vendor)])
    }
    func events(_ kind: String) -> Counter {
        counter("pulsegate_events_total", [("event", kind)])
    }
    func revocations(_ vendor: String, _ outcome: String) -> Counter {
        counter("pulsegate_revocations_total", [("vendor", vendor), ("outcome", outcome)])
    }
}

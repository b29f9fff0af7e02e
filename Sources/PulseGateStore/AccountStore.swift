import Foundation
import GRDB
import Logging

/// Linked accounts, OAuth states, the webhook inbox, background jobs and raw payloads, in the same SQLite
/// file as the outbox.
///
/// Every method is one transaction. Work that several workers (or, with a shared store, several
/// replicas) could pick up is *claimed* with a lease: a claim sets `lease_until`, and a lease that
/// expired (its worker died) can be claimed again, so a crash delays work but never loses it.
public final class AccountStore: Sendable {
    public let store: SQLiteStore
    private let inboxWriter: GroupCommit<InboxInsert, Bool>

    /// One notification to add to the inbox.
    public struct InboxInsert: Sendable {
        public var vendor: String
        public var dedupeKey: String
        public var body: [UInt8]
        public var meta: [UInt8]
        public var receivedAt: Int64
        public init(vendor: String, dedupeKey: String, body: [UInt8], meta: [UInt8], receivedAt: Int64) {
            self.vendor = vendor
            self.dedupeKey = dedupeKey
            self.body = body
            self.meta = meta
            self.receivedAt = receivedAt
        }
    }

    public init(store: SQLiteStore, logger: Logger) {
        self.store = store
        inboxWriter = GroupCommit(pool: store.pool, what: "webhook notifications", logger: logger) { db, batch in
            let statement = try db.cachedStatement(
                sql: """
                    INSERT INTO webhook_inbox (vendor, dedupe_key, received_at, body, meta, next_attempt_at)
                    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(vendor, dedupe_key) DO NOTHING
                    """)
            return try batch.map { entry in
                try statement.execute(arguments: [
                    entry.vendor, entry.dedupeKey, entry.receivedAt, Data(entry.body), Data(entry.meta),
                    entry.receivedAt,
                ])
                return db.changesCount > 0
            }
        }
    }

    static func createTables(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE connection (
                    id TEXT PRIMARY KEY,
                    vendor TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    vendor_user_id TEXT,
                    status TEXT NOT NULL,
                    status_reason TEXT,
                    scopes TEXT NOT NULL DEFAULT '',
                    access_token BLOB,
                    refresh_token BLOB,
                    access_expires_at INTEGER,
                    refresh_due_at INTEGER,
                    refresh_lease_until INTEGER,
                    refresh_in_flight_since INTEGER,
                    refresh_failures INTEGER NOT NULL DEFAULT 0,
                    token_generation INTEGER NOT NULL DEFAULT 0,
                    linked_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    last_webhook_at INTEGER,
                    last_sync_at INTEGER,
                    last_sample_at INTEGER,
                    cursor BLOB,
                    UNIQUE (vendor, subject)
                );
                CREATE INDEX connection_refresh_due ON connection(refresh_due_at)
                    WHERE status = 'active' AND refresh_due_at IS NOT NULL;
                CREATE INDEX connection_by_vendor_user ON connection(vendor, vendor_user_id);
                CREATE INDEX connection_by_subject ON connection(subject);
                CREATE INDEX connection_by_status ON connection(vendor, status);

                CREATE TABLE oauth_state (
                    state_hash TEXT PRIMARY KEY,
                    vendor TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    link_session TEXT,
                    pkce_verifier BLOB,
                    return_to TEXT,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    used_at INTEGER
                );

                CREATE TABLE webhook_inbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    vendor TEXT NOT NULL,
                    dedupe_key TEXT NOT NULL,
                    received_at INTEGER NOT NULL,
                    body BLOB NOT NULL,
                    meta BLOB NOT NULL,
                    done INTEGER NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at INTEGER NOT NULL,
                    last_error TEXT,
                    UNIQUE (vendor, dedupe_key)
                );
                CREATE INDEX webhook_inbox_pending ON webhook_inbox(next_attempt_at) WHERE done = 0;

                CREATE TABLE job (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    connection_id TEXT,
                    vendor TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    payload BLOB NOT NULL,
                    dedupe_key TEXT NOT NULL UNIQUE,
                    due_at INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    lease_until INTEGER,
                    last_error TEXT,
                    created_at INTEGER NOT NULL
                );
                CREATE INDEX job_due ON job(due_at);
                CREATE INDEX job_by_connection ON job(connection_id);

                CREATE TABLE raw_payload (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    vendor TEXT NOT NULL,
                    connection_id TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    record_key TEXT NOT NULL,
                    mapping_version INTEGER NOT NULL,
                    fetched_at INTEGER NOT NULL,
                    body BLOB NOT NULL,
                    UNIQUE (vendor, connection_id, record_key)
                );
                CREATE INDEX raw_payload_by_time ON raw_payload(vendor, fetched_at);

                CREATE TABLE vendor_state (
                    vendor TEXT NOT NULL,
                    key TEXT NOT NULL,
                    value BLOB NOT NULL,
                    updated_at INTEGER NOT NULL,
                    PRIMARY KEY (vendor, key)
                );
                """)
    }

    private func write<T: Sendable>(_ what: String, _ body: @Sendable @escaping (Database) throws -> T)
        async throws(StoreError) -> T
    {
        do {
            return try await store.pool.write(body)
        } catch {
            throw SQLiteStore.storeError(error, doing: what)
        }
    }

    private func read<T: Sendable>(_ what: String, _ body: @Sendable @escaping (Database) throws -> T)
        async throws(StoreError) -> T
    {
        do {
            return try await store.pool.read(body)
        } catch {
            throw SQLiteStore.storeError(error, doing: what)
        }
    }

    // MARK: OAuth states

    public func insertState(hash: String, _ record: OAuthStateRecord) async throws(StoreError) {
        try await write("storing an OAuth state") { db in
            try db.execute(
                sql: """
                    INSERT INTO oauth_state
                        (state_hash, vendor, subject, link_session, pkce_verifier, return_to, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    hash, record.vendor, record.subject, record.linkSession, record.pkceVerifier.map { Data($0) },
                    record.returnTo, record.createdAt, record.expiresAt,
                ])
            // Expired states are worthless; keep the table small.
            try db.execute(
                sql: "DELETE FROM oauth_state WHERE expires_at < ?", arguments: [record.createdAt - 86_400_000])
        }
    }

    /// Uses a state once: the first call gets the record, every later call `.alreadyUsed`.
    public func consumeState(hash: String, now: Int64) async throws(StoreError) -> Result<
        OAuthStateRecord, OAuthStateRecord.Refusal
    > {
        try await write("using an OAuth state") { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT * FROM oauth_state WHERE state_hash = ?", arguments: [hash])
            else { return .failure(.unknown) }
            let record = OAuthStateRecord(
                vendor: row["vendor"], subject: row["subject"], linkSession: row["link_session"],
                pkceVerifier: (row["pkce_verifier"] as Data?).map { Array($0) }, returnTo: row["return_to"],
                createdAt: row["created_at"], expiresAt: row["expires_at"])
            if row["used_at"] as Int64? != nil { return .failure(.alreadyUsed(record)) }
            try db.execute(sql: "UPDATE oauth_state SET used_at = ? WHERE state_hash = ?", arguments: [now, hash])
            if record.expiresAt <= now { return .failure(.expired(record)) }
            return .success(record)
        }
    }

    // MARK: connections

    static func connection(_ row: Row) -> ConnectionRecord {
        ConnectionRecord(
            id: row["id"], vendor: row["vendor"], subject: row["subject"], vendorUserID: row["vendor_user_id"],
            status: ConnectionRecord.Status(rawValue: row["status"]) ?? .needsRelink,
            statusReason: row["status_reason"],
            scopes: (row["scopes"] as String).split(separator: " ").map(String.init),
            accessToken: (row["access_token"] as Data?).map { Array($0) },
            refreshToken: (row["refresh_token"] as Data?).map { Array($0) },
            accessExpiresAt: row["access_expires_at"], refreshDueAt: row["refresh_due_at"],
            refreshInFlightSince: row["refresh_in_flight_since"], refreshFailures: row["refresh_failures"],
            tokenGeneration: row["token_generation"], linkedAt: row["linked_at"], updatedAt: row["updated_at"],
            lastWebhookAt: row["last_webhook_at"], lastSyncAt: row["last_sync_at"],
            lastSampleAt: row["last_sample_at"], cursor: (row["cursor"] as Data?).map { Array($0) })
    }

    /// Stores a freshly linked connection. Linking again (same vendor and subject) replaces the tokens,
    /// keeps the id and the cursor, and makes the connection active again.
    @discardableResult
    public func link(_ c: ConnectionRecord) async throws(StoreError) -> ConnectionRecord {
        try await write("storing a linked connection") { db in
            try db.execute(
                sql: """
                    INSERT INTO connection (id, vendor, subject, vendor_user_id, status, status_reason, scopes,
                        access_token, refresh_token, access_expires_at, refresh_due_at, token_generation,
                        linked_at, updated_at, cursor)
                    VALUES (?, ?, ?, ?, 'active', NULL, ?, ?, ?, ?, ?, 0, ?, ?, ?)
                    ON CONFLICT (vendor, subject) DO UPDATE SET
                        vendor_user_id = excluded.vendor_user_id, status = 'active', status_reason = NULL,
                        scopes = excluded.scopes, access_token = excluded.access_token,
                        refresh_token = excluded.refresh_token, access_expires_at = excluded.access_expires_at,
                        refresh_due_at = excluded.refresh_due_at, refresh_lease_until = NULL,
                        refresh_in_flight_since = NULL, refresh_failures = 0,
                        token_generation = connection.token_generation + 1, linked_at = excluded.linked_at,
                        updated_at = excluded.updated_at
                    """,
                arguments: [
                    c.id, c.vendor, c.subject, c.vendorUserID, c.scopes.joined(separator: " "),
                    c.accessToken.map { Data($0) }, c.refreshToken.map { Data($0) }, c.accessExpiresAt,
                    c.refreshDueAt, c.linkedAt, c.updatedAt, c.cursor.map { Data($0) },
                ])
            return Self.connection(
                try Row.fetchOne(
                    db, sql: "SELECT * FROM connection WHERE vendor = ? AND subject = ?",
                    arguments: [c.vendor, c.subject])!)
        }
    }

    public func connection(id: String) async throws(StoreError) -> ConnectionRecord? {
        try await read("reading a connection") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM connection WHERE id = ?", arguments: [id]).map(Self.connection)
        }
    }

    public func connections(subject: String) async throws(StoreError) -> [ConnectionRecord] {
        try await read("reading connections") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM connection WHERE subject = ? ORDER BY vendor", arguments: [subject]
            )
            .map(Self.connection)
        }
    }

    public func connections(vendor: String, vendorUserID: String) async throws(StoreError) -> [ConnectionRecord] {
        try await read("reading connections") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM connection WHERE vendor = ? AND vendor_user_id = ?",
                arguments: [vendor, vendorUserID]
            ).map(Self.connection)
        }
    }

    /// Active connections of `vendor` whose last webhook or sync is older than `before` (the silence
    /// watchdog's candidates), oldest first.
    public func quietConnections(vendor: String, before: Int64, limit: Int) async throws(StoreError)
        -> [ConnectionRecord]
    {
        try await read("reading quiet connections") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM connection WHERE vendor = ? AND status = 'active'
                      AND MAX(COALESCE(last_webhook_at, 0), COALESCE(last_sync_at, 0), linked_at) < ?
                    ORDER BY MAX(COALESCE(last_webhook_at, 0), COALESCE(last_sync_at, 0), linked_at) LIMIT ?
                    """,
                arguments: [vendor, before, limit]
            ).map(Self.connection)
        }
    }

    /// Counts per vendor and status, for `/metrics` and `pulsegate vendors`.
    public func connectionCounts() async throws(StoreError) -> [String: [String: Int]] {
        try await read("counting connections") { db in
            var out = [String: [String: Int]]()
            for row in try Row.fetchAll(db, sql: "SELECT vendor, status, COUNT(*) AS n FROM connection GROUP BY 1, 2") {
                out[row["vendor"], default: [:]][row["status"]] = row["n"]
            }
            return out
        }
    }

    /// Claims up to `limit` connections whose refresh is due, leasing them for `leaseMillis`. Ordered by
    /// due time through a partial index, so the cost does not grow with the number of connections.
    public func claimDueRefreshes(now: Int64, limit: Int, leaseMillis: Int64) async throws(StoreError)
        -> [ConnectionRecord]
    {
        try await write("claiming due refreshes") { db in
            try Row.fetchAll(
                db,
                sql: """
                    UPDATE connection SET refresh_lease_until = ?
                    WHERE id IN (
                        SELECT id FROM connection
                        WHERE status = 'active' AND refresh_due_at IS NOT NULL AND refresh_due_at <= ?
                          AND (refresh_lease_until IS NULL OR refresh_lease_until < ?)
                        ORDER BY refresh_due_at LIMIT ?)
                    RETURNING *
                    """,
                arguments: [now + leaseMillis, now, now, limit]
            ).map(Self.connection)
        }
    }

    /// The earliest due refresh, so the scheduler can sleep exactly until then.
    public func nextRefreshDue() async throws(StoreError) -> Int64? {
        try await read("reading the next refresh") { db in
            try Int64.fetchOne(
                db,
                sql: """
                    SELECT refresh_due_at FROM connection
                    WHERE status = 'active' AND refresh_due_at IS NOT NULL ORDER BY refresh_due_at LIMIT 1
                    """)
        }
    }

    /// Journals that a refresh request is about to leave, durably, *before* it leaves. Returns false if
    /// the tokens changed since they were read (someone else refreshed): then do not send it.
    public func beginRefresh(id: String, generation: Int64, now: Int64) async throws(StoreError) -> Bool {
        try await write("journaling a refresh") { db in
            try db.execute(
                sql: """
                    UPDATE connection SET refresh_in_flight_since = COALESCE(refresh_in_flight_since, ?)
                    WHERE id = ? AND token_generation = ? AND status = 'active'
                    """,
                arguments: [now, id, generation])
            return db.changesCount == 1
        }
    }

    /// Stores a refresh answer over the generation it started from; clears the journal and the lease.
    /// Returns false when the generation moved (the answer is then not stored).
    public func storeRefreshedTokens(
        id: String, generation: Int64, accessToken: [UInt8], refreshToken: [UInt8]?, accessExpiresAt: Int64?,
        refreshDueAt: Int64?, scopes: [String]?, now: Int64
    ) async throws(StoreError) -> Bool {
        try await write("storing refreshed tokens") { db in
            try db.execute(
                sql: """
                    UPDATE connection SET access_token = ?, refresh_token = COALESCE(?, refresh_token),
                        access_expires_at = ?, refresh_due_at = ?, scopes = COALESCE(?, scopes),
                        refresh_in_flight_since = NULL, refresh_lease_until = NULL, refresh_failures = 0,
                        status_reason = NULL, token_generation = token_generation + 1, updated_at = ?
                    WHERE id = ? AND token_generation = ?
                    """,
                arguments: [
                    Data(accessToken), refreshToken.map { Data($0) }, accessExpiresAt, refreshDueAt,
                    scopes?.joined(separator: " "), now, id, generation,
                ])
            return db.changesCount == 1
        }
    }

    /// A refresh failed transiently: try again at `retryAt`. The journal stays set when the outcome is
    /// unknown (the request may have reached the vendor), and is cleared when the vendor surely did
    /// nothing (it answered with an error).
    public func refreshFailed(id: String, retryAt: Int64, reason: String, outcomeUnknown: Bool, now: Int64)
        async throws(StoreError)
    {
        try await write("recording a refresh failure") { db in
            try db.execute(
                sql: """
                    UPDATE connection SET refresh_due_at = ?, refresh_lease_until = NULL,
                        refresh_failures = refresh_failures + 1, status_reason = ?, updated_at = ?,
                        refresh_in_flight_since = CASE WHEN ? THEN refresh_in_flight_since ELSE NULL END
                    WHERE id = ?
                    """,
                arguments: [retryAt, reason, now, outcomeUnknown, id])
        }
    }

    /// Ends the token life of a connection: needs re-linking or revoked. Tokens are deleted; the row
    /// stays so the user sees what happened.
    public func deactivate(id: String, status: ConnectionRecord.Status, reason: String, now: Int64)
        async throws(StoreError)
    {
        precondition(status != .active)
        try await write("deactivating a connection") { db in
            try Self.deactivate(db, id: id, status: status.rawValue, reason: reason, now: now)
        }
    }

    static func deactivate(_ db: Database, id: String, status: String, reason: String, now: Int64) throws {
        try db.execute(
            sql: """
                UPDATE connection SET status = ?, status_reason = ?, access_token = NULL, refresh_token = NULL,
                    refresh_due_at = NULL, refresh_lease_until = NULL, refresh_in_flight_since = NULL,
                    token_generation = token_generation + 1, updated_at = ?
                WHERE id = ?
                """,
            arguments: [status, reason, now, id])
        try db.execute(sql: "DELETE FROM job WHERE connection_id = ? AND kind != 'revoke'", arguments: [id])
    }

    /// Deletes a connection with its jobs and raw payloads (unlink).
    public func delete(id: String) async throws(StoreError) {
        try await write("deleting a connection") { db in
            try db.execute(sql: "DELETE FROM job WHERE connection_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM raw_payload WHERE connection_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM connection WHERE id = ?", arguments: [id])
        }
    }

    /// Records that a connection was polled (the silence watchdog's reconcile counts as a sync).
    public func markSynced(id: String, at time: Int64) async throws(StoreError) {
        try await write("recording a sync") { db in
            try db.execute(
                sql: "UPDATE connection SET last_sync_at = MAX(COALESCE(last_sync_at, 0), ?) WHERE id = ?",
                arguments: [time, id])
        }
    }

    /// Re-seals every stored token that an older key sealed; `reseal` returns nil to leave a value.
    public func resealTokens(_ reseal: @Sendable @escaping (String, String, [UInt8]) -> [UInt8]?)
        async throws(StoreError)
        -> Int
    {
        try await write("re-sealing tokens") { db in
            var changed = 0
            for row in try Row.fetchAll(db, sql: "SELECT id, access_token, refresh_token FROM connection") {
                let id: String = row["id"]
                var access = (row["access_token"] as Data?).map { Array($0) }
                var refresh = (row["refresh_token"] as Data?).map { Array($0) }
                var touched = false
                if let a = access, let n = reseal(id, "access", a) {
                    access = n
                    touched = true
                }
                if let r = refresh, let n = reseal(id, "refresh", r) {
                    refresh = n
                    touched = true
                }
                if touched {
                    try db.execute(
                        sql: "UPDATE connection SET access_token = ?, refresh_token = ? WHERE id = ?",
                        arguments: [access.map { Data($0) }, refresh.map { Data($0) }, id])
                    changed += 1
                }
            }
            return changed
        }
    }

    /// Re-seals vendor secrets (`secret:*` vendor state) that an older key sealed; `reseal` gets
    /// (vendor, key, sealed) and returns nil to leave a value.
    public func resealVendorSecrets(_ reseal: @Sendable @escaping (String, String, [UInt8]) -> [UInt8]?)
        async throws(StoreError) -> Int
    {
        try await write("re-sealing vendor secrets") { db in
            var changed = 0
            for row in try Row.fetchAll(
                db, sql: "SELECT vendor, key, value FROM vendor_state WHERE key LIKE 'secret:%'")
            {
                let vendor: String = row["vendor"]
                let key: String = row["key"]
                guard let fresh = reseal(vendor, String(key.dropFirst("secret:".count)), Array(row["value"] as Data))
                else {
                    continue
                }
                try db.execute(
                    sql: "UPDATE vendor_state SET value = ? WHERE vendor = ? AND key = ?",
                    arguments: [Data(fresh), vendor, key])
                changed += 1
            }
            return changed
        }
    }

    // MARK: webhook inbox

    /// Stores a notification durably (group-committed with concurrent ones). Returns false when the
    /// same notification (vendor + dedupe key) was already received: a duplicate delivery.
    public func receive(_ entry: InboxInsert) async throws(StoreError) -> Bool {
        try await inboxWriter.submit(entry)
    }

    /// Claims pending notifications in arrival order, pushing their next attempt out by `leaseMillis`.
    public func claimInbox(now: Int64, limit: Int, leaseMillis: Int64) async throws(StoreError) -> [InboxEntry] {
        try await write("claiming webhook notifications") { db in
            try Row.fetchAll(
                db,
                sql: """
                    UPDATE webhook_inbox SET next_attempt_at = ?, attempts = attempts + 1
                    WHERE id IN (SELECT id FROM webhook_inbox WHERE done = 0 AND next_attempt_at <= ?
                                 ORDER BY id LIMIT ?)
                    RETURNING id, vendor, received_at, body, meta, attempts
                    """,
                arguments: [now + leaseMillis, now, limit]
            ).map {
                InboxEntry(
                    id: $0["id"], vendor: $0["vendor"], receivedAt: $0["received_at"], body: Array($0["body"] as Data),
                    meta: Array($0["meta"] as Data), attempts: $0["attempts"])
            }.sorted { $0.id < $1.id }
        }
    }

    /// Marks notifications processed, with everything they caused, in one transaction: the jobs they
    /// announced, the connections they touched (last webhook time) and the connections a
    /// deauthorization ended. A crash leaves either all of it or none (the notifications are then
    /// claimed again when their lease ends).
    public func completeInbox(
        ids: [Int64], jobs: [JobSpec], raws: [RawPayload] = [], touched: [String: Int64],
        deactivate: [(id: String, status: ConnectionRecord.Status, reason: String)], now: Int64
    ) async throws(StoreError) {
        let deactivate = deactivate.map { ($0.id, $0.status.rawValue, $0.reason) }
        try await write("completing webhook notifications") { db in
            try Self.keepRaw(db, raws)
            try Self.insertJobs(db, jobs, now: now)
            for (id, at) in touched {
                try db.execute(
                    sql: "UPDATE connection SET last_webhook_at = MAX(COALESCE(last_webhook_at, 0), ?) WHERE id = ?",
                    arguments: [at, id])
            }
            for (id, status, reason) in deactivate {
                try Self.deactivate(db, id: id, status: status, reason: reason, now: now)
            }
            let done = try db.cachedStatement(
                sql: "UPDATE webhook_inbox SET done = 1, body = X'', last_error = NULL WHERE id = ?")
            for id in ids { try done.execute(arguments: [id]) }
        }
    }

    /// A notification could not be processed: retry at `retryAt`, or give up (`done`) with the reason.
    public func failInbox(id: Int64, reason: String, retryAt: Int64?) async throws(StoreError) {
        try await write("recording a webhook failure") { db in
            try db.execute(
                sql:
                    "UPDATE webhook_inbox SET last_error = ?, next_attempt_at = COALESCE(?, next_attempt_at), done = ? WHERE id = ?",
                arguments: [reason, retryAt, retryAt == nil ? 2 : 0, id])
        }
    }

    /// Forgets processed notifications older than `before` (their dedupe keys go with them).
    public func purgeInbox(before: Int64) async throws(StoreError) -> Int {
        try await write("purging the webhook inbox") { db in
            try db.execute(sql: "DELETE FROM webhook_inbox WHERE done != 0 AND received_at < ?", arguments: [before])
            return db.changesCount
        }
    }

    public func inboxBacklog() async throws(StoreError) -> Int {
        try await read("counting the webhook inbox") { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhook_inbox WHERE done = 0") ?? 0
        }
    }

    // MARK: jobs

    static func insertJobs(_ db: Database, _ jobs: [JobSpec], now: Int64) throws {
        guard !jobs.isEmpty else { return }
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO job (connection_id, vendor, kind, payload, dedupe_key, due_at, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(dedupe_key) DO UPDATE SET due_at = MIN(job.due_at, excluded.due_at)
                """)
        for j in jobs {
            try statement.execute(arguments: [
                j.connectionID, j.vendor, j.kind, Data(j.payload), j.dedupeKey, j.dueAt, now,
            ])
        }
    }

    /// Creates jobs; a job whose dedupe key exists already is not created twice (it may run sooner).
    public func enqueueJobs(_ jobs: [JobSpec], now: Int64) async throws(StoreError) {
        try await write("creating jobs") { db in try Self.insertJobs(db, jobs, now: now) }
    }

    /// Claims due jobs, leasing each for `leaseMillis`; jobs of connections that are no longer active are
    /// skipped (revocation jobs excepted).
    public func claimJobs(now: Int64, limit: Int, leaseMillis: Int64) async throws(StoreError) -> [JobRecord] {
        try await write("claiming jobs") { db in
            try Row.fetchAll(
                db,
                sql: """
                    UPDATE job SET lease_until = ?, attempts = attempts + 1
                    WHERE id IN (SELECT id FROM job WHERE due_at <= ? AND (lease_until IS NULL OR lease_until < ?)
                                 ORDER BY due_at LIMIT ?)
                    RETURNING id, connection_id, vendor, kind, payload, attempts, due_at
                    """,
                arguments: [now + leaseMillis, now, now, limit]
            ).map {
                JobRecord(
                    id: $0["id"], connectionID: $0["connection_id"], vendor: $0["vendor"], kind: $0["kind"],
                    payload: Array($0["payload"] as Data), attempts: $0["attempts"], dueAt: $0["due_at"])
            }
        }
    }

    /// A job finished: it is deleted, and the follow-up jobs it produced are created, in one transaction.
    public func completeJob(id: Int64, followUps: [JobSpec], now: Int64) async throws(StoreError) {
        try await write("completing a job") { db in
            try db.execute(sql: "DELETE FROM job WHERE id = ?", arguments: [id])
            try Self.insertJobs(db, followUps, now: now)
        }
    }

    public func retryJob(id: Int64, at: Int64, reason: String) async throws(StoreError) {
        try await write("rescheduling a job") { db in
            try db.execute(
                sql: "UPDATE job SET due_at = ?, lease_until = NULL, last_error = ? WHERE id = ?",
                arguments: [at, reason, id])
        }
    }

    public func nextJobDue() async throws(StoreError) -> Int64? {
        try await read("reading the next job") { db in
            try Int64.fetchOne(db, sql: "SELECT MIN(MAX(due_at, COALESCE(lease_until, 0))) FROM job")
        }
    }

    public func jobCount() async throws(StoreError) -> Int {
        try await read("counting jobs") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM job") ?? 0 }
    }

    // MARK: raw payloads

    /// Ends a fetch job in one transaction: keeps its raw records, saves the adapter's cursor, records
    /// the sync (and the samples, if any), deletes the job and creates its follow-ups. Called after the
    /// samples are in the outbox, so a crash before it only repeats the fetch.
    public func completeFetch(
        jobID: Int64, connectionID: String, raws: [RawPayload], cursor: [UInt8]?, followUps: [JobSpec],
        sampled: Bool, now: Int64
    ) async throws(StoreError) {
        try await write("completing a fetch") { db in
            try Self.keepRaw(db, raws)
            try db.execute(
                sql: """
                    UPDATE connection SET cursor = COALESCE(?, cursor),
                        last_sync_at = MAX(COALESCE(last_sync_at, 0), ?),
                        last_sample_at = CASE WHEN ? THEN MAX(COALESCE(last_sample_at, 0), ?) ELSE last_sample_at END
                    WHERE id = ?
                    """,
                arguments: [cursor.map { Data($0) }, now, sampled, now, connectionID])
            try db.execute(sql: "DELETE FROM job WHERE id = ?", arguments: [jobID])
            try Self.insertJobs(db, followUps, now: now)
        }
    }

    /// Keeps raw records; the same record kept again replaces the earlier copy.
    static func keepRaw(_ db: Database, _ raws: [RawPayload]) throws {
        guard !raws.isEmpty else { return }
        let keep = try db.cachedStatement(
            sql: """
                INSERT INTO raw_payload (vendor, connection_id, subject, record_key, mapping_version, fetched_at, body)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (vendor, connection_id, record_key) DO UPDATE SET
                    mapping_version = excluded.mapping_version, fetched_at = excluded.fetched_at, body = excluded.body
                """)
        for raw in raws {
            try keep.execute(arguments: [
                raw.vendor, raw.connectionID, raw.subject, raw.recordKey, raw.mappingVersion, raw.fetchedAt,
                Data(raw.body),
            ])
        }
    }

    /// Keeps raw records outside a fetch's completion (records that could not be mapped).
    public func keepRaw(_ raws: [RawPayload]) async throws(StoreError) {
        try await write("keeping raw payloads") { db in try Self.keepRaw(db, raws) }
    }

    /// One kept raw record, or `nil` when it is gone (purged, or the connection was unlinked).
    public func rawPayload(vendor: String, connectionID: String, recordKey: String) async throws(StoreError)
        -> RawPayload?
    {
        try await read("reading a raw payload") { db in
            try Row.fetchOne(
                db, sql: "SELECT * FROM raw_payload WHERE vendor = ? AND connection_id = ? AND record_key = ?",
                arguments: [vendor, connectionID, recordKey]
            ).map(Self.rawPayload)
        }
    }

    static func rawPayload(_ row: Row) -> RawPayload {
        RawPayload(
            vendor: row["vendor"], connectionID: row["connection_id"], subject: row["subject"],
            recordKey: row["record_key"], mappingVersion: row["mapping_version"], fetchedAt: row["fetched_at"],
            body: Array(row["body"] as Data))
    }

    /// Raw payloads of `vendor` fetched at or after `since`, in fetch order, after row `afterID`.
    public func rawPayloads(vendor: String, since: Int64, afterID: Int64, limit: Int) async throws(StoreError)
        -> [(id: Int64, payload: RawPayload)]
    {
        try await read("reading raw payloads") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM raw_payload WHERE vendor = ? AND fetched_at >= ? AND id > ? ORDER BY id LIMIT ?
                    """,
                arguments: [vendor, since, afterID, limit]
            ).map { row in (row["id"], Self.rawPayload(row)) }
        }
    }

    public func purgeRaw(before: Int64) async throws(StoreError) -> Int {
        try await write("purging raw payloads") { db in
            try db.execute(sql: "DELETE FROM raw_payload WHERE fetched_at < ?", arguments: [before])
            return db.changesCount
        }
    }

    // MARK: vendor state

    public func vendorState(vendor: String, key: String) async throws(StoreError) -> [UInt8]? {
        try await read("reading vendor state") { db in
            try Data.fetchOne(
                db, sql: "SELECT value FROM vendor_state WHERE vendor = ? AND key = ?", arguments: [vendor, key]
            ).map { Array($0) }
        }
    }

    public func setVendorState(vendor: String, key: String, value: [UInt8]?, now: Int64) async throws(StoreError) {
        try await write("writing vendor state") { db in
            if let value {
                try db.execute(
                    sql: """
                        INSERT INTO vendor_state (vendor, key, value, updated_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT (vendor, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                        """,
                    arguments: [vendor, key, Data(value), now])
            } else {
                try db.execute(sql: "DELETE FROM vendor_state WHERE vendor = ? AND key = ?", arguments: [vendor, key])
            }
        }
    }
}

import Foundation
import GRDB
import GRDBSQLite
import Logging
import Synchronization

/// The durable outbox: every accepted sample is committed here before anyone acknowledges it, and
/// every sink reads it from its own persisted cursor.
///
/// Writers are batched by group commit: concurrent ``enqueue(_:)`` calls that arrive while a commit is
/// in flight are written together in the next transaction (one fsync for all of them). A row is
/// deleted once every configured sink has acknowledged it. The outbox is bounded: when the rows
/// waiting for the slowest sink would exceed the high watermark, ``enqueue(_:)`` refuses the whole call
/// with `.outboxFull` and writes nothing.
public final class Outbox: Sendable {
    public let store: SQLiteStore
    public let highWatermark: Int
    /// The sinks whose cursors hold rows back; rows before all of them are purged.
    public let sinkIDs: [String]
    /// Rung after each commit (new rows) and each purge.
    public let doorbell = Doorbell()
    private let logger: Logger

    private struct State {
        var lastSeq: Int64 = 0
        var cursors: [String: Int64] = [:]
        var purgedThrough: Int64 = 0
        /// Samples admitted past the watermark check but not yet committed.
        var reserved = 0
        var closed = false

        var minCursor: Int64 { cursors.values.min() ?? lastSeq }
        var depth: Int { Int(lastSeq - minCursor) + reserved }
    }
    private let state = Mutex(State())
    private let writer: GroupCommit<[[UInt8]], ClosedRange<Int64>>

    /// Opens the outbox over `store`, creating cursors for sinks seen for the first time (they start at
    /// the oldest row still held, so a new sink receives what is waiting).
    public init(store: SQLiteStore, sinkIDs: [String], highWatermark: Int, logger: Logger) throws(StoreError) {
        self.store = store
        self.sinkIDs = sinkIDs
        self.highWatermark = highWatermark
        self.logger = logger
        writer = GroupCommit(pool: store.pool, what: "samples to the outbox", logger: logger, write: Self.insert)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        do {
            let (last, cursors) = try store.pool.write { db -> (Int64, [String: Int64]) in
                let last = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") ?? 0
                let oldest = try Int64.fetchOne(db, sql: "SELECT MIN(seq) FROM outbox")
                var cursors = [String: Int64]()
                for sink in sinkIDs {
                    if let acked = try Int64.fetchOne(
                        db, sql: "SELECT acked_seq FROM sink_cursor WHERE sink = ?", arguments: [sink])
                    {
                        cursors[sink] = acked
                    } else {
                        let start = oldest.map { $0 - 1 } ?? last
                        try db.execute(
                            sql: "INSERT INTO sink_cursor (sink, acked_seq, updated_at) VALUES (?, ?, ?)",
                            arguments: [sink, start, now])
                        cursors[sink] = start
                    }
                }
                if let minCursor = cursors.values.min() {
                    try db.execute(sql: "DELETE FROM outbox WHERE seq <= ?", arguments: [minCursor])
                }
                return (last, cursors)
            }
            state.withLock { s in
                s.lastSeq = last
                s.cursors = cursors
                s.purgedThrough = cursors.values.min() ?? last
            }
        } catch {
            throw SQLiteStore.storeError(error, doing: "opening the outbox")
        }
    }

    // MARK: intake

    /// Rows waiting for the slowest sink, plus rows being committed right now.
    public var depth: Int { state.withLock { $0.depth } }
    /// Sequence number of the newest committed row.
    public var lastSeq: Int64 { state.withLock { $0.lastSeq } }

    /// Durably appends NDJSON lines (one sample each, newline included) and returns their sequence
    /// numbers. When this returns, the rows are committed; when it throws, none of them are.
    public func enqueue(_ lines: [[UInt8]]) async throws(StoreError) -> ClosedRange<Int64> {
        precondition(!lines.isEmpty, "enqueue of nothing")
        try state.withLock { s throws(StoreError) in
            if s.closed { throw StoreError(.unavailable, "the outbox is closed (shutting down)") }
            if s.depth + lines.count > highWatermark {
                throw StoreError(
                    .outboxFull,
                    "outbox holds \(s.depth) samples; \(lines.count) more would pass the high watermark \(highWatermark)"
                )
            }
            s.reserved += lines.count
        }
        do {
            let range = try await writer.submit(lines)
            state.withLock { s in
                s.reserved -= lines.count
                s.lastSeq = max(s.lastSeq, range.upperBound)
            }
            doorbell.ring()
            return range
        } catch {
            state.withLock { $0.reserved -= lines.count }
            throw error
        }
    }

    /// One group-commit round: every caller's lines in one transaction, each answered with its range.
    private static func insert(_ db: Database, _ batch: [[[UInt8]]]) throws -> [ClosedRange<Int64>] {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // Bound through the C API: no Data copy and no argument array per row on the hottest path of
        // intake (GRDB still prepares, caches and owns the statement).
        let statement = try db.cachedStatement(sql: "INSERT INTO outbox (body, enqueued_at) VALUES (?, ?)")
        let handle = statement.sqliteStatement
        defer { sqlite3_clear_bindings(handle) }
        var ranges = [ClosedRange<Int64>]()
        ranges.reserveCapacity(batch.count)
        for lines in batch {
            var first: Int64 = 0
            for (i, line) in lines.enumerated() {
                let rc = line.withUnsafeBytes { bytes -> Int32 in
                    sqlite3_bind_blob(handle, 1, bytes.baseAddress, Int32(bytes.count), nil)
                    sqlite3_bind_int64(handle, 2, now)
                    defer { sqlite3_reset(handle) }
                    return sqlite3_step(handle)
                }
                guard rc == SQLITE_DONE else {
                    throw DatabaseError(
                        resultCode: ResultCode(rawValue: rc),
                        message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
                }
                if i == 0 { first = db.lastInsertedRowID }
            }
            ranges.append(first...db.lastInsertedRowID)
        }
        return ranges
    }

    /// Refuses further intake; rows already committed stay for the next start.
    public func close() {
        state.withLock { $0.closed = true }
        doorbell.ring()
    }

    // MARK: delivery

    /// The persisted cursor of `sink`: the highest sequence number it has acknowledged.
    public func cursor(for sink: String) -> Int64 {
        state.withLock { $0.cursors[sink] ?? $0.lastSeq }
    }

    /// Reads up to `limit` rows after `seq`, in order.
    public func read(after seq: Int64, limit: Int) async throws(StoreError) -> OutboxBatch? {
        do {
            return try await store.pool.read { db -> OutboxBatch? in
                var body = [UInt8]()
                var first: Int64?
                var last: Int64 = 0
                var count = 0
                let rows = try Row.fetchCursor(
                    db, sql: "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                    arguments: [seq, limit])
                while let row = try rows.next() {
                    let s: Int64 = row[0]
                    if first == nil { first = s }
                    last = s
                    count += 1
                    try row.withUnsafeData(atIndex: 1) { data in
                        if let data { body.append(contentsOf: data) }
                    }
                }
                guard let first else { return nil }
                return OutboxBatch(firstSeq: first, lastSeq: last, count: count, body: body)
            }
        } catch {
            throw SQLiteStore.storeError(error, doing: "reading the outbox")
        }
    }

    /// Moves `sink`'s cursor to `seq` (persisted) and deletes rows every sink has acknowledged.
    public func acknowledge(sink: String, through seq: Int64) async throws(StoreError) {
        try await advance(sink: sink, to: seq, deadLetter: nil)
    }

    /// Stores `batch` as a dead letter of `sink` with `reason` and moves the cursor past it, in one
    /// transaction: the batch is never both lost and skipped.
    public func deadLetter(sink: String, batch: OutboxBatch, reason: String) async throws(StoreError) {
        try await advance(sink: sink, to: batch.lastSeq, deadLetter: (batch, reason))
    }

    private func advance(sink: String, to seq: Int64, deadLetter: (OutboxBatch, String)?) async throws(StoreError) {
        let sinks = sinkIDs
        let purgedThrough = state.withLock { $0.purgedThrough }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let newMin: Int64
        do {
            newMin = try await store.pool.write { db -> Int64 in
                if let (batch, reason) = deadLetter {
                    try db.execute(
                        sql: """
                            INSERT INTO dead_letter (sink, reason, created_at, sample_count, first_seq, last_seq, body)
                            VALUES (?, ?, ?, ?, ?, ?, ?)
                            """,
                        arguments: [sink, reason, now, batch.count, batch.firstSeq, batch.lastSeq, Data(batch.body)])
                }
                try db.execute(
                    sql: """
                        INSERT INTO sink_cursor (sink, acked_seq, updated_at) VALUES (?, ?, ?)
                        ON CONFLICT(sink) DO UPDATE SET acked_seq = excluded.acked_seq, updated_at = excluded.updated_at
                        WHERE excluded.acked_seq > sink_cursor.acked_seq
                        """,
                    arguments: [sink, seq, now])
                let placeholders = Array(repeating: "?", count: sinks.count).joined(separator: ",")
                let minCursor =
                    try Int64.fetchOne(
                        db, sql: "SELECT MIN(acked_seq) FROM sink_cursor WHERE sink IN (\(placeholders))",
                        arguments: StatementArguments(sinks)) ?? seq
                if minCursor > purgedThrough {
                    try db.execute(sql: "DELETE FROM outbox WHERE seq <= ?", arguments: [minCursor])
                }
                return minCursor
            }
        } catch {
            throw SQLiteStore.storeError(error, doing: "acknowledging \(sink) through \(seq)")
        }
        state.withLock { s in
            s.cursors[sink] = max(s.cursors[sink] ?? seq, seq)
            s.purgedThrough = max(s.purgedThrough, newMin)
        }
    }

    // MARK: dead letters

    /// The oldest dead letter of `sink` that an operator asked to replay.
    public func nextReplay(sink: String) async throws(StoreError) -> DeadLetter? {
        do {
            return try await store.pool.read { db in
                try DeadLetter.fetch(db, sink: sink, replayOnly: true, limit: 1, withBody: true).first
            }
        } catch {
            throw SQLiteStore.storeError(error, doing: "reading replays")
        }
    }

    /// A replayed dead letter was delivered: it is gone.
    public func completeReplay(_ id: Int64) async throws(StoreError) {
        do {
            try await store.pool.write { db in
                try db.execute(sql: "DELETE FROM dead_letter WHERE id = ?", arguments: [id])
            }
        } catch {
            throw SQLiteStore.storeError(error, doing: "completing replay \(id)")
        }
    }

    /// A replayed dead letter was refused again: it stays, with the new reason.
    public func failReplay(_ id: Int64, reason: String) async throws(StoreError) {
        do {
            try await store.pool.write { db in
                try db.execute(
                    sql:
                        "UPDATE dead_letter SET replay_requested = 0, attempts = attempts + 1, reason = ? WHERE id = ?",
                    arguments: [reason, id])
            }
        } catch {
            throw SQLiteStore.storeError(error, doing: "recording failed replay \(id)")
        }
    }
}

/// Consecutive outbox rows, read for one sink.
public struct OutboxBatch: Sendable {
    public let firstSeq: Int64
    public let lastSeq: Int64
    /// Number of samples (NDJSON lines).
    public let count: Int
    /// The rows' NDJSON lines, concatenated: exactly what a sink writes.
    public let body: [UInt8]

    public init(firstSeq: Int64, lastSeq: Int64, count: Int, body: [UInt8]) {
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.count = count
        self.body = body
    }
}

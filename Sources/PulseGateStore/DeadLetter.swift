import Foundation
import GRDB

/// A batch a sink refused as poison, kept with the reason until an operator replays or drops it.
public struct DeadLetter: Sendable, Encodable {
    public let id: Int64
    public let sink: String
    public let reason: String
    public let createdAt: Int64
    public let sampleCount: Int
    public let firstSeq: Int64
    public let lastSeq: Int64
    public let attempts: Int
    public let replayRequested: Bool
    /// The batch's NDJSON; empty in listings, and not part of the JSON listing.
    public let body: [UInt8]

    enum CodingKeys: String, CodingKey {
        case id, sink, reason, attempts
        case createdAt = "created_at"
        case sampleCount = "sample_count"
        case firstSeq = "first_seq"
        case lastSeq = "last_seq"
        case replayRequested = "replay_requested"
    }

    init(row: Row, withBody: Bool) {
        id = row["id"]
        sink = row["sink"]
        reason = row["reason"]
        createdAt = row["created_at"]
        sampleCount = row["sample_count"]
        firstSeq = row["first_seq"]
        lastSeq = row["last_seq"]
        attempts = row["attempts"]
        replayRequested = (row["replay_requested"] as Int) != 0
        body = withBody ? [UInt8]((row["body"] as Data?) ?? Data()) : []
    }

    static func fetch(_ db: Database, sink: String?, replayOnly: Bool, limit: Int, withBody: Bool) throws
        -> [DeadLetter]
    {
        var clauses = [String]()
        var arguments = StatementArguments()
        if let sink {
            clauses.append("sink = ?")
            _ = arguments.append(contentsOf: [sink])
        }
        if replayOnly { clauses.append("replay_requested = 1") }
        let whereClause = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let columns =
            "id, sink, reason, created_at, sample_count, first_seq, last_seq, attempts, replay_requested"
            + (withBody ? ", body" : "")
        _ = arguments.append(contentsOf: [limit])
        return try Row.fetchAll(
            db, sql: "SELECT \(columns) FROM dead_letter \(whereClause) ORDER BY id LIMIT ?", arguments: arguments
        ).map { DeadLetter(row: $0, withBody: withBody) }
    }
}

/// What `pulsegate outbox status` shows: read straight from the file, so it works whether or not the
/// daemon is running.
public struct OutboxStatus: Sendable, Codable {
    public struct SinkCursor: Sendable, Codable {
        public let sink: String
        public let ackedSeq: Int64
        /// Rows after this sink's cursor.
        public let lag: Int64
        public let updatedAt: Int64

        enum CodingKeys: String, CodingKey {
            case sink, lag
            case ackedSeq = "acked_seq"
            case updatedAt = "updated_at"
        }
    }

    public let lastSeq: Int64
    /// Rows still stored (not yet acknowledged by every sink).
    public let depth: Int
    public let oldestEnqueuedAt: Int64?
    public let sinks: [SinkCursor]
    public let deadLetters: Int
    public let replaysPending: Int

    enum CodingKeys: String, CodingKey {
        case depth, sinks
        case lastSeq = "last_seq"
        case oldestEnqueuedAt = "oldest_enqueued_at"
        case deadLetters = "dead_letters"
        case replaysPending = "replays_pending"
    }
}

extension SQLiteStore {
    /// The outbox's state as stored.
    public func outboxStatus() throws(StoreError) -> OutboxStatus {
        do {
            return try pool.read { db in
                let last = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") ?? 0
                let depth = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox") ?? 0
                let oldest = try Int64.fetchOne(db, sql: "SELECT MIN(enqueued_at) FROM outbox")
                let sinks = try Row.fetchAll(
                    db, sql: "SELECT sink, acked_seq, updated_at FROM sink_cursor ORDER BY sink"
                )
                .map { row in
                    OutboxStatus.SinkCursor(
                        sink: row[0], ackedSeq: row[1], lag: last - (row[1] as Int64), updatedAt: row[2])
                }
                let dead = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM dead_letter") ?? 0
                let replays =
                    try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM dead_letter WHERE replay_requested = 1") ?? 0
                return OutboxStatus(
                    lastSeq: last, depth: depth, oldestEnqueuedAt: oldest, sinks: sinks, deadLetters: dead,
                    replaysPending: replays)
            }
        } catch {
            throw Self.storeError(error, doing: "reading outbox status")
        }
    }

    /// Dead letters (without their bodies), oldest first.
    public func deadLetters(sink: String?, limit: Int = 1000) throws(StoreError) -> [DeadLetter] {
        do {
            return try pool.read { db in
                try DeadLetter.fetch(db, sink: sink, replayOnly: false, limit: limit, withBody: false)
            }
        } catch {
            throw Self.storeError(error, doing: "listing dead letters")
        }
    }

    /// Marks dead letters for replay (all of them when `ids` is nil); the owning sink's pump sends them
    /// again. Returns how many were marked.
    public func requestReplay(ids: [Int64]?, sink: String?) throws(StoreError) -> Int {
        do {
            return try pool.write { db in
                var clauses = ["replay_requested = 0"]
                var arguments = StatementArguments()
                if let ids {
                    clauses.append("id IN (\(ids.map { _ in "?" }.joined(separator: ",")))")
                    _ = arguments.append(contentsOf: StatementArguments(ids))
                }
                if let sink {
                    clauses.append("sink = ?")
                    _ = arguments.append(contentsOf: [sink])
                }
                try db.execute(
                    sql: "UPDATE dead_letter SET replay_requested = 1 WHERE " + clauses.joined(separator: " AND "),
                    arguments: arguments)
                return db.changesCount
            }
        } catch {
            throw Self.storeError(error, doing: "requesting replay")
        }
    }
}

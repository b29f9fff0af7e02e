import Foundation
import GRDB
import Logging

/// The embedded store: one SQLite file in WAL mode, opened through GRDB.
///
/// WAL lets sink pumps read batches while intake commits; `synchronous` chooses what a commit survives:
/// `full` fsyncs the WAL on every (group) commit and survives power loss, `normal` survives a killed
/// process but may lose the last commits on power loss.
public final class SQLiteStore: Sendable {
    public enum Synchronous: String, Sendable, Codable, CaseIterable {
        case full, normal
    }

    /// The GRDB pool: one writer, concurrent readers.
    public let pool: DatabasePool
    public let path: String

    /// Opens (and creates or migrates) the store at `path`.
    ///
    /// - Throws: ``StoreError`` `.cannotOpen` when the file or its directory is not usable, `.corrupt`
    ///   when the file is not a SQLite database.
    public init(path: String, synchronous: Synchronous = .full, readOnly: Bool = false) throws(StoreError) {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.readonly = readOnly
        config.label = "pulsegate"
        config.maximumReaderCount = 4
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
            // Keep the WAL from growing without bound while a reader holds an old snapshot.
            try db.execute(sql: "PRAGMA journal_size_limit = 67108864")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            if !readOnly { try Self.migrator.migrate(pool) }
        } catch let error as DatabaseError
            where error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT
        {
            throw StoreError(.corrupt, "\(path) is not a usable SQLite database: \(error.message ?? "\(error)")")
        } catch {
            throw StoreError(.cannotOpen, "cannot open store \(path): \(Self.describe(error))")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-outbox") { db in
            // AUTOINCREMENT: sequence numbers are never reused after the tail is deleted, so a sink's
            // persisted cursor always means the same rows.
            try db.execute(
                sql: """
                    CREATE TABLE outbox (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        body BLOB NOT NULL,
                        enqueued_at INTEGER NOT NULL
                    );
                    CREATE TABLE sink_cursor (
                        sink TEXT PRIMARY KEY,
                        acked_seq INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL
                    );
                    CREATE TABLE dead_letter (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        sink TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        sample_count INTEGER NOT NULL,
                        first_seq INTEGER NOT NULL,
                        last_seq INTEGER NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 1,
                        replay_requested INTEGER NOT NULL DEFAULT 0,
                        body BLOB NOT NULL
                    );
                    CREATE INDEX dead_letter_by_sink ON dead_letter(sink, replay_requested, id);
                    """)
        }
        m.registerMigration("v2-accounts") { db in try AccountStore.createTables(db) }
        return m
    }

    /// Maps an error from GRDB/SQLite to a ``StoreError``, telling a full disk apart from the rest.
    public static func storeError(_ error: any Error, doing what: String) -> StoreError {
        if let error = error as? StoreError { return error }
        if let db = error as? DatabaseError {
            switch db.resultCode {
            case .SQLITE_FULL:
                return StoreError(.storageFull, "\(what): disk full (\(db.message ?? "SQLITE_FULL"))")
            case .SQLITE_IOERR where db.extendedResultCode == .SQLITE_IOERR_WRITE:
                // A short write that is not ENOSPC: a quota or the process's file-size limit (EFBIG).
                return StoreError(.storageFull, "\(what): write failed (quota or file-size limit reached)")
            default:
                break
            }
        }
        return StoreError(.unavailable, "\(what): \(describe(error))")
    }

    static func describe(_ error: any Error) -> String {
        if let db = error as? DatabaseError {
            return "\(db.resultCode) \(db.message ?? "")".trimmingCharacters(in: .whitespaces)
        }
        return "\(error)"
    }

    /// A cheap write probe for readiness: proves the file is writable right now.
    public func checkWritable() async throws(StoreError) {
        do {
            try await pool.write { db in try db.execute(sql: "PRAGMA user_version = 0") }
        } catch {
            throw Self.storeError(error, doing: "store write probe")
        }
    }

    /// Closes the file; pending writes have finished by then.
    public func close() throws {
        try pool.close()
    }
}

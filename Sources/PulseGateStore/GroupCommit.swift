import Foundation
import GRDB
import Logging
import Synchronization

/// Group commit: concurrent writers that arrive while a transaction is in flight are written together in
/// the next one, so a burst of N callers costs one fsync instead of N.
///
/// There is no writer task: the first caller becomes the leader and commits everything pending; when it
/// is done it answers every caller in the round and hands leadership to the oldest caller that arrived
/// meanwhile, so no caller keeps committing for others while its own answer waits. The outbox and the
/// webhook inbox both write through one of these.
public final class GroupCommit<Entry: Sendable, Output: Sendable>: Sendable {
    /// Writes all entries of one round inside one transaction and returns one output per entry, in order.
    public typealias Write = @Sendable (Database, [Entry]) throws -> [Output]

    private enum Outcome {
        case committed(Output)
        case failed(StoreError)
        case lead
    }

    private struct State {
        var pending: [(ticket: UInt64, entry: Entry)] = []
        var writing = false
        var nextTicket: UInt64 = 0
        var results: [UInt64: Outcome] = [:]
        var waiters: [UInt64: CheckedContinuation<Outcome, Never>] = [:]
    }

    private let pool: DatabasePool
    private let what: String
    private let write: Write
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameter what: names the rows in errors and logs ("samples to the outbox").
    public init(pool: DatabasePool, what: String, logger: Logger, write: @escaping Write) {
        self.pool = pool
        self.what = what
        self.logger = logger
        self.write = write
    }

    /// Commits `entry` (with whatever else is pending) and returns its output once it is durable.
    /// When this throws, the entry was not written.
    public func submit(_ entry: Entry) async throws(StoreError) -> Output {
        let (ticket, leader) = state.withLock { s -> (UInt64, Bool) in
            s.nextTicket &+= 1
            s.pending.append((s.nextTicket, entry))
            let leader = !s.writing
            s.writing = true
            return (s.nextTicket, leader)
        }
        if leader { await commitRound() }
        while true {
            let outcome = await withCheckedContinuation { (c: CheckedContinuation<Outcome, Never>) in
                let ready = state.withLock { s -> Outcome? in
                    if let r = s.results.removeValue(forKey: ticket) { return r }
                    s.waiters[ticket] = c
                    return nil
                }
                if let ready { c.resume(returning: ready) }
            }
            switch outcome {
            case .committed(let output): return output
            case .failed(let error): throw error
            case .lead: await commitRound()
            }
        }
    }

    private func commitRound() async {
        let batch = state.withLock { s -> [(ticket: UInt64, entry: Entry)] in
            defer { s.pending.removeAll(keepingCapacity: true) }
            return s.pending
        }
        var results = [(UInt64, Outcome)]()
        do {
            let write = self.write
            let entries = batch.map(\.entry)
            let outputs = try await pool.write { db in try write(db, entries) }
            precondition(outputs.count == batch.count, "group commit write returned \(outputs.count) of \(batch.count)")
            results = zip(batch, outputs).map { ($0.ticket, .committed($1)) }
        } catch {
            let storeError = SQLiteStore.storeError(error, doing: "committing \(what)")
            logger.error("group commit failed", metadata: ["error": "\(storeError)", "entries": "\(batch.count)"])
            results = batch.map { ($0.ticket, .failed(storeError)) }
        }
        let resume = state.withLock { s -> [(CheckedContinuation<Outcome, Never>, Outcome)] in
            if let next = s.pending.first {
                results.append((next.ticket, .lead))
            } else {
                s.writing = false
            }
            var ready = [(CheckedContinuation<Outcome, Never>, Outcome)]()
            for (ticket, result) in results {
                if let waiter = s.waiters.removeValue(forKey: ticket) {
                    ready.append((waiter, result))
                } else {
                    s.results[ticket] = result
                }
            }
            return ready
        }
        for (waiter, result) in resume { waiter.resume(returning: result) }
    }
}

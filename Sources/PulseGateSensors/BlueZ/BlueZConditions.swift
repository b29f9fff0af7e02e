import Synchronization

/// Tasks waiting for bluetoothd's object tree to reach a state ("services resolved", "disconnected"):
/// the session hands every new copy of the tree to ``update(_:)``, which wakes the waiters whose
/// condition now holds. The latest copy is kept here, under the same lock as the waiters, so a
/// condition checked and a waiter registered can never miss a change that lands in between.
///
/// A waiter can also ask for the signals up to a point to be applied first (``DBusReply/signalsBefore``):
/// a method reply overtakes the signals bluetoothd sent before it, and the state those signals carry
/// (Connected=true before Connect returns) must be seen before the state is judged.
final class BlueZConditions: Sendable {
    private struct Waiter {
        /// Judge only a tree that has this many signals applied.
        let after: UInt64
        /// The resumption to run if the condition holds for these objects, else `nil`.
        let check: @Sendable (BlueZObjects) -> (@Sendable () -> Void)?
        let cancel: @Sendable () -> Void
    }

    private struct State {
        var latest = BlueZObjects()
        /// The sequence number of the last signal applied to `latest`.
        var applied: UInt64 = 0
        var next: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
        /// Waits cancelled before their waiter was registered.
        var cancelled: Set<UInt64> = []
    }

    private let state = Mutex(State())

    /// The latest copy of the tree.
    var objects: BlueZObjects { state.withLock { $0.latest } }

    /// Stores `objects` (with signals up to `applied` in it) and resumes every waiter whose condition
    /// now holds.
    func update(_ objects: BlueZObjects, applied: UInt64? = nil) {
        resume { state in
            state.latest = objects
            if let applied { state.applied = max(state.applied, applied) }
        }
    }

    /// Notes that signal `sequence` was applied without changing the tree (a notification).
    func applied(_ sequence: UInt64) {
        resume { state in state.applied = max(state.applied, sequence) }
    }

    private func resume(after change: (inout State) -> Void) {
        let ready = state.withLock { state -> [@Sendable () -> Void] in
            change(&state)
            var ready = [@Sendable () -> Void]()
            for (id, waiter) in state.waiters where waiter.after <= state.applied {
                if let resume = waiter.check(state.latest) {
                    ready.append(resume)
                    state.waiters[id] = nil
                }
            }
            return ready
        }
        for resume in ready { resume() }
    }

    /// Waits until `condition` gives a value for the tree (with at least `after` signals applied), and
    /// returns it; `nil` when the task is cancelled first.
    func wait<T: Sendable>(after: UInt64 = 0, _ condition: @escaping @Sendable (BlueZObjects) -> T?) async -> T? {
        let id = state.withLock { state in
            state.next += 1
            return state.next
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
                let now: T?? = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return .some(nil) }
                    if after <= state.applied, let value = condition(state.latest) { return .some(value) }
                    state.waiters[id] = Waiter(
                        after: after,
                        check: { objects in
                            guard let value = condition(objects) else { return nil }
                            return { continuation.resume(returning: value) }
                        },
                        cancel: { continuation.resume(returning: nil) })
                    return .none
                }
                if case .some(let value) = now { continuation.resume(returning: value) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                state.cancelled.insert(id)
                return nil
            }
            waiter?.cancel()
        }
    }

    /// Like ``wait(after:_:)``, giving up after `timeout`.
    func wait<T: Sendable>(
        _ timeout: Duration, after: UInt64 = 0, _ condition: @escaping @Sendable (BlueZObjects) -> T?
    ) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { await self.wait(after: after, condition) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}

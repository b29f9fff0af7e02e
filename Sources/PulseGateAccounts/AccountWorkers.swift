import Logging
import PulseGateCore
import PulseGateStore
import ServiceLifecycle

/// The engine's background loops as one service: token refresh, webhook processing, jobs, the silence
/// watchdog, subscription maintenance and retention. Each loop sleeps until its doorbell rings or its
/// poll interval passes; on shutdown they stop between units of work (an interrupted unit is leased
/// and runs again after the lease).
public struct AccountWorkers: Service {
    let engine: AccountEngine
    let logger: Logger

    public init(engine: AccountEngine, logger: Logger) {
        self.engine = engine
        self.logger = logger
    }

    public func run() async throws {
        let engine = self.engine
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Re-seal tokens of a rotated key once at start.
                    if let n = try? await engine.resealTokens(), n > 0 {
                        engine.logger.notice("re-sealed tokens with the current key", metadata: ["connections": "\(n)"])
                    }
                }
                group.addTask {
                    await Self.loop(every: .seconds(1)) { await engine.refreshDue() > 0 }
                }
                group.addTask {
                    // A full batch goes on at once; otherwise wait for the bell and then a moment more, so a
                    // burst of webhooks is processed in a few large transactions instead of many small
                    // ones that would compete with intake for the store's single writer.
                    await Self.loop(every: .seconds(2), bell: engine.inboxBell, settle: .milliseconds(50)) {
                        await engine.processInbox(limit: 500) == 500
                    }
                }
                group.addTask {
                    await Self.loop(every: .seconds(2), bell: engine.jobBell) { await engine.runJobs() > 0 }
                }
                group.addTask {
                    // Give the server a moment to listen: vendors verify our endpoint while we subscribe.
                    try? await Task.sleep(for: .seconds(1))
                    await Self.loop(every: engine.settings.maintenanceInterval) {
                        await engine.maintainSubscriptions()
                        await engine.purge()
                        return false
                    }
                }
                group.addTask {
                    await Self.loop(every: engine.settings.watchdogInterval) {
                        _ = await engine.watchdog()
                        return false
                    }
                }
            }
        }
    }

    /// Runs `work` until cancelled; again at once while it reports more is waiting, else after
    /// `interval` or when `bell` rings (plus `settle`, to let more arrive).
    static func loop(
        every interval: Duration, bell: Doorbell? = nil, settle: Duration? = nil, _ work: @Sendable () async -> Bool
    ) async {
        while !Task.isCancelled {
            let generation = bell?.generation ?? 0
            if await work() { continue }
            if let bell {
                await bell.wait(since: generation, timeout: interval)
                if let settle { try? await Task.sleep(for: settle) }
            } else {
                try? await Task.sleep(for: interval)
            }
        }
    }
}

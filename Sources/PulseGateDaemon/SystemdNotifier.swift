import CSystemd
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Speaks the sd_notify protocol through libsystemd when the daemon runs under systemd
/// (`Type=notify`): `READY=1` once the HTTP server listens, `WATCHDOG=1` at half the configured
/// watchdog interval, `STOPPING=1` when shutdown begins. Without `NOTIFY_SOCKET` every call is a no-op.
public final class SystemdNotifier: Service, Sendable {
    private let logger: Logger
    private let readySignal = Mutex(false)

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Whether the process was started with a notification socket.
    public static var isEnabled: Bool { ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil }

    /// Tells systemd the daemon is ready (idempotent).
    public func ready(status: String) {
        let first = readySignal.withLock { sent in
            defer { sent = true }
            return !sent
        }
        guard first else { return }
        send("READY=1\nSTATUS=\(status)\nMAINPID=\(getpid())")
    }

    private func send(_ state: String) {
        guard Self.isEnabled else { return }
        let rc = sd_notify(0, state)
        if rc < 0 {
            logger.warning("sd_notify failed", metadata: ["state": "\(state.prefix(20))", "errno": "\(-rc)"])
        }
    }

    public func run() async throws {
        var usec: UInt64 = 0
        let watchdog = sd_watchdog_enabled(0, &usec) > 0 && usec > 0
        if watchdog {
            logger.info("systemd watchdog enabled", metadata: ["interval_ms": "\(usec / 1000)"])
        }
        await withGracefulShutdownHandler {
            if watchdog {
                let period = Duration.microseconds(Int64(usec / 2))
                try? await cancelWhenGracefulShutdown {
                    while !Task.isCancelled {
                        self.send("WATCHDOG=1")
                        try await Task.sleep(for: period)
                    }
                }
            } else {
                try? await gracefulShutdown()
            }
        } onGracefulShutdown: {
            self.send("STOPPING=1\nSTATUS=draining")
        }
    }
}

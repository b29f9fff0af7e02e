import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A pipe whose read end sits in a `poll` set next to a socket, so another thread can interrupt a
/// blocking wait (new work queued, close requested) without timeouts that tick while idle.
final class PollWaker: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    /// `nil` when the process is out of file descriptors.
    init?() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        readEnd = fds[0]
        writeEnd = fds[1]
        for fd in fds { setNonBlocking(fd) }
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Makes the next (or current) poll on ``readEnd`` return. Cheap and safe from any thread; a full
    /// pipe already means "wake up", so EAGAIN is ignored.
    func wake() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// Empties the pipe after a wake-up so the next poll blocks again.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(readEnd, &buffer, buffer.count) > 0 {}
    }
}

func setNonBlocking(_ fd: Int32) {
    let flags = fcntl(fd, F_GETFL, 0)
    if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
}

/// The text of an errno value, for operator-facing messages.
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// Milliseconds until `deadline` as poll(2) wants them: -1 for none, 0 when already past, rounded up so
/// a wait never returns a millisecond early and spins.
func pollTimeout(until deadline: ContinuousClock.Instant?, now: ContinuousClock.Instant = .now) -> Int32 {
    guard let deadline else { return -1 }
    let left = deadline - now
    if left <= .zero { return 0 }
    let ms =
        left.components.seconds * 1000 + (left.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int32(clamping: ms)
}

/// Runs blocking system calls (HCI commands with their own timeouts, an L2CAP connect) on a thread of
/// their own so they never hold one of the few cooperative-pool threads.
func onOwnThread<T: Sendable>(_ name: String, _ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: work())
        }
        thread.name = name
        thread.start()
    }
}

import CSystemd
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A method call to send: the destination name, object, interface, member and arguments.
struct DBusMethodCall: Sendable {
    var destination: String
    var path: String
    var interface: String
    var member: String
    var arguments: [DBusValue] = []
}

/// A signal that matched one of the connection's rules.
struct DBusSignal: Sendable, Equatable {
    /// 1 for the first signal of the connection, then counting up: see ``DBusReply/signalsBefore``.
    var sequence: UInt64
    var sender: String?
    var path: String
    var interface: String
    var member: String
    var arguments: [DBusValue]
}

/// A method reply, with where it fell among the signals.
struct DBusReply: Sendable {
    var values: [DBusValue]
    /// How many signals the bus delivered before this reply. Replies resume the caller at once while
    /// signals queue for whoever consumes ``SDBusConnection/signals``, so a caller that needs the
    /// state the reply implies (Connected after Connect) waits until that many signals are applied.
    var signalsBefore: UInt64

    static let none = DBusReply(values: [], signalsBefore: 0)
}

/// One client connection to a D-Bus bus through sd-bus (libsystemd), safe to use from any task.
///
/// sd-bus objects are single-threaded, and waiting on them must not hold a cooperative-pool thread,
/// so the connection owns a thread of its own: it polls the bus socket (with the events and timeout
/// sd-bus asks for) together with a wake-up pipe, runs `sd_bus_process` until it has nothing left,
/// then sleeps in `poll` again. Tasks hand it work through a locked queue and the pipe; method calls
/// are sent with `sd_bus_call_async`, so one slow reply (a BLE connect can take seconds) never holds
/// up signals or other calls. Matched signals come out of ``signals`` in the order the bus sent them.
final class SDBusConnection: Sendable {
    private let loop: SDBusLoop

    /// Every signal that matched a rule added with ``addMatch(_:)``. Finishes when the connection is
    /// closed or the bus goes away.
    let signals: AsyncStream<DBusSignal>

    private init(loop: SDBusLoop, signals: AsyncStream<DBusSignal>) {
        self.loop = loop
        self.signals = signals
    }

    /// Connects to the bus at `address` (`unix:path=…`), or to the system bus when `nil` (which
    /// honours `DBUS_SYSTEM_BUS_ADDRESS`), and completes the `Hello` handshake before returning.
    static func open(address: String?, name: String = "pulsegate-dbus") async throws(DBusError) -> SDBusConnection {
        guard let waker = PollWaker() else {
            throw .system(EMFILE, "creating the D-Bus wake-up pipe")
        }
        let (signals, continuation) = AsyncStream.makeStream(of: DBusSignal.self)
        let loop = SDBusLoop(waker: waker, signals: continuation)
        let opened = PendingReply()
        let thread = Thread {
            // Named for `top -H` and for the tests that check the thread sleeps while idle.
            // (Set from the thread itself: that is when Foundation passes it on to the system.)
            Thread.current.name = String(name.prefix(15))
            loop.main(address: address, opened: opened)
        }
        thread.start()
        _ = try await opened.wait(cancellable: false).get()
        return SDBusConnection(loop: loop, signals: signals)
    }

    deinit {
        loop.enqueue(.stop)
    }

    /// Calls a method and returns the reply's values. `timeout` bounds the wait for the reply;
    /// when `cancellable`, cancelling the task stops the wait at once (the call itself still goes out,
    /// and its reply is dropped). Clean-up calls made while a task is being cancelled pass `false`.
    @discardableResult
    func call(_ call: DBusMethodCall, timeout: Duration = .seconds(25), cancellable: Bool = true)
        async throws(DBusError) -> DBusReply
    {
        let reply = PendingReply()
        let micros =
            UInt64(max(0, timeout.components.seconds)) * 1_000_000
            + UInt64(max(0, timeout.components.attoseconds / 1_000_000_000_000))
        loop.enqueue(.call(call, timeoutMicroseconds: max(micros, 1), reply))
        return try await reply.wait(cancellable: cancellable).get()
    }

    /// Adds a match rule and waits until the bus has installed it, so a following call cannot race
    /// the signals it would report.
    func addMatch(_ rule: String) async throws(DBusError) {
        let reply = PendingReply()
        loop.enqueue(.addMatch(rule, reply))
        _ = try await reply.wait(cancellable: true).get()
    }

    /// Closes the connection (pending calls fail with ``DBusError/closed``) and ends ``signals``.
    /// Returns once the loop thread has let go of the bus.
    func close() async {
        let done = PendingReply()
        loop.enqueue(.stop, then: done)
        _ = await done.wait(cancellable: false)
    }
}

/// A reply that one task waits for and the loop thread (or a cancellation) delivers, exactly once.
final class PendingReply: Sendable {
    typealias Outcome = Result<DBusReply, DBusError>

    private enum State {
        case waiting(CheckedContinuation<Outcome, Never>?)
        case done(Outcome)
    }

    private let state = Mutex(State.waiting(nil))

    /// Delivers `outcome` unless one was delivered already.
    func resolve(_ outcome: Outcome) {
        let continuation: CheckedContinuation<Outcome, Never>? = state.withLock { state in
            guard case .waiting(let waiter) = state else { return nil }
            state = .done(outcome)
            return waiter
        }
        continuation?.resume(returning: outcome)
    }

    func wait(cancellable: Bool) async -> Outcome {
        guard cancellable else { return await waitForOutcome() }
        return await withTaskCancellationHandler {
            await waitForOutcome()
        } onCancel: {
            resolve(.failure(.cancelled))
        }
    }

    private func waitForOutcome() async -> Outcome {
        await withCheckedContinuation { continuation in
            let ready: Outcome? = state.withLock { state in
                switch state {
                case .done(let outcome): return outcome
                case .waiting:
                    state = .waiting(continuation)
                    return nil
                }
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// The loop thread's side: the bus pointer and everything registered on it are touched only by
/// that thread; other threads reach it only through ``enqueue(_:then:)``.
private final class SDBusLoop: @unchecked Sendable {
    enum Command: Sendable {
        case call(DBusMethodCall, timeoutMicroseconds: UInt64, PendingReply)
        case addMatch(String, PendingReply)
        case stop
    }

    /// Shared with other threads, under the lock.
    private struct Inbox {
        var commands: [Command] = []
        var stopped = false
        var whenStopped: [PendingReply] = []
    }

    private let inbox = Mutex(Inbox())
    private let waker: PollWaker
    let signalContinuation: AsyncStream<DBusSignal>.Continuation

    // Loop thread only.
    private var bus: OpaquePointer?
    /// Signals yielded so far.
    var signalCount: UInt64 = 0
    var calls: [ObjectIdentifier: CallContext] = [:]
    private var matches: [MatchContext] = []

    init(waker: PollWaker, signals: AsyncStream<DBusSignal>.Continuation) {
        self.waker = waker
        self.signalContinuation = signals
    }

    /// Queues `command` for the loop thread and wakes it; after the loop has ended, a call fails at
    /// once with ``DBusError/closed``. `then` is resolved once the loop thread has let go of the bus.
    func enqueue(_ command: Command, then: PendingReply? = nil) {
        let accepted = inbox.withLock { inbox -> Bool in
            if inbox.stopped { return false }
            inbox.commands.append(command)
            if let then { inbox.whenStopped.append(then) }
            return true
        }
        if accepted {
            waker.wake()
            return
        }
        switch command {
        case .call(_, _, let reply), .addMatch(_, let reply): reply.resolve(.failure(.closed))
        case .stop: break
        }
        then?.resolve(.success(.none))
    }

    func main(address: String?, opened: PendingReply) {
        switch Self.openBus(address: address) {
        case .failure(let error):
            opened.resolve(.failure(error))
            finish()
            return
        case .success(let bus):
            self.bus = bus
            opened.resolve(.success(.none))
        }
        run()
        finish()
    }

    private static func openBus(address: String?) -> Result<OpaquePointer, DBusError> {
        var bus: OpaquePointer?
        let target = address ?? "the system bus"
        var r: Int32
        if let address {
            r = sd_bus_new(&bus)
            if r >= 0 { r = address.withCString { sd_bus_set_address(bus, $0) } }
            if r >= 0 { r = sd_bus_set_bus_client(bus, 1) }
            if r >= 0 { r = sd_bus_start(bus) }
        } else {
            r = sd_bus_open_system(&bus)
        }
        if r >= 0 {
            // Blocks this thread (only) until the bus answered Hello, so an unreachable or refusing bus
            // is reported by open() rather than by the first call.
            var unique: UnsafePointer<CChar>?
            r = sd_bus_get_unique_name(bus, &unique)
        }
        guard r >= 0, let bus else {
            if let bus { sd_bus_unref(bus) }
            return .failure(.system(-r, "cannot connect to \(target)"))
        }
        return .success(bus)
    }

    private func run() {
        guard let bus else { return }
        while true {
            let commands = inbox.withLock { inbox in
                defer { inbox.commands.removeAll() }
                return inbox.commands
            }
            var stopping = false
            for command in commands {
                switch command {
                case .stop: stopping = true
                case .call(_, _, let reply) where stopping, .addMatch(_, let reply) where stopping:
                    reply.resolve(.failure(.closed))
                case .call(let call, let timeout, let reply): send(call, timeout: timeout, reply: reply, on: bus)
                case .addMatch(let rule, let reply): addMatch(rule, reply: reply, on: bus)
                }
            }
            if stopping { return }
            while true {
                let r = sd_bus_process(bus, nil)
                if r < 0 { return }  // the bus went away: end the stream, fail what is pending
                if r == 0 { break }
            }
            guard sd_bus_is_open(bus) > 0 else { return }
            let events = sd_bus_get_events(bus)
            if events < 0 { return }
            var fds = [
                pollfd(fd: sd_bus_get_fd(bus), events: Int16(truncatingIfNeeded: events), revents: 0),
                pollfd(fd: waker.readEnd, events: Int16(POLLIN), revents: 0),
            ]
            let polled = poll(&fds, 2, Self.pollTimeout(bus))
            if polled < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { waker.drain() }
        }
    }

    /// The milliseconds until sd-bus's next deadline (a call timing out), or -1 for none.
    private static func pollTimeout(_ bus: OpaquePointer) -> Int32 {
        var deadline: UInt64 = 0
        guard sd_bus_get_timeout(bus, &deadline) >= 0, deadline != UInt64.max else { return -1 }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nowMicros = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        guard deadline > nowMicros else { return 0 }
        return Int32(clamping: (deadline - nowMicros + 999) / 1000)
    }

    private func send(_ call: DBusMethodCall, timeout: UInt64, reply: PendingReply, on bus: OpaquePointer) {
        var message: OpaquePointer?
        var r = sd_bus_message_new_method_call(bus, &message, call.destination, call.path, call.interface, call.member)
        guard r >= 0, let message else {
            reply.resolve(.failure(.system(-r, "building \(call.interface).\(call.member)")))
            return
        }
        defer { sd_bus_message_unref(message) }
        do {
            for argument in call.arguments { try SDBusMessage.append(message, argument) }
        } catch {
            reply.resolve(.failure(error))
            return
        }
        let context = CallContext(loop: self, reply: reply)
        r = sd_bus_call_async(
            bus, nil, message, sdBusReplyHandler, Unmanaged.passUnretained(context).toOpaque(), timeout)
        if r < 0 {
            reply.resolve(.failure(.system(-r, "sending \(call.interface).\(call.member)")))
            return
        }
        calls[ObjectIdentifier(context)] = context
    }

    private func addMatch(_ rule: String, reply: PendingReply, on bus: OpaquePointer) {
        let context = MatchContext(loop: self, installed: reply)
        let r = sd_bus_add_match_async(
            bus, nil, rule, sdBusSignalHandler, sdBusMatchInstalledHandler,
            Unmanaged.passUnretained(context).toOpaque())
        if r < 0 {
            reply.resolve(.failure(.system(-r, "adding the match \(rule)")))
            return
        }
        matches.append(context)
    }

    /// Lets go of the bus, fails every call still waiting and ends the signal stream.
    private func finish() {
        if let bus {
            sd_bus_flush_close_unref(bus)
            self.bus = nil
        }
        let (leftover, waiters) = inbox.withLock { inbox in
            inbox.stopped = true
            defer {
                inbox.commands.removeAll()
                inbox.whenStopped.removeAll()
            }
            return (inbox.commands, inbox.whenStopped)
        }
        for command in leftover {
            switch command {
            case .call(_, _, let reply), .addMatch(_, let reply): reply.resolve(.failure(.closed))
            case .stop: break
            }
        }
        for context in calls.values { context.reply.resolve(.failure(.closed)) }
        calls.removeAll()
        for context in matches { context.installed.resolve(.failure(.closed)) }
        matches.removeAll()
        signalContinuation.finish()
        for waiter in waiters { waiter.resolve(.success(.none)) }
    }
}

/// What a reply callback needs: the loop (to forget the call) and the waiting task's reply.
private final class CallContext {
    unowned let loop: SDBusLoop
    let reply: PendingReply

    init(loop: SDBusLoop, reply: PendingReply) {
        self.loop = loop
        self.reply = reply
    }
}

/// One installed match rule: its signals go to the loop's stream, its installation to `installed`.
private final class MatchContext {
    unowned let loop: SDBusLoop
    let installed: PendingReply

    init(loop: SDBusLoop, installed: PendingReply) {
        self.loop = loop
        self.installed = installed
    }
}

private func sdBusReplyHandler(
    _ message: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let userdata else { return 0 }
    let context = Unmanaged<CallContext>.fromOpaque(userdata).takeUnretainedValue()
    context.loop.calls.removeValue(forKey: ObjectIdentifier(context))
    guard let message else {
        context.reply.resolve(.failure(.closed))
        return 0
    }
    if let failure = SDBusMessage.error(of: message) {
        context.reply.resolve(.failure(failure))
    } else {
        let signalsBefore = context.loop.signalCount
        context.reply.resolve(
            Result { () throws(DBusError) in
                DBusReply(values: try SDBusMessage.read(message), signalsBefore: signalsBefore)
            })
    }
    return 0
}

private func sdBusMatchInstalledHandler(
    _ message: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let userdata else { return 0 }
    let context = Unmanaged<MatchContext>.fromOpaque(userdata).takeUnretainedValue()
    if let message, let failure = SDBusMessage.error(of: message) {
        context.installed.resolve(.failure(failure))
    } else {
        context.installed.resolve(.success(.none))
    }
    return 0
}

private func sdBusSignalHandler(
    _ message: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let userdata, let message else { return 0 }
    let context = Unmanaged<MatchContext>.fromOpaque(userdata).takeUnretainedValue()
    // A body that does not parse is a peer's bug; dropping that one signal beats ending the stream.
    guard let arguments = try? SDBusMessage.read(message) else { return 0 }
    let text: (UnsafePointer<CChar>?) -> String = { $0.map { String(cString: $0) } ?? "" }
    context.loop.signalCount += 1
    let signal = DBusSignal(
        sequence: context.loop.signalCount,
        sender: sd_bus_message_get_sender(message).map { String(cString: $0) },
        path: text(sd_bus_message_get_path(message)),
        interface: text(sd_bus_message_get_interface(message)),
        member: text(sd_bus_message_get_member(message)),
        arguments: arguments)
    context.loop.signalContinuation.yield(signal)
    return 0
}

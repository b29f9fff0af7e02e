import Foundation
import PulseGateCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An ATT client over one connected file descriptor with datagram semantics (one read = one PDU): an
/// L2CAP LE socket on channel 4 in production, one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` in
/// tests. Written against the descriptor, not libbluetooth, so the whole protocol is exercised
/// without a radio.
///
/// One thread of its own owns the descriptor: it polls the socket and a wake-up pipe (never a timer
/// tick), sends queued requests one at a time (ATT allows a single outstanding request per
/// direction), answers what the peer asks of us (we are also the ATT server on the link), confirms
/// indications, and enforces the 30 s transaction timeout. Callers only see `async` requests and the
/// ``events`` stream. The client owns `fd` and closes it when the link ends.
public final class ATTClient: Sendable {
    /// What the peer sent on its own, and the end of the link.
    public enum Event: Sendable, Equatable {
        case notification(handle: UInt16, value: [UInt8], at: Timestamp)
        /// Already confirmed (0x1E) by the time it is delivered.
        case indication(handle: UInt16, value: [UInt8], at: Timestamp)
        /// The last event: the peer closed, the socket failed, a transaction timed out, or ``close()``.
        case closed(reason: String)
    }

    /// Counters for `doctor` and tests: what arrived that was not a clean answer.
    public struct Statistics: Sendable, Equatable {
        public var notifications = 0
        public var indications = 0
        /// Requests the peer sent us, each answered (Exchange MTU with our MTU, anything else with
        /// Request Not Supported).
        public var peerRequests = 0
        /// Commands (opcode bit 6) the peer sent; commands are never answered.
        public var ignoredCommands = 0
        /// PDUs too short for their opcode (an empty read, a notification without a handle).
        public var malformed = 0
        /// Responses that matched no outstanding request, and confirmations we never asked for.
        public var unexpected = 0

        public init() {}
    }

    /// Notifications, indications and finally `.closed`. Keeps the newest 1024 events when nobody
    /// reads, so a stalled consumer costs bounded memory and still sees the close.
    public let events: AsyncStream<Event>
    private let core: Core

    /// Takes ownership of `fd` (made non-blocking here) and starts the I/O thread.
    ///
    /// - Parameters:
    ///   - transactionTimeout: how long a request may wait for its answer; the specification's 30 s.
    ///     After a timeout the link is closed, as the specification requires.
    ///   - receiveMTU: what we offer in Exchange MTU and answer to the peer's; reads size to it.
    public init(fd: Int32, transactionTimeout: Duration = .seconds(30), receiveMTU: Int = ATT.maximumMTU)
        throws(ATTError)
    {
        guard let waker = PollWaker() else {
            Glibc.close(fd)
            throw ATTError(.linkLost, request: 0, "cannot create a wake-up pipe: \(errnoText(errno))")
        }
        setNonBlocking(fd)
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
        events = stream
        let mtu = min(max(receiveMTU, ATT.defaultMTU), ATT.maximumMTU)
        core = Core(fd: fd, waker: waker, events: continuation, timeout: transactionTimeout, receiveMTU: mtu)
        let core = self.core
        let thread = Thread { core.run() }
        thread.name = "att-client"
        thread.start()
    }

    deinit {
        core.requestClose("the ATT client was released")
    }

    /// The effective ATT_MTU: 23 until an Exchange MTU (ours or the peer's) agrees on more.
    public var mtu: Int { core.state.withLock { $0.mtu } }

    public var statistics: Statistics { core.state.withLock { $0.stats } }

    /// Whether the link has ended (``events`` has delivered or is about to deliver `.closed`).
    public var isClosed: Bool { core.state.withLock { $0.lost != nil } }

    /// Ends the link: pending requests fail with ``ATTError/Code/linkLost`` and ``events`` ends with
    /// `.closed(reason)`. Idempotent.
    public func close(reason: String = "closed by pulsegate") {
        core.requestClose(reason)
    }

    /// Sends one request PDU and returns the peer's response PDU (opcode included). Requests queue and
    /// go out one at a time. An Error Response is thrown as ``ATTError/Code/errorResponse(_:)``.
    ///
    /// Cancelling the waiting task throws ``ATTError/Code/cancelled`` at once; a request already on
    /// the air still occupies the link until its answer (or the timeout), because ATT has no cancel.
    public func request(_ pdu: [UInt8]) async throws(ATTError) -> [UInt8] {
        guard let opcode = pdu.first, ATT.responseOpcode(for: opcode) != nil else {
            throw ATTError(.malformed, request: pdu.first ?? 0, "not a request PDU")
        }
        let core = self.core
        let id = core.state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: Core.Waiter) in
                let refused: Result<[UInt8], ATTError>? = core.state.withLock { s in
                    if let reason = s.lost ?? s.closeRequested {
                        return .failure(ATTError(.linkLost, request: opcode, reason))
                    }
                    if Task.isCancelled { return .failure(ATTError(.cancelled, request: opcode, "cancelled")) }
                    s.queued.append(Core.Transaction(id: id, pdu: pdu, waiter: waiter))
                    return nil
                }
                if let refused {
                    waiter.resume(returning: refused)
                } else {
                    core.waker.wake()
                }
            }
        } onCancel: {
            core.cancel(id, opcode: opcode)
        }
        return try result.get()
    }

    /// Records the MTU both sides agreed on (the GATT layer's Exchange MTU).
    func agreeMTU(peer: Int) -> Int {
        core.state.withLock { s in
            s.mtu = max(ATT.defaultMTU, min(peer, core.receiveMTU))
            return s.mtu
        }
    }

    var receiveMTU: Int { core.receiveMTU }
}

extension ATTClient {
    /// The state shared between the I/O thread and callers, and the thread's loop. Separate from
    /// ``ATTClient`` so the thread does not keep the client alive: releasing the client closes the link.
    final class Core: Sendable {
        typealias Waiter = CheckedContinuation<Result<[UInt8], ATTError>, Never>

        struct Transaction {
            let id: UInt64
            let pdu: [UInt8]
            /// `nil` once the caller stopped waiting (cancelled); the answer is still consumed.
            var waiter: Waiter?
            var opcode: UInt8 { pdu[0] }
        }

        struct State {
            var mtu = ATT.defaultMTU
            /// Set once by the I/O thread when the link is over; no request is queued after it.
            var lost: String?
            var closeRequested: String?
            var queued: [Transaction] = []
            var inFlight: Transaction?
            var deadline: ContinuousClock.Instant?
            var stats = Statistics()
            var nextID: UInt64 = 0
        }

        let fd: Int32
        let waker: PollWaker
        let events: AsyncStream<Event>.Continuation
        let timeout: Duration
        let receiveMTU: Int
        let state = Mutex(State())

        init(
            fd: Int32, waker: PollWaker, events: AsyncStream<Event>.Continuation, timeout: Duration,
            receiveMTU: Int
        ) {
            self.fd = fd
            self.waker = waker
            self.events = events
            self.timeout = timeout
            self.receiveMTU = receiveMTU
        }

        func requestClose(_ reason: String) {
            state.withLock { s in
                if s.lost == nil, s.closeRequested == nil { s.closeRequested = reason }
            }
            waker.wake()
        }

        func cancel(_ id: UInt64, opcode: UInt8) {
            let waiter: Waiter? = state.withLock { s in
                if let i = s.queued.firstIndex(where: { $0.id == id }) { return s.queued.remove(at: i).waiter }
                if s.inFlight?.id == id {
                    defer { s.inFlight?.waiter = nil }
                    return s.inFlight?.waiter
                }
                return nil
            }
            waiter?.resume(returning: .failure(ATTError(.cancelled, request: opcode, "cancelled")))
        }

        /// The I/O thread: until the link ends, send what is due, wait for the socket, the wake-up pipe or
        /// the transaction deadline, and dispatch what arrived.
        func run() {
            var outgoing: [[UInt8]] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            var reason = ""
            var timedOut = false
            loop: while true {
                let (closing, due, deadline) = state.withLock { s -> (String?, [UInt8]?, ContinuousClock.Instant?) in
                    if let r = s.closeRequested { return (r, nil, nil) }
                    var due: [UInt8]?
                    if s.inFlight == nil, !s.queued.isEmpty {
                        let next = s.queued.removeFirst()
                        s.inFlight = next
                        s.deadline = .now + timeout
                        due = next.pdu
                    }
                    return (nil, due, s.deadline)
                }
                if let closing {
                    reason = closing
                    break
                }
                if let due { outgoing.append(due) }
                if let failure = flush(&outgoing) {
                    reason = failure
                    break
                }

                var fds = [
                    pollfd(fd: fd, events: Int16(POLLIN) | (outgoing.isEmpty ? 0 : Int16(POLLOUT)), revents: 0),
                    pollfd(fd: waker.readEnd, events: Int16(POLLIN), revents: 0),
                ]
                let ready = poll(&fds, 2, pollTimeout(until: deadline))
                if ready < 0 {
                    if errno == EINTR { continue }
                    reason = "poll failed: \(errnoText(errno))"
                    break
                }
                if fds[1].revents != 0 { waker.drain() }

                let revents = fds[0].revents
                if revents & Int16(POLLIN) != 0 {
                    if let end = receiveAll(&buffer, &outgoing, hangUp: revents & Int16(POLLHUP) != 0) {
                        reason = end
                        break
                    }
                } else if revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 {
                    reason = socketEndReason()
                    break
                }

                let expired = state.withLock { s -> Bool in
                    guard let d = s.deadline, s.inFlight != nil else { return false }
                    return ContinuousClock.now >= d
                }
                if expired {
                    reason = "no answer to an ATT request within \(timeout) (transaction timeout)"
                    timedOut = true
                    break loop
                }
            }
            finish(reason, timedOut: timedOut)
        }

        /// Writes queued PDUs until the socket would block; returns why the link failed, if it did.
        private func flush(_ outgoing: inout [[UInt8]]) -> String? {
            while let pdu = outgoing.first {
                let sent = pdu.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent >= 0 {
                    outgoing.removeFirst()
                    continue
                }
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return nil
                default: return "sending failed: \(errnoText(errno))"
                }
            }
            return nil
        }

        /// Reads every PDU waiting on the socket; returns why the link ended, if it did.
        private func receiveAll(_ buffer: inout [UInt8], _ outgoing: inout [[UInt8]], hangUp: Bool) -> String? {
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 {
                    handle(Array(buffer[0..<n]), at: .now, replies: &outgoing)
                    continue
                }
                if n == 0 {
                    // SEQPACKET reads 0 both at end of stream and for an empty datagram; the hang-up
                    // flag tells them apart.
                    if hangUp { return "the peer closed the link" }
                    state.withLock { $0.stats.malformed += 1 }
                    return nil
                }
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return hangUp ? "the peer closed the link" : nil
                default: return "the link failed: \(errnoText(errno))"
                }
            }
        }

        private func socketEndReason() -> String {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error != 0 {
                return "the link failed: \(errnoText(error))"
            }
            return "the peer closed the link"
        }

        /// Dispatches one PDU the peer sent. Replies (confirmations, answers to the peer's requests) are
        /// appended to `replies` and go out before the next request.
        func handle(_ pdu: [UInt8], at time: Timestamp, replies: inout [[UInt8]]) {
            guard let opcode = pdu.first else {
                state.withLock { $0.stats.malformed += 1 }
                return
            }
            switch opcode {
            case ATT.handleValueNotification, ATT.handleValueIndication:
                let indication = opcode == ATT.handleValueIndication
                // An indication is confirmed even when garbled: unconfirmed, the peer's indication queue
                // stalls until its own 30 s timeout and then it drops the link.
                if indication { replies.append([ATT.handleValueConfirmation]) }
                guard pdu.count >= 3 else {
                    state.withLock { $0.stats.malformed += 1 }
                    return
                }
                let handle = ATT.u16(pdu, 1)
                let value = Array(pdu[3...])
                state.withLock { s in
                    if indication { s.stats.indications += 1 } else { s.stats.notifications += 1 }
                }
                events.yield(
                    indication
                        ? .indication(handle: handle, value: value, at: time)
                        : .notification(handle: handle, value: value, at: time))
            case ATT.exchangeMTURequest:
                // Answered for real rather than refused: some peripherals start the exchange themselves
                // and would otherwise stay at 23 bytes, splitting every FTMS record.
                guard pdu.count == 3 else {
                    state.withLock { $0.stats.peerRequests += 1 }
                    replies.append(ATT.errorPDU(request: opcode, handle: 0, code: ATT.ErrorCode.invalidPDU))
                    return
                }
                let peer = Int(ATT.u16(pdu, 1))
                state.withLock { s in
                    s.stats.peerRequests += 1
                    s.mtu = max(ATT.defaultMTU, min(peer, receiveMTU))
                }
                replies.append([ATT.exchangeMTUResponse] + ATT.le16(UInt16(receiveMTU)))
            case ATT.handleValueConfirmation:
                state.withLock { $0.stats.unexpected += 1 }
            case _ where ATT.isResponse(opcode):
                complete(with: pdu)
            case _ where ATT.isCommand(opcode):
                state.withLock { $0.stats.ignoredCommands += 1 }
            default:
                // Any other request, known or not: we hold no attributes to serve (BlueZ answers an
                // unhandled request the same way, with handle 0).
                state.withLock { $0.stats.peerRequests += 1 }
                replies.append(ATT.errorPDU(request: opcode, handle: 0, code: ATT.ErrorCode.requestNotSupported))
            }
        }

        /// Hands a response to the outstanding request it answers; anything else is counted and dropped.
        private func complete(with pdu: [UInt8]) {
            let opcode = pdu[0]
            let done: (Waiter?, Result<[UInt8], ATTError>)? = state.withLock { s in
                guard let t = s.inFlight else {
                    s.stats.unexpected += 1
                    return nil
                }
                let result: Result<[UInt8], ATTError>
                if opcode == ATT.errorResponse {
                    guard pdu.count == 5 else {
                        // Garbled, but it is the peer's answer: waiting longer would only time out.
                        s.stats.malformed += 1
                        result = .failure(ATTError(.malformed, request: t.opcode, "truncated Error Response"))
                        s.inFlight = nil
                        s.deadline = nil
                        return (t.waiter, result)
                    }
                    guard pdu[1] == t.opcode else {
                        s.stats.unexpected += 1
                        return nil
                    }
                    let code = pdu[4]
                    result = .failure(
                        ATTError(
                            .errorResponse(code), request: t.opcode, handle: ATT.u16(pdu, 2),
                            "error 0x\(hex2(code)) on handle 0x\(hex4(ATT.u16(pdu, 2)))"))
                } else {
                    guard opcode == ATT.responseOpcode(for: t.opcode) else {
                        s.stats.unexpected += 1
                        return nil
                    }
                    result = .success(pdu)
                }
                s.inFlight = nil
                s.deadline = nil
                return (t.waiter, result)
            }
            guard let done else { return }
            done.0?.resume(returning: done.1)
        }

        private func finish(_ reason: String, timedOut: Bool) {
            let waiters: [(Waiter, ATTError)] = state.withLock { s in
                s.lost = reason
                var out: [(Waiter, ATTError)] = []
                if let t = s.inFlight, let w = t.waiter {
                    out.append((w, ATTError(timedOut ? .timeout : .linkLost, request: t.opcode, reason)))
                }
                for t in s.queued {
                    if let w = t.waiter { out.append((w, ATTError(.linkLost, request: t.opcode, reason))) }
                }
                s.inFlight = nil
                s.queued = []
                s.deadline = nil
                return out
            }
            Glibc.close(fd)
            for (waiter, error) in waiters { waiter.resume(returning: .failure(error)) }
            events.yield(.closed(reason: reason))
            events.finish()
        }
    }
}

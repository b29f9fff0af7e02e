import Foundation
import PulseGateSensors
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One attribute of the test peripheral's GATT table.
struct TestAttribute: Sendable {
    var handle: UInt16
    var type: BluetoothUUID
    var value: [UInt8]
}

/// A GATT table built the way a real server lays one out: a service declaration, then per
/// characteristic its declaration (properties, value handle, UUID), its value and its descriptors.
struct TestGATTTable: Sendable {
    private(set) var attributes: [TestAttribute] = []
    private var next: UInt16 = 1

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

    mutating func service(_ uuid: BluetoothUUID, at handle: UInt16) {
        next = handle
        add(BluetoothUUID(0x2800), uuid.littleEndian)
    }

    /// Adds a characteristic; returns its value handle. `descriptors` follow the value in order.
    @discardableResult
    mutating func characteristic(
        _ uuid: BluetoothUUID, properties: UInt8, value: [UInt8] = [], descriptors: [BluetoothUUID] = []
    ) -> UInt16 {
        let valueHandle = next + 1
        add(BluetoothUUID(0x2803), [properties] + Self.le16(valueHandle) + uuid.littleEndian)
        add(uuid, value)
        for d in descriptors { add(d, d == BluetoothUUID(0x2902) ? [0, 0] : Array("desc".utf8)) }
        return valueHandle
    }

    private mutating func add(_ type: BluetoothUUID, _ value: [UInt8]) {
        attributes.append(TestAttribute(handle: next, type: type, value: value))
        next += 1
    }

    func attribute(_ handle: UInt16) -> TestAttribute? { attributes.first { $0.handle == handle } }

    mutating func setValue(_ handle: UInt16, _ value: [UInt8]) {
        if let i = attributes.firstIndex(where: { $0.handle == handle }) { attributes[i].value = value }
    }

    /// The end handle of the service group starting at `start`: its last attribute's handle.
    func groupEnd(_ start: UInt16) -> UInt16 {
        let next = attributes.first { $0.handle > start && $0.type == BluetoothUUID(0x2800) }?.handle ?? .max
        return attributes.last { $0.handle < next }!.handle
    }

    static let cccd = BluetoothUUID(0x2902)
    static let nordicUARTService = BluetoothUUID(string: "6e400001-b5a3-f393-e0a9-e50e24dcca9e")!
    static let nordicUARTTX = BluetoothUUID(string: "6e400003-b5a3-f393-e0a9-e50e24dcca9e")!
    static let longManufacturer = "Dynastream Innovations Incorporated"  // 35 bytes: more than MTU 23 − 1

    /// A chest strap and a power meter behind one peripheral, with the services around them a real one
    /// has: GAP, Heart Rate, Battery, Device Information, Cycling Power (with an indicate-only control
    /// point) and a vendor service with 128-bit UUIDs whose CCCD is not the first descriptor.
    static var strapAndPowerMeter: TestGATTTable {
        var t = TestGATTTable()
        t.service(BluetoothUUID(0x1800), at: 0x0001)
        t.characteristic(BluetoothUUID(0x2A00), properties: 0x02, value: Array("PG Strap".utf8))
        t.characteristic(BluetoothUUID(0x2A01), properties: 0x02, value: [0x41, 0x03])
        t.service(BluetoothUUID(0x180D), at: 0x0010)
        t.characteristic(BluetoothUUID(0x2A37), properties: 0x10, descriptors: [cccd])  // 0x0012, CCCD 0x0013
        t.characteristic(BluetoothUUID(0x2A38), properties: 0x02, value: [0x01])
        t.service(BluetoothUUID(0x180F), at: 0x0020)
        t.characteristic(BluetoothUUID(0x2A19), properties: 0x12, value: [0x5A], descriptors: [cccd])  // 0x0022, 0x0023
        t.service(BluetoothUUID(0x180A), at: 0x0030)
        t.characteristic(BluetoothUUID(0x2A29), properties: 0x02, value: Array(longManufacturer.utf8))
        t.characteristic(BluetoothUUID(0x2A24), properties: 0x02, value: Array("H10".utf8))
        t.characteristic(BluetoothUUID(0x2A25), properties: 0x02, value: Array("C0680226".utf8) + [0, 0])
        t.characteristic(BluetoothUUID(0x2A26), properties: 0x02, value: Array("3.2.0".utf8))
        t.service(BluetoothUUID(0x1818), at: 0x0040)
        t.characteristic(BluetoothUUID(0x2A63), properties: 0x10, descriptors: [cccd])  // 0x0042, 0x0043
        t.characteristic(BluetoothUUID(0x2A65), properties: 0x02, value: [0x0C, 0x00, 0x00, 0x00])
        t.characteristic(BluetoothUUID(0x2A5D), properties: 0x02, value: [0x0D])
        t.characteristic(BluetoothUUID(0x2A66), properties: 0x28, descriptors: [cccd])  // 0x0049, 0x004A
        t.service(nordicUARTService, at: 0x0050)
        t.characteristic(nordicUARTTX, properties: 0x10, descriptors: [BluetoothUUID(0x2901), cccd])  // 0x52; 0x54
        return t
    }
}

/// The ATT server side of a socketpair: answers requests from a ``TestGATTTable`` on a thread of its
/// own and lets the test send whatever it likes (notifications, indications, its own requests,
/// garbage). Everything the client sent that was not a request (confirmations, answers to our
/// requests) comes out of ``replies``.
final class ScriptedATTPeripheral: Sendable {
    struct State {
        var table: TestGATTTable
        var mtu: Int
        /// Every request PDU the client sent, in order.
        var requests: [[UInt8]] = []
        /// Requests answered with Error Response, as (request opcode, error code).
        var errors: [(UInt8, UInt8)] = []
        /// A second request arrived while one was unanswered (ATT forbids it).
        var overlapping = 0
        /// Requests left unanswered on purpose (timeout tests).
        var silent = false
        /// How long to hold each answer, listening for an overlapping request meanwhile.
        var holdMillis: Int32 = 0
        /// Handles whose writes are refused with Insufficient Authentication.
        var refusedWrites: Set<UInt16> = []
        var closed = false
    }

    let fd: Int32
    let state: Mutex<State>
    let replies: AsyncStream<[UInt8]>
    private let replySink: AsyncStream<[UInt8]>.Continuation

    /// A connected pair: the client's descriptor and the peripheral serving the other end.
    static func pair(table: TestGATTTable = .strapAndPowerMeter, mtu: Int = 23) -> (
        client: Int32, peer: ScriptedATTPeripheral
    ) {
        var fds: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds)
        precondition(rc == 0, "socketpair failed: \(errno)")
        return (fds[0], ScriptedATTPeripheral(fd: fds[1], table: table, mtu: mtu))
    }

    init(fd: Int32, table: TestGATTTable, mtu: Int) {
        self.fd = fd
        state = Mutex(State(table: table, mtu: mtu))
        (replies, replySink) = AsyncStream.makeStream()
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    func configure(_ change: (inout State) -> Void) { state.withLock { change(&$0) } }

    func snapshot() -> State { state.withLock { $0 } }

    func send(_ pdu: [UInt8]) {
        let n = pdu.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        precondition(n == pdu.count || snapshot().closed, "peer send failed: \(errno)")
    }

    func notify(_ handle: UInt16, _ value: [UInt8]) { send([0x1B] + TestGATTTable.le16(handle) + value) }

    func indicate(_ handle: UInt16, _ value: [UInt8]) { send([0x1D] + TestGATTTable.le16(handle) + value) }

    /// The link drops: the client must notice.
    func close() {
        let first = state.withLock { s in
            defer { s.closed = true }
            return !s.closed
        }
        if first { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// The next thing the client sent that was not a request, or `nil` after 5 s.
    func nextReply() async -> [UInt8]? {
        let replies = self.replies
        return await withTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                var it = replies.makeAsyncIterator()
                return await it.next()
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func receive(timeoutMillis: Int32) -> [UInt8]? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMillis) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? Array(buffer[0..<n]) : nil
    }

    private func serve() {
        var pending: [[UInt8]] = []
        while !snapshot().closed {
            guard let pdu = pending.isEmpty ? receive(timeoutMillis: 100) : pending.removeFirst() else {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 0) > 0, pfd.revents & Int16(POLLHUP) != 0 { break }
                continue
            }
            let op = pdu[0]
            guard op & 1 == 0, op != 0x1E, op & 0x40 == 0 else {
                replySink.yield(pdu)
                continue
            }
            let (silent, hold) = state.withLock { s in
                s.requests.append(pdu)
                return (s.silent, s.holdMillis)
            }
            if silent { continue }
            if hold > 0 {
                // Listen while holding the answer: a request now would be a second outstanding one.
                let deadline = ContinuousClock.now + .milliseconds(Int(hold))
                while ContinuousClock.now < deadline {
                    let left =
                        Int32((deadline - ContinuousClock.now).components.attoseconds / 1_000_000_000_000_000) + 1
                    guard let early = receive(timeoutMillis: left) else { continue }
                    if early[0] & 1 == 0, early[0] != 0x1E, early[0] & 0x40 == 0 {
                        state.withLock { $0.overlapping += 1 }
                    }
                    pending.append(early)
                }
            }
            let answer = state.withLock { s in Self.answer(pdu, state: &s) }
            if let answer {
                _ = answer.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
        replySink.finish()
        Glibc.close(fd)
    }

    /// The server's answer to one request, like any small GATT server.
    static func answer(_ pdu: [UInt8], state s: inout State) -> [UInt8]? {
        func u16(_ i: Int) -> UInt16 { UInt16(pdu[i]) | UInt16(pdu[i + 1]) << 8 }
        func error(_ code: UInt8, _ handle: UInt16 = 0) -> [UInt8] {
            s.errors.append((pdu[0], code))
            return [0x01, pdu[0]] + TestGATTTable.le16(handle) + [code]
        }
        let table = s.table
        switch pdu[0] {
        case 0x02:
            let clientMTU = Int(u16(1))
            let answer = [0x03] + TestGATTTable.le16(UInt16(s.mtu))
            s.mtu = min(s.mtu, clientMTU)
            return answer
        case 0x10, 0x08:
            let start = u16(1)
            let end = u16(3)
            let type = BluetoothUUID(littleEndian: pdu[5...])!
            let grouping = pdu[0] == 0x10
            let matches = table.attributes.filter { $0.handle >= start && $0.handle <= end && $0.type == type }
            guard let first = matches.first else { return error(0x0A, start) }
            let headLength = grouping ? 4 : 2
            let entryLength = headLength + first.value.count
            var body: [UInt8] = []
            for a in matches where a.value.count == first.value.count {
                guard 2 + body.count + entryLength <= s.mtu else { break }
                body += TestGATTTable.le16(a.handle)
                if grouping { body += TestGATTTable.le16(table.groupEnd(a.handle)) }
                body += a.value
            }
            return [pdu[0] + 1, UInt8(entryLength)] + body
        case 0x04:
            let start = u16(1)
            let end = u16(3)
            let matches = table.attributes.filter { $0.handle >= start && $0.handle <= end }
            guard let first = matches.first else { return error(0x0A, start) }
            let short = first.type.short != nil
            var body: [UInt8] = []
            for a in matches where (a.type.short != nil) == short {
                let entry = TestGATTTable.le16(a.handle) + a.type.littleEndian
                guard 2 + body.count + entry.count <= s.mtu else { break }
                body += entry
            }
            return [0x05, short ? 1 : 2] + body
        case 0x0A:
            guard let a = table.attribute(u16(1)) else { return error(0x01, u16(1)) }
            return [0x0B] + a.value.prefix(s.mtu - 1)
        case 0x0C:
            guard let a = table.attribute(u16(1)) else { return error(0x01, u16(1)) }
            let offset = Int(u16(3))
            guard offset <= a.value.count else { return error(0x07, a.handle) }
            return [0x0D] + a.value[offset...].prefix(s.mtu - 1)
        case 0x12:
            let handle = u16(1)
            guard table.attribute(handle) != nil else { return error(0x01, handle) }
            if s.refusedWrites.contains(handle) { return error(0x05, handle) }
            s.table.setValue(handle, Array(pdu[3...]))
            return [0x13]
        default:
            return error(0x06)
        }
    }
}

/// Runs `body` on a thread of its own (blocking test helpers must not hold a cooperative thread).
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

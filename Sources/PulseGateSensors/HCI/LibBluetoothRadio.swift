import CBluetooth
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// ``HCIRadio`` through libbluetooth and the kernel's raw HCI and L2CAP sockets, for hosts where
/// bluetoothd is not running (with it running, its own scanning competes for the controller).
///
/// Needs CAP_NET_RAW and CAP_NET_ADMIN (HCI commands on a raw socket); without them the scan fails
/// with ``SensorBackendError/Code/permission``.
package struct LibBluetoothRadio: HCIRadio {
    static let backend = "hci"

    package let adapter: String
    /// Scan interval and window in units of 0.625 ms (0x0010 = 10 ms each: listen all the time).
    package var interval: UInt16
    package var window: UInt16

    package init(adapter: String, interval: UInt16 = 0x0010, window: UInt16 = 0x0010) {
        self.adapter = adapter
        self.interval = interval
        self.window = window
    }

    package func startScan(active: Bool) async throws(SensorBackendError) -> any HCIScan {
        let adapter = self.adapter
        let interval = self.interval
        let window = self.window
        return try await onOwnThread("hci-scan-start") { () -> Result<LibBluetoothScan, SensorBackendError> in
            Result { () throws(SensorBackendError) in
                try LibBluetoothScan(adapter: adapter, active: active, interval: interval, window: window)
            }
        }.get()
    }

    package func connect(to address: LEAddress, timeout: Duration) async throws(SensorBackendError) -> Int32 {
        let adapter = self.adapter
        return try await onOwnThread("l2cap-connect") { () -> Result<Int32, SensorBackendError> in
            Result { () throws(SensorBackendError) in
                try Self.connectATT(adapter: adapter, to: address, timeout: timeout)
            }
        }.get()
    }

    /// The device id and address of `adapter`, or why it cannot be used.
    static func device(_ adapter: String) throws(SensorBackendError) -> (id: Int32, info: hci_dev_info) {
        let id = hci_devid(adapter)
        guard id >= 0 else { throw error(errno, doing: "finding \(adapter)", adapter: adapter) }
        var info = hci_dev_info()
        guard hci_devinfo(id, &info) == 0 else { throw error(errno, doing: "reading \(adapter)", adapter: adapter) }
        guard hci_test_bit(Int32(HCI_UP), &info.flags) != 0 else {
            throw SensorBackendError(
                backend: backend, .unavailable,
                "Bluetooth adapter \(adapter) is down: unblock it (`rfkill unblock bluetooth`) and power it on "
                    + "(`btmgmt --index \(adapter) power on`)")
        }
        return (id, info)
    }

    /// Maps errno from socket and HCI calls to what an installer must do.
    static func error(_ code: Int32, doing what: String, adapter: String) -> SensorBackendError {
        switch code {
        case EAFNOSUPPORT, EPROTONOSUPPORT:
            return SensorBackendError(
                backend: backend, .notFound,
                "this kernel has no Bluetooth support (AF_BLUETOOTH sockets unavailable) while \(what)")
        case ENODEV, ENXIO, ENOENT:
            return SensorBackendError(backend: backend, .notFound, "no Bluetooth adapter \(adapter) (\(what))")
        case EPERM, EACCES:
            return SensorBackendError(
                backend: backend, .permission,
                "\(what) needs CAP_NET_RAW and CAP_NET_ADMIN (AmbientCapabilities= in the unit, or setcap)")
        case ENETDOWN, ERFKILL:
            return SensorBackendError(
                backend: backend, .unavailable, "Bluetooth adapter \(adapter) is down or blocked (\(what))")
        default:
            return SensorBackendError(backend: backend, .unavailable, "\(what): \(errnoText(code))")
        }
    }

    /// socket → bind (adapter address, LE public, cid 4) → non-blocking connect (peer, its address type)
    /// → wait for it within `timeout`, as BlueZ's btgatt-client does.
    static func connectATT(adapter: String, to peer: LEAddress, timeout: Duration) throws(SensorBackendError) -> Int32 {
        let (_, info) = try device(adapter)
        let fd = socket(AF_BLUETOOTH, Int32(SOCK_SEQPACKET.rawValue), BTPROTO_L2CAP)
        guard fd >= 0 else { throw error(errno, doing: "opening an L2CAP socket", adapter: adapter) }
        var ok = false
        defer { if !ok { close(fd) } }

        var local = sockaddr_l2()
        local.l2_family = sa_family_t(AF_BLUETOOTH)
        local.l2_bdaddr = info.bdaddr
        local.l2_cid = 4  // ATT; little-endian hosts only (htobs is the identity there)
        local.l2_bdaddr_type = UInt8(BDADDR_LE_PUBLIC)
        guard bindL2(fd, &local) == 0 else { throw error(errno, doing: "binding the ATT socket", adapter: adapter) }

        var remote = sockaddr_l2()
        remote.l2_family = sa_family_t(AF_BLUETOOTH)
        withUnsafeMutableBytes(of: &remote.l2_bdaddr) { raw in
            for (i, b) in peer.bytes.enumerated() { raw[i] = b }
        }
        remote.l2_cid = 4
        remote.l2_bdaddr_type = UInt8(peer.type == .public ? BDADDR_LE_PUBLIC : BDADDR_LE_RANDOM)
        setNonBlocking(fd)
        if connectL2(fd, &remote) != 0 {
            guard errno == EINPROGRESS || errno == EAGAIN else {
                throw error(errno, doing: "connecting to \(peer)", adapter: adapter)
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&pfd, 1, pollTimeout(until: .now + timeout))
            guard ready > 0 else {
                throw SensorBackendError(
                    backend: backend, .unavailable, "connecting to \(peer) timed out after \(timeout)")
            }
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            guard failure == 0 else { throw error(failure, doing: "connecting to \(peer)", adapter: adapter) }
        }
        ok = true
        return fd
    }

    private static func bindL2(_ fd: Int32, _ address: inout sockaddr_l2) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_l2>.size))
            }
        }
    }

    private static func connectL2(_ fd: Int32, _ address: inout sockaddr_l2) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_l2>.size))
            }
        }
    }
}

/// One LE scan on two raw HCI sockets: `commands` sends the scan commands (hci_send_req reads their
/// answers on the socket it sends on, so it cannot share one with a reader), `eventSocket` receives only
/// LE Meta events and is read by a thread of its own, which also tears both down.
final class LibBluetoothScan: HCIScan {
    let reports: AsyncStream<LEAdvertisingReport>
    private let continuation: AsyncStream<LEAdvertisingReport>.Continuation
    private let adapter: String
    private let commands: Int32
    private let eventSocket: Int32
    private let waker: PollWaker
    private let active: Bool
    private let interval: UInt16
    private let window: UInt16

    /// Guards `commands`: a command is never sent on a descriptor the reader already closed (its number
    /// could belong to something else by then).
    private struct State {
        var stopping = false
        var closed = false
    }
    private let state = Mutex(State())

    init(adapter: String, active: Bool, interval: UInt16, window: UInt16) throws(SensorBackendError) {
        let (id, _) = try LibBluetoothRadio.device(adapter)
        let commands = hci_open_dev(id)
        guard commands >= 0 else {
            throw LibBluetoothRadio.error(errno, doing: "opening \(adapter)", adapter: adapter)
        }
        let eventSocket = hci_open_dev(id)
        guard eventSocket >= 0, let waker = PollWaker() else {
            let code = errno
            close(commands)
            if eventSocket >= 0 { close(eventSocket) }
            throw LibBluetoothRadio.error(code, doing: "opening \(adapter)", adapter: adapter)
        }
        self.adapter = adapter
        self.commands = commands
        self.eventSocket = eventSocket
        self.waker = waker
        self.active = active
        self.interval = interval
        self.window = window
        (reports, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(256))

        var filter = hci_filter()
        hci_filter_clear(&filter)
        hci_filter_set_ptype(HCI_EVENT_PKT, &filter)
        hci_filter_set_event(EVT_LE_META_EVENT, &filter)
        let filtered = setsockopt(eventSocket, SOL_HCI, HCI_FILTER, &filter, socklen_t(MemoryLayout<hci_filter>.size))
        do throws(SensorBackendError) {
            guard filtered == 0 else {
                throw LibBluetoothRadio.error(errno, doing: "setting the HCI filter", adapter: adapter)
            }
            try configure()
        } catch {
            close(commands)
            close(eventSocket)
            continuation.finish()
            throw error
        }
        setNonBlocking(eventSocket)
        let thread = Thread { [self] in readLoop() }
        thread.name = "hci-scan"
        thread.start()
        continuation.onTermination = { [weak self] _ in self?.requestStop() }
    }

    /// Disables a scan a previous process may have left running (enabling twice is refused), then sets
    /// the parameters and enables it. Duplicates are not filtered: repeats carry fresh RSSI and, after
    /// a link drops, the advert that lets us reconnect.
    private func configure() throws(SensorBackendError) {
        _ = hci_le_set_scan_enable(commands, 0x00, 0x00, 1000)
        guard hci_le_set_scan_parameters(commands, active ? 0x01 : 0x00, interval, window, 0x00, 0x00, 1000) >= 0 else {
            throw LibBluetoothRadio.error(errno, doing: "setting LE scan parameters", adapter: adapter)
        }
        guard hci_le_set_scan_enable(commands, 0x01, 0x00, 1000) >= 0 else {
            throw LibBluetoothRadio.error(errno, doing: "enabling the LE scan", adapter: adapter)
        }
    }

    func pause() async { await setEnabled(false) }

    func resume() async { await setEnabled(true) }

    /// HCI commands wait up to a second for the controller: on a thread of their own.
    private func setEnabled(_ on: Bool) async {
        await onOwnThread("hci-scan-enable") { [self] in
            state.withLock { s in
                guard !s.closed, !s.stopping else { return }
                _ = hci_le_set_scan_enable(commands, on ? 0x01 : 0x00, 0x00, 1000)
            }
        }
    }

    func stop() async { requestStop() }

    private func requestStop() {
        state.withLock { $0.stopping = true }
        waker.wake()
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: Int(HCI_MAX_EVENT_SIZE) + 1)
        loop: while !state.withLock({ $0.stopping }) {
            var fds = [
                pollfd(fd: eventSocket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: waker.readEnd, events: Int16(POLLIN), revents: 0),
            ]
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            if fds[1].revents != 0 { waker.drain() }
            if fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 { break }
            while true {
                let n = buffer.withUnsafeMutableBytes { read(eventSocket, $0.baseAddress, $0.count) }
                if n > 0 {
                    // A malformed event is the controller's problem, not a reason to stop listening.
                    if let parsed = try? LEAdvertisingReport.parse(packet: Array(buffer[0..<n])) {
                        for report in parsed { continuation.yield(report) }
                    }
                    continue
                }
                if n < 0, errno == EINTR { continue }
                if n < 0, errno == EAGAIN || errno == EWOULDBLOCK { break }
                break loop  // the adapter went away (ENODEV, ENETDOWN)
            }
        }
        // From here on no command goes out on `commands` (one under way finishes first), so both can
        // be closed without holding the lock through the controller's answer.
        state.withLock { $0.closed = true }
        _ = hci_le_set_scan_enable(commands, 0x00, 0x00, 1000)
        close(commands)
        close(eventSocket)
        continuation.finish()
    }
}

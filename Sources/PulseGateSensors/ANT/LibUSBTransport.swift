import CLibUSB
import Dispatch

/// Where an ANT stick sits on the USB bus, for `doctor` and error messages.
public struct ANTStickInfo: Sendable, Equatable, CustomStringConvertible {
    public var vendorID: UInt16
    public var productID: UInt16
    public var bus: UInt8
    public var address: UInt8

    public init(vendorID: UInt16, productID: UInt16, bus: UInt8, address: UInt8) {
        self.vendorID = vendorID
        self.productID = productID
        self.bus = bus
        self.address = address
    }

    /// `0fcf:1008 on bus 001 device 004`, as `lsusb` would list it.
    public var description: String {
        "\(Self.hex4(vendorID)):\(Self.hex4(productID)) on bus \(Self.dec3(bus)) device \(Self.dec3(address))"
    }

    private static func hex4(_ v: UInt16) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    private static func dec3(_ v: UInt8) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, 3 - s.count)) + s
    }
}

/// Finds ANT USB sticks with libusb and opens the first one that nobody else holds.
///
/// Opening detaches the kernel driver when one is bound (Linux binds `usb_serial_simple` to these
/// sticks, which would otherwise keep the interface), selects configuration 1 when the stick is
/// unconfigured, claims the interface that has a bulk IN and a bulk OUT endpoint, and takes the
/// endpoint addresses from the descriptors rather than assuming 0x81/0x01. Nothing is sent to the
/// stick: the ANT conversation is ``ANTBackend``'s.
public struct LibUSBStickOpener: ANTStickOpener {
    /// Dynastream Innovations (Garmin).
    public static let vendorID: UInt16 = 0x0FCF
    /// 0x1008 ANTUSB2, 0x1009 ANTUSB-m. (0x1004, the old serial-bridge stick, is a tty, not bulk.)
    public static let productIDs: [UInt16] = [0x1008, 0x1009]

    public init() {}

    /// The ANT sticks plugged in now, without opening them (for `doctor`). An empty list means libusb
    /// works and sees no stick; an error means libusb itself could not start.
    public static func sticks() throws(SensorBackendError) -> [ANTStickInfo] {
        let session = try LibUSBSession()
        let found = try session.sticks()
        for stick in found { libusb_unref_device(stick.device) }
        return found.map(\.info)
    }

    public func open() async throws(SensorBackendError) -> any ANTTransport {
        let queue = DispatchQueue(label: "pulsegate.ant.libusb")
        let opened = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: LibUSBTransport.open(queue: queue)) }
        }
        return try opened.get()
    }
}

/// A libusb context with the device list of the moment.
private final class LibUSBSession {
    let context: OpaquePointer

    init() throws(SensorBackendError) {
        var context: OpaquePointer?
        let status = libusb_init(&context)
        guard status == 0, let context else {
            throw SensorBackendError(
                backend: "ant", .notFound,
                "libusb could not start (\(libusbName(status))): this host shows no USB devices to pulsegate "
                    + "(no /dev/bus/usb, or the service runs with PrivateDevices=yes; see pulsegate-kiosk.conf)")
        }
        self.context = context
    }

    deinit { libusb_exit(context) }

    /// The devices with an ANT stick's vendor and product id, in bus order. The device references
    /// are owned by the caller (released with `libusb_unref_device`).
    func sticks() throws(SensorBackendError) -> [(device: OpaquePointer, info: ANTStickInfo)] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let count = libusb_get_device_list(context, &list)
        guard count >= 0 else {
            throw SensorBackendError(
                backend: "ant", .unavailable, "libusb cannot list USB devices (\(libusbName(Int32(count))))")
        }
        // The list is allocated (and must be freed) even when it holds no device.
        guard let list else { return [] }
        defer { libusb_free_device_list(list, 1) }
        var found: [(device: OpaquePointer, info: ANTStickInfo)] = []
        for index in 0..<count {
            guard let device = list[index] else { continue }
            var descriptor = libusb_device_descriptor()
            guard libusb_get_device_descriptor(device, &descriptor) == 0,
                descriptor.idVendor == LibUSBStickOpener.vendorID,
                LibUSBStickOpener.productIDs.contains(descriptor.idProduct)
            else { continue }
            let info = ANTStickInfo(
                vendorID: descriptor.idVendor, productID: descriptor.idProduct,
                bus: libusb_get_bus_number(device), address: libusb_get_device_address(device))
            found.append((libusb_ref_device(device), info))
        }
        return found.sorted { ($0.info.bus, $0.info.address) < ($1.info.bus, $1.info.address) }
    }
}

/// An opened, claimed stick. Every libusb call runs on one serial queue: the blocking bulk
/// transfers stay off Swift's cooperative threads, and `close` can never race a transfer in flight.
final class LibUSBTransport: ANTTransport, @unchecked Sendable {
    private let session: LibUSBSession
    private let handle: OpaquePointer
    private let info: ANTStickInfo
    private let interfaceNumber: Int32
    private let inEndpoint: UInt8
    private let outEndpoint: UInt8
    /// A multiple of the IN endpoint's packet size, so a read never ends inside a packet (which
    /// libusb reports as an overflow).
    private let readLength: Int
    private let reattachKernelDriver: Bool
    private let queue: DispatchQueue
    /// Touched only on `queue` (or in `deinit`, when no call can be in flight).
    private var closed = false

    private init(
        session: LibUSBSession, handle: OpaquePointer, info: ANTStickInfo, interface: Interface,
        reattachKernelDriver: Bool, queue: DispatchQueue
    ) {
        self.session = session
        self.handle = handle
        self.info = info
        self.interfaceNumber = interface.number
        self.inEndpoint = interface.inEndpoint
        self.outEndpoint = interface.outEndpoint
        self.readLength = max(1, 4096 / interface.maxPacketSize) * interface.maxPacketSize
        self.reattachKernelDriver = reattachKernelDriver
        self.queue = queue
    }

    deinit { release() }

    /// Runs on `queue`. Tries each stick in bus order and returns the first that opens; when none
    /// does, the first stick's reason (a second stick may be held by another pulsegate on purpose).
    static func open(queue: DispatchQueue) -> Result<any ANTTransport, SensorBackendError> {
        let session: LibUSBSession
        do throws(SensorBackendError) {
            session = try LibUSBSession()
        } catch {
            return .failure(error)
        }
        let candidates: [(device: OpaquePointer, info: ANTStickInfo)]
        do throws(SensorBackendError) {
            candidates = try session.sticks()
        } catch {
            return .failure(error)
        }
        defer { for candidate in candidates { libusb_unref_device(candidate.device) } }
        guard !candidates.isEmpty else {
            return .failure(
                SensorBackendError(
                    backend: "ant", .notFound,
                    "no ANT stick found: no USB device 0fcf:1008 (ANTUSB2) or 0fcf:1009 (ANTUSB-m) is plugged in"))
        }
        var firstFailure: SensorBackendError?
        for candidate in candidates {
            switch open(candidate.device, info: candidate.info, session: session, queue: queue) {
            case .success(let transport): return .success(transport)
            case .failure(let error): firstFailure = firstFailure ?? error
            }
        }
        return .failure(firstFailure!)
    }

    private static func open(
        _ device: OpaquePointer, info: ANTStickInfo, session: LibUSBSession, queue: DispatchQueue
    ) -> Result<any ANTTransport, SensorBackendError> {
        func failure(_ code: SensorBackendError.Code, _ what: String, _ status: Int32) -> SensorBackendError {
            SensorBackendError(backend: "ant", code, "ANT stick \(info): \(what) (\(libusbName(status)))")
        }
        var opened: OpaquePointer?
        var status = libusb_open(device, &opened)
        guard status == 0, let handle = opened else {
            switch status {
            case LIBUSB_ERROR_ACCESS.rawValue:
                return .failure(
                    failure(
                        .permission,
                        "permission denied; install systemd/60-pulsegate-ant.rules and put the pulsegate user in "
                            + "group plugdev", status))
            case LIBUSB_ERROR_NO_DEVICE.rawValue:
                return .failure(failure(.notFound, "unplugged while opening", status))
            default:
                return .failure(failure(.unavailable, "cannot be opened", status))
            }
        }
        // An unconfigured stick has no active configuration descriptor; ANT sticks have only one.
        var configuration: Int32 = -1
        if libusb_get_configuration(handle, &configuration) == 0, configuration == 0 {
            status = libusb_set_configuration(handle, 1)
            guard status == 0 else {
                libusb_close(handle)
                return .failure(failure(.unavailable, "configuration 1 cannot be selected", status))
            }
        }
        guard let interface = findBulkInterface(device) else {
            libusb_close(handle)
            return .failure(
                SensorBackendError(
                    backend: "ant", .unavailable,
                    "ANT stick \(info): no interface with a bulk IN and a bulk OUT endpoint; is it really an ANT stick?"
                ))
        }
        var detached = false
        if libusb_kernel_driver_active(handle, interface.number) == 1 {
            status = libusb_detach_kernel_driver(handle, interface.number)
            guard status == 0 else {
                libusb_close(handle)
                let code: SensorBackendError.Code = status == LIBUSB_ERROR_ACCESS.rawValue ? .permission : .unavailable
                return .failure(failure(code, "the kernel driver (usb_serial_simple) cannot be detached", status))
            }
            detached = true
        }
        status = libusb_claim_interface(handle, interface.number)
        guard status == 0 else {
            if detached { libusb_attach_kernel_driver(handle, interface.number) }
            libusb_close(handle)
            if status == LIBUSB_ERROR_BUSY.rawValue {
                return .failure(failure(.unavailable, "another program holds it", status))
            }
            return .failure(failure(.unavailable, "its interface cannot be claimed", status))
        }
        return .success(
            LibUSBTransport(
                session: session, handle: handle, info: info, interface: interface, reattachKernelDriver: detached,
                queue: queue))
    }

    private struct Interface {
        var number: Int32
        var inEndpoint: UInt8
        var outEndpoint: UInt8
        var maxPacketSize: Int
    }

    /// The first interface whose first alternate setting has a bulk IN and a bulk OUT endpoint.
    private static func findBulkInterface(_ device: OpaquePointer) -> Interface? {
        var descriptor: UnsafeMutablePointer<libusb_config_descriptor>?
        guard libusb_get_active_config_descriptor(device, &descriptor) == 0, let config = descriptor else {
            return nil
        }
        defer { libusb_free_config_descriptor(config) }
        let bulk = UInt8(LIBUSB_TRANSFER_TYPE_BULK.rawValue)
        let directionIn = UInt8(LIBUSB_ENDPOINT_IN.rawValue)
        for i in 0..<Int(config.pointee.bNumInterfaces) {
            let interface = config.pointee.interface[i]
            guard interface.num_altsetting > 0, let settings = interface.altsetting else { continue }
            let setting = settings[0]
            var inEndpoint: UInt8?
            var outEndpoint: UInt8?
            var maxPacketSize = 64
            for e in 0..<Int(setting.bNumEndpoints) {
                let endpoint = setting.endpoint[e]
                guard endpoint.bmAttributes & 0x03 == bulk else { continue }
                if endpoint.bEndpointAddress & directionIn != 0 {
                    if inEndpoint == nil {
                        inEndpoint = endpoint.bEndpointAddress
                        maxPacketSize = max(1, Int(endpoint.wMaxPacketSize & 0x07FF))
                    }
                } else if outEndpoint == nil {
                    outEndpoint = endpoint.bEndpointAddress
                }
            }
            if let inEndpoint, let outEndpoint {
                return Interface(
                    number: Int32(setting.bInterfaceNumber), inEndpoint: inEndpoint, outEndpoint: outEndpoint,
                    maxPacketSize: maxPacketSize)
            }
        }
        return nil
    }

    func write(_ bytes: [UInt8]) async throws(ANTTransportError) {
        try await onQueue { transport in transport.blockingWrite(bytes) }
    }

    func read(timeout: Duration) async throws(ANTTransportError) -> [UInt8] {
        let milliseconds = Self.milliseconds(timeout)
        return try await onQueue { transport in transport.blockingRead(milliseconds) }
    }

    func close() async {
        await withCheckedContinuation { continuation in
            queue.async {
                self.release()
                continuation.resume()
            }
        }
    }

    private func onQueue<T: Sendable>(
        _ body: @escaping @Sendable (LibUSBTransport) -> Result<T, ANTTransportError>
    ) async throws(ANTTransportError) -> T {
        let result = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: body(self)) }
        }
        return try result.get()
    }

    private func blockingRead(_ milliseconds: UInt32) -> Result<[UInt8], ANTTransportError> {
        guard !closed else { return .failure(ANTTransportError(.io, "ANT stick \(info) is closed")) }
        var buffer = [UInt8](repeating: 0, count: readLength)
        var transferred: Int32 = 0
        let status = buffer.withUnsafeMutableBufferPointer { raw in
            libusb_bulk_transfer(handle, inEndpoint, raw.baseAddress, Int32(raw.count), &transferred, milliseconds)
        }
        switch status {
        case 0, LIBUSB_ERROR_TIMEOUT.rawValue:
            return .success(Array(buffer.prefix(Int(transferred))))
        case LIBUSB_ERROR_PIPE.rawValue:
            // The endpoint stalled: clear it and let the caller read again.
            libusb_clear_halt(handle, inEndpoint)
            return .success(Array(buffer.prefix(Int(transferred))))
        default:
            return .failure(.libusb(status, "bulk IN transfer from ANT stick \(info)"))
        }
    }

    private func blockingWrite(_ bytes: [UInt8]) -> Result<Void, ANTTransportError> {
        guard !closed else { return .failure(ANTTransportError(.io, "ANT stick \(info) is closed")) }
        var buffer = bytes
        var offset = 0
        while offset < buffer.count {
            var transferred: Int32 = 0
            let status = buffer.withUnsafeMutableBufferPointer { raw in
                libusb_bulk_transfer(
                    handle, outEndpoint, raw.baseAddress! + offset, Int32(raw.count - offset), &transferred, 1000)
            }
            offset += Int(transferred)
            if status == LIBUSB_ERROR_TIMEOUT.rawValue, transferred > 0 { continue }
            guard status == 0 else { return .failure(.libusb(status, "bulk OUT transfer to ANT stick \(info)")) }
        }
        return .success(())
    }

    /// Releases the interface, gives the kernel driver back, closes the handle. Runs once.
    private func release() {
        guard !closed else { return }
        closed = true
        libusb_release_interface(handle, interfaceNumber)
        if reattachKernelDriver { libusb_attach_kernel_driver(handle, interfaceNumber) }
        libusb_close(handle)
    }

    /// libusb timeouts are whole milliseconds, and 0 means "forever": never pass 0.
    private static func milliseconds(_ duration: Duration) -> UInt32 {
        let (seconds, attoseconds) = duration.components
        let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return UInt32(clamping: max(1, ms))
    }
}

extension ANTTransportError {
    /// The error for a failed libusb call: `LIBUSB_ERROR_NO_DEVICE` (the stick was pulled out) is
    /// ``Code/noDevice``, `LIBUSB_ERROR_TIMEOUT` ``Code/timeout``, anything else ``Code/io``; the
    /// message names the operation and libusb's error name. A simulated stick uses it too, so tests
    /// see exactly what an unplugged stick produces.
    public static func libusb(_ status: Int32, _ operation: String) -> ANTTransportError {
        let code: Code =
            switch status {
            case LIBUSB_ERROR_NO_DEVICE.rawValue: .noDevice
            case LIBUSB_ERROR_TIMEOUT.rawValue: .timeout
            default: .io
            }
        return ANTTransportError(code, "\(operation): \(libusbName(status))")
    }
}

/// `LIBUSB_ERROR_NO_DEVICE` for -4: libusb's own name for a status.
private func libusbName(_ status: Int32) -> String {
    String(cString: libusb_error_name(status))
}

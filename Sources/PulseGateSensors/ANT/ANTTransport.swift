/// The byte pipe to one opened ANT USB stick: its bulk OUT endpoint (``write(_:)``) and its bulk IN
/// endpoint (``read(timeout:)``).
///
/// It is this small so that everything above it (framing, the channel setup, scan-mode reception,
/// hotplug recovery) runs unchanged against libusb (``LibUSBStickOpener``) and against a simulated
/// stick in tests. An implementation behaves like a bulk endpoint:
/// - ``read(timeout:)`` returns whatever the stick sent: part of an ANT message, several messages, or
///   `[]` when nothing arrived before the timeout. Framing is the caller's job (``ANTFrameParser``).
/// - Both calls throw only when the stick is unusable; a stick that was pulled out throws
///   ``ANTTransportError/Code/noDevice`` (libusb's `LIBUSB_ERROR_NO_DEVICE`) from then on.
/// - The backend never calls it concurrently: one task writes, reads and finally closes.
public protocol ANTTransport: Sendable {
    /// Sends all of `bytes` (one or more encoded ``ANTMessage``s) to the stick.
    func write(_ bytes: [UInt8]) async throws(ANTTransportError)

    /// Waits at most `timeout` for bytes from the stick; `[]` when none came. Returns promptly when
    /// the calling task is cancelled, so a backend stops within one read.
    func read(timeout: Duration) async throws(ANTTransportError) -> [UInt8]

    /// Gives the stick back (releases the interface, re-attaches the kernel driver). Idempotent; the
    /// transport is unusable afterwards.
    func close() async
}

/// Finds an ANT stick and opens it. The backend calls it at start (where its error is the
/// operator-facing reason the backend cannot run) and again after the stick was lost, until a stick
/// is back.
public protocol ANTStickOpener: Sendable {
    /// A ready transport to a stick that nobody else holds, or `.notFound` (no stick plugged in),
    /// `.permission` (udev rule missing), `.unavailable` (claimed by another program, USB error).
    func open() async throws(SensorBackendError) -> any ANTTransport
}

/// Why a read or write on an open stick failed.
public struct ANTTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The stick is gone (pulled out, reset by the host): the backend re-opens it.
        case noDevice = "no_device"
        /// A write did not complete in time: the stick stopped taking data.
        case timeout
        /// Any other USB failure.
        case io
    }

    public let code: Code
    /// For logs and `doctor`: the operation and the USB-level reason (`bulk IN transfer:
    /// LIBUSB_ERROR_NO_DEVICE`).
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

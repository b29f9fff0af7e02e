/// The radio side of ``HCIBackend``: an LE scan and ATT links. ``LibBluetoothRadio`` is the real one;
/// tests substitute a radio whose links are socketpairs to a scripted peripheral, so everything above
/// the two system calls that need an adapter runs for real.
package protocol HCIRadio: Sendable {
    /// Starts an LE scan. Throws when the adapter cannot be used (missing, down, no permission); the
    /// message says what to do.
    func startScan(active: Bool) async throws(SensorBackendError) -> any HCIScan

    /// Opens an ATT link (L2CAP LE, channel 4) to `address`: a connected descriptor with one PDU per
    /// read, owned by the caller.
    func connect(to address: LEAddress, timeout: Duration) async throws(SensorBackendError) -> Int32
}

/// A running scan.
package protocol HCIScan: Sendable {
    /// Every report the controller hands up, until ``stop()`` or a failure of the adapter (the stream
    /// then ends).
    var reports: AsyncStream<LEAdvertisingReport> { get }

    /// Stops the controller scanning while a connection is initiated (many controllers refuse to scan
    /// and initiate at once), without ending ``reports``.
    func pause() async

    func resume() async

    /// Stops scanning and ends ``reports``. Idempotent.
    func stop() async
}

/// One opened stick as the backend talks to it: whole ANT messages in and out over an
/// ``ANTTransport``, with the one ``ANTFrameParser`` that keeps sync across USB reads for the life of
/// the connection (a frame split between two reads is joined; garbage and bad checksums are skipped
/// and counted).
struct ANTStick {
    let transport: any ANTTransport
    private(set) var parser = ANTFrameParser()
    /// Frames cut from the last read that the caller has not taken yet.
    private var pending: [ANTMessage] = []

    init(transport: any ANTTransport) {
        self.transport = transport
    }

    mutating func send(_ message: ANTMessage) async throws(ANTTransportError) {
        try await transport.write(message.encode())
    }

    /// The messages already buffered, or those of one read of at most `timeout` (`[]` when the stick
    /// sent nothing whole in that time).
    mutating func receive(timeout: Duration) async throws(ANTTransportError) -> [ANTMessage] {
        if pending.isEmpty {
            pending = parser.append(try await transport.read(timeout: timeout))
        }
        defer { pending.removeAll() }
        return pending
    }

    /// The next message, waiting until `deadline`; `nil` when none came in time (or the task was
    /// cancelled).
    mutating func next(before deadline: ContinuousClock.Instant) async throws(ANTTransportError) -> ANTMessage? {
        while pending.isEmpty {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero, !Task.isCancelled else { return nil }
            pending = parser.append(try await transport.read(timeout: left))
        }
        return pending.removeFirst()
    }
}

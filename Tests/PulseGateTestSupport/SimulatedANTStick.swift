import PulseGateSensors
import Synchronization

/// An ANT USB stick at the ``ANTTransport`` layer, so the ANT backend runs in tests exactly as it runs
/// against libusb: the stick's firmware answers the ANT messages the host writes, and its bulk IN
/// endpoint hands back bytes the way a real one does.
///
/// What it models:
/// - The firmware: Reset System answers Startup (0x6F, reason 0x20 "command reset"); Set Network
///   Key, Assign Channel, Set Channel ID, RF Frequency, Period, Search Timeout, Lib Config, Enable
///   Extended Messages, Open Rx Scan Mode, Open and Close answer Channel Responses (0x40) with the
///   codes a stick uses for a command in the wrong state (21), a bad message (40) or network (41).
///   Any step can be told to answer with another code (``refuse(_:code:)``) or not at all
///   (``mute(_:)``).
/// - The radio: in scan mode, every simulated sensor broadcasts at its period (in real time) a data
///   page with the extended bytes Lib Config asked for (flag 0x80: device number, type, transmission
///   type). A sensor is heard only if the stick's network 0 key is the sensors' key, the RF channel
///   is 57 and the channel ID matches (0 = wildcard), as on the air.
/// - USB: reads return random-sized chunks of what is queued (seeded, so a failure reproduces), so
///   a message may span two reads and one read may carry several; ``inject(_:)`` puts raw bytes
///   (garbage, bad checksums) between frames; ``unplug()`` makes every read and write fail with
///   libusb's `LIBUSB_ERROR_NO_DEVICE` and ``open()`` fail with "no ANT stick found" until
///   ``replug()``, which powers the stick up unconfigured.
public final class SimulatedANTStick: ANTStickOpener {
    /// One simulated ANT+ sensor.
    public struct Sensor: Sendable {
        public enum Pages: Sendable {
            /// HRM page 4 (previous event time), toggle bit flipping every 4 messages.
            case heartRate(bpm: Int)
            /// Bicycle power page 0x10 (standard power-only), one event per message.
            case power(watts: Int, cadence: UInt8)
            /// These pages, in turn.
            case fixed([[UInt8]])
        }

        /// Up to 20 bits: bits 16–19 travel in the transmission type's upper nibble.
        public var deviceNumber: UInt32
        public var deviceType: UInt8
        /// The lower nibble of the transmission type.
        public var transmissionType: UInt8
        /// Message period in 1/32768 s.
        public var period: UInt16
        public var pages: Pages

        public init(deviceNumber: UInt32, deviceType: UInt8, transmissionType: UInt8, period: UInt16, pages: Pages) {
            self.deviceNumber = deviceNumber
            self.deviceType = deviceType
            self.transmissionType = transmissionType
            self.period = period
            self.pages = pages
        }

        /// An HRM (device type 120, period 8070, about 4 Hz).
        public static func heartRate(deviceNumber: UInt32, bpm: Int) -> Sensor {
            Sensor(
                deviceNumber: deviceNumber, deviceType: 120, transmissionType: 1, period: 8070,
                pages: .heartRate(bpm: bpm))
        }

        /// A power meter (device type 11, period 8182, about 4 Hz).
        public static func power(deviceNumber: UInt32, watts: Int, cadence: UInt8 = 90) -> Sensor {
            Sensor(
                deviceNumber: deviceNumber, deviceType: 11, transmissionType: 5, period: 8182,
                pages: .power(watts: watts, cadence: cadence))
        }

        /// The transmission type as sent: device number bits 16–19 in the upper nibble.
        var transmissionTypeOnAir: UInt8 {
            transmissionType & 0x0F | UInt8((deviceNumber >> 16) & 0x0F) << 4
        }

        /// The data page of the `n`th broadcast (from 0).
        func page(_ n: Int) -> [UInt8] {
            switch pages {
            case .heartRate(let bpm):
                let bpm = max(bpm, 1)
                let seconds = Double(n) * Double(period) / 32768
                let beats = Int(seconds * Double(bpm) / 60)
                func eventTime(_ beat: Int) -> UInt16 {
                    UInt16(truncatingIfNeeded: Int(Double(beat) * 60 / Double(bpm) * 1024))
                }
                let last = eventTime(beats)
                let previous = eventTime(max(beats - 1, 0))
                let toggle: UInt8 = (n / 4) % 2 == 0 ? 0 : 0x80
                return [
                    0x04 | toggle, 0xFF, UInt8(previous & 0xFF), UInt8(previous >> 8), UInt8(last & 0xFF),
                    UInt8(last >> 8), UInt8(truncatingIfNeeded: beats), UInt8(clamping: bpm),
                ]
            case .power(let watts, let cadence):
                let accumulated = UInt16(truncatingIfNeeded: watts * (n + 1))
                let instantaneous = UInt16(clamping: watts)
                return [
                    0x10, UInt8(truncatingIfNeeded: n + 1), 0xFF, cadence, UInt8(accumulated & 0xFF),
                    UInt8(accumulated >> 8), UInt8(instantaneous & 0xFF), UInt8(instantaneous >> 8),
                ]
            case .fixed(let pages):
                return pages.isEmpty ? [UInt8](repeating: 0, count: 8) : pages[n % pages.count]
            }
        }
    }

    /// What a test has seen happen, in one consistent snapshot.
    public struct Record: Sendable {
        /// Every `write` call's bytes, in order, across all connections.
        public var writes: [[UInt8]]
        /// Every message the host sent, as the stick's firmware parsed it.
        public var received: [ANTMessage]
        /// `open()` calls, and how many of them returned a transport.
        public var openAttempts: Int
        public var opens: Int
        public var broadcastsSent: Int
        public var isScanning: Bool
        public var isClaimed: Bool
    }

    private let networkKey: [UInt8]
    private let maxChunk: Int
    private let state: Mutex<State>

    /// - Parameters:
    ///   - networkKey: the key the simulated sensors broadcast under (a made-up one in tests).
    ///   - maxChunk: the largest read; 64 is one full-speed bulk packet.
    ///   - seed: for the read sizes and the sensors' phases.
    public init(networkKey: [UInt8], sensors: [Sensor], maxChunk: Int = 64, seed: UInt64 = 1) {
        self.networkKey = networkKey
        self.maxChunk = max(1, maxChunk)
        self.state = Mutex(State(sensors: sensors.map { SensorState(sensor: $0) }, seed: seed))
    }

    public var record: Record {
        state.withLock { s in
            Record(
                writes: s.writes, received: s.received, openAttempts: s.openAttempts, opens: s.opens,
                broadcastsSent: s.broadcastsSent, isScanning: s.firmware.mode == .scanning, isClaimed: s.claimed)
        }
    }

    // MARK: controlling the stick

    /// Pulls the stick out: the open transport fails from now on with `LIBUSB_ERROR_NO_DEVICE`.
    public func unplug() {
        state.withLock { s in
            s.plugged = false
            s.claimed = false
            s.generation += 1
        }
    }

    /// Plugs it back in, powered up and unconfigured, as a re-plugged stick is.
    public func replug() {
        state.withLock { s in
            s.plugged = true
            s.firmware = Firmware()
            s.outbound.removeAll()
            s.hostParser = ANTFrameParser()
        }
    }

    /// From now on, answers `messageID` with Channel Response `code` instead of carrying it out.
    public func refuse(_ messageID: UInt8, code: UInt8) {
        state.withLock { $0.answers[messageID] = .refuse(code) }
    }

    /// From now on, ignores `messageID` without answering.
    public func mute(_ messageID: UInt8) {
        state.withLock { $0.answers[messageID] = .silent }
    }

    /// Queues raw bytes on the IN endpoint, after the frames already queued.
    public func inject(_ bytes: [UInt8]) {
        state.withLock { $0.outbound += bytes }
    }

    /// Stops (or resumes) one sensor's broadcasts, as if it went out of range.
    public func setSilent(deviceNumber: UInt32, _ silent: Bool) {
        state.withLock { s in
            for i in s.sensors.indices where s.sensors[i].sensor.deviceNumber == deviceNumber {
                s.sensors[i].silent = silent
                s.sensors[i].nextDue = nil
            }
        }
    }

    /// The firmware closes the scan channel on its own (Channel Event 7), as after a radio fault.
    public func closeChannelSpontaneously() {
        state.withLock { s in
            guard s.firmware.mode == .scanning else { return }
            s.firmware.mode = .assigned
            s.queue(ANTMessage(id: ANTMessage.ID.channelResponse, payload: [0, 0x01, 7]))
        }
    }

    // MARK: ANTStickOpener

    public func open() async throws(SensorBackendError) -> any ANTTransport {
        let generation: Int? = state.withLock { s in
            s.openAttempts += 1
            guard s.plugged, !s.claimed else { return nil }
            s.opens += 1
            s.claimed = true
            return s.generation
        }
        guard let generation else {
            let (plugged, claimed) = state.withLock { ($0.plugged, $0.claimed) }
            if plugged && claimed {
                throw SensorBackendError(
                    backend: "ant", .unavailable, "ANT stick (simulated): another program holds it")
            }
            throw SensorBackendError(
                backend: "ant", .notFound, "no ANT stick found: the simulated stick is unplugged")
        }
        return Connection(stick: self, generation: generation)
    }

    /// One open of the stick; dead once the stick is unplugged.
    private final class Connection: ANTTransport {
        let stick: SimulatedANTStick
        let generation: Int

        init(stick: SimulatedANTStick, generation: Int) {
            self.stick = stick
            self.generation = generation
        }

        func write(_ bytes: [UInt8]) async throws(ANTTransportError) {
            try stick.hostWrote(bytes, generation: generation)
        }

        func read(timeout: Duration) async throws(ANTTransportError) -> [UInt8] {
            try await stick.hostReads(timeout: timeout, generation: generation)
        }

        func close() async {
            stick.state.withLock { s in
                if s.generation == generation { s.claimed = false }
            }
        }
    }

    // MARK: the stick's side

    private func hostWrote(_ bytes: [UInt8], generation: Int) throws(ANTTransportError) {
        let alive = state.withLock { s in
            guard s.plugged, s.generation == generation else { return false }
            s.writes.append(bytes)
            for message in s.hostParser.append(bytes) {
                s.received.append(message)
                s.firmwareHandles(message, now: .now)
            }
            return true
        }
        // LIBUSB_ERROR_NO_DEVICE, through the same mapping the libusb transport uses.
        guard alive else { throw .libusb(-4, "bulk OUT transfer to ANT stick (simulated)") }
    }

    private enum ReadStep {
        case gone
        case data([UInt8])
        case wait(ContinuousClock.Instant)
    }

    private func hostReads(timeout: Duration, generation: Int) async throws(ANTTransportError) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let now = ContinuousClock.now
            let step: ReadStep = state.withLock { s in
                guard s.plugged, s.generation == generation else { return .gone }
                s.radio(now: now, networkKey: networkKey)
                if !s.outbound.isEmpty { return .data(s.takeChunk(max: maxChunk)) }
                return .wait(min(deadline, s.nextDue ?? deadline))
            }
            switch step {
            case .gone:
                throw .libusb(-4, "bulk IN transfer from ANT stick (simulated)")
            case .data(let bytes):
                return bytes
            case .wait(let until):
                guard now < deadline else { return [] }
                do {
                    try await Task.sleep(until: max(until, now + .milliseconds(1)), clock: .continuous)
                } catch {
                    return []
                }
            }
        }
    }
}

// MARK: state

private enum Answer {
    case refuse(UInt8)
    case silent
}

private struct Firmware {
    enum Mode { case unassigned, assigned, open, scanning }
    var mode = Mode.unassigned
    var networkKeys: [UInt8: [UInt8]] = [:]
    var network: UInt8 = 0
    var channelID: [UInt8] = [0, 0, 0, 0]
    /// 66 (2466 MHz) is ANT's power-up default, not ANT+'s 57.
    var rfFrequency: UInt8 = 66
    var libConfig: UInt8 = 0
}

private struct SensorState {
    var sensor: SimulatedANTStick.Sensor
    var silent = false
    var sent = 0
    var nextDue: ContinuousClock.Instant?

    init(sensor: SimulatedANTStick.Sensor) {
        self.sensor = sensor
    }

    var period: Duration { .nanoseconds(Int64(sensor.period) * 1_000_000_000 / 32768) }
}

/// SplitMix64: small, seeded, good enough for read sizes.
private struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private struct State {
    var plugged = true
    var claimed = false
    /// Bumped by every unplug, so a transport from before it stays dead after a replug.
    var generation = 0
    var openAttempts = 0
    var opens = 0
    var firmware = Firmware()
    var hostParser = ANTFrameParser()
    var outbound: [UInt8] = []
    var sensors: [SensorState]
    var answers: [UInt8: Answer] = [:]
    var rng: SplitMix
    var writes: [[UInt8]] = []
    var received: [ANTMessage] = []
    var broadcastsSent = 0

    init(sensors: [SensorState], seed: UInt64) {
        self.sensors = sensors
        self.rng = SplitMix(state: seed)
    }

    /// When the next broadcast is due, if any sensor is on the air.
    var nextDue: ContinuousClock.Instant? {
        sensors.compactMap(\.nextDue).min()
    }

    mutating func queue(_ message: ANTMessage) {
        outbound += message.encode()
    }

    mutating func takeChunk(max: Int) -> [UInt8] {
        let size = min(outbound.count, 1 + Int(rng.next() % UInt64(max)))
        defer { outbound.removeFirst(size) }
        return Array(outbound[0..<size])
    }

    mutating func respond(_ message: ANTMessage, code: UInt8) {
        let channel = message.payload.first ?? 0
        queue(ANTMessage(id: ANTMessage.ID.channelResponse, payload: [channel, message.id, code]))
    }

    mutating func firmwareHandles(_ message: ANTMessage, now: ContinuousClock.Instant) {
        typealias ID = ANTMessage.ID
        switch answers[message.id] {
        case .refuse(let code): return respond(message, code: code)
        case .silent: return
        case nil: break
        }
        let p = message.payload
        switch message.id {
        case ID.resetSystem:
            firmware = Firmware()
            for i in sensors.indices { sensors[i].nextDue = nil }
            queue(ANTMessage(id: ID.startup, payload: [0x20]))
        case ID.networkKey:
            guard p.count == 9 else { return respond(message, code: 40) }
            guard p[0] < 8 else { return respond(message, code: 41) }
            firmware.networkKeys[p[0]] = Array(p[1...])
            respond(message, code: 0)
        case ID.assignChannel:
            guard p.count >= 3, p[0] == 0 else { return respond(message, code: 40) }
            guard firmware.mode == .unassigned else { return respond(message, code: 21) }
            guard p[2] < 8 else { return respond(message, code: 41) }
            firmware.network = p[2]
            firmware.mode = .assigned
            respond(message, code: 0)
        case ID.channelID:
            guard p.count == 5, p[0] == 0 else { return respond(message, code: 40) }
            guard firmware.mode != .unassigned else { return respond(message, code: 21) }
            firmware.channelID = Array(p[1...])
            respond(message, code: 0)
        case ID.rfFrequency:
            guard p.count == 2, p[0] == 0, p[1] <= 124 else { return respond(message, code: 40) }
            guard firmware.mode != .unassigned else { return respond(message, code: 21) }
            firmware.rfFrequency = p[1]
            respond(message, code: 0)
        case ID.channelPeriod, ID.searchTimeout:
            guard firmware.mode != .unassigned else { return respond(message, code: 21) }
            respond(message, code: 0)
        case ID.libConfig:
            guard p.count == 2 else { return respond(message, code: 40) }
            firmware.libConfig = p[1]
            respond(message, code: 0)
        case ID.enableExtendedMessages:
            guard p.count == 2 else { return respond(message, code: 40) }
            if p[1] != 0 { firmware.libConfig |= 0x80 }
            respond(message, code: 0)
        case ID.openRxScanMode:
            guard p.first == 0 else { return respond(message, code: 40) }
            guard firmware.mode == .assigned else { return respond(message, code: 21) }
            firmware.mode = .scanning
            respond(message, code: 0)
            for i in sensors.indices {
                let phase = Double(rng.next() % 1000) / 1000
                sensors[i].nextDue = now + sensors[i].period * phase
            }
        case ID.openChannel:
            guard firmware.mode == .assigned else { return respond(message, code: 21) }
            firmware.mode = .open
            respond(message, code: 0)
        case ID.closeChannel:
            guard firmware.mode == .open || firmware.mode == .scanning else { return respond(message, code: 21) }
            firmware.mode = .assigned
            respond(message, code: 0)
            queue(ANTMessage(id: ID.channelResponse, payload: [0, 0x01, 7]))
        default:
            respond(message, code: 40)
        }
    }

    /// Puts on the IN endpoint every broadcast due by `now` that this stick, as configured, hears.
    /// A host that stopped reading does not get a backlog: at most 4 messages per sensor are kept.
    mutating func radio(now: ContinuousClock.Instant, networkKey: [UInt8]) {
        guard firmware.mode == .scanning else { return }
        let tuned =
            firmware.networkKeys[firmware.network] == networkKey && firmware.rfFrequency == 57
        for i in sensors.indices {
            guard !sensors[i].silent else { continue }
            let period = sensors[i].period
            var due = sensors[i].nextDue ?? now + period
            var burst = 0
            while due <= now {
                if burst < 4, tuned, matches(sensors[i].sensor) {
                    queue(broadcast(sensors[i].sensor, page: sensors[i].sensor.page(sensors[i].sent)))
                    broadcastsSent += 1
                }
                sensors[i].sent += 1
                burst += 1
                due += period
            }
            sensors[i].nextDue = due
        }
    }

    func matches(_ sensor: SimulatedANTStick.Sensor) -> Bool {
        let id = firmware.channelID
        let number = UInt16(id[0]) | UInt16(id[1]) << 8
        return (number == 0 || number == UInt16(truncatingIfNeeded: sensor.deviceNumber))
            && (id[2] & 0x7F == 0 || id[2] & 0x7F == sensor.deviceType & 0x7F)
            && (id[3] == 0 || id[3] == sensor.transmissionTypeOnAir)
    }

    /// Broadcast Data with the extended bytes Lib Config asked for: channel ID (0x80), RSSI (0x40),
    /// RX timestamp (0x20), in that order.
    func broadcast(_ sensor: SimulatedANTStick.Sensor, page: [UInt8]) -> ANTMessage {
        var payload: [UInt8] = [0] + page
        let flags = firmware.libConfig & 0xE0
        if flags != 0 { payload.append(flags) }
        if flags & 0x80 != 0 {
            payload += [
                UInt8(sensor.deviceNumber & 0xFF), UInt8((sensor.deviceNumber >> 8) & 0xFF), sensor.deviceType,
                sensor.transmissionTypeOnAir,
            ]
        }
        if flags & 0x40 != 0 { payload += [0x20, UInt8(bitPattern: -60), 0] }
        if flags & 0x20 != 0 { payload += [0, 0] }
        return ANTMessage(id: ANTMessage.ID.broadcastData, payload: payload)
    }
}

import PulseGateCore
import Synchronization

/// ANT+ sensors through one ANT USB stick (Dynastream/Garmin 0fcf:1008 or 0fcf:1009), in continuous
/// scan mode: one stick hears every HRM, power meter and speed/cadence sensor in range at once.
///
/// Use it like this (the network key comes from configuration, as 16 hex digits; the ANT+ key is
/// licensed and never part of this repository):
/// ```swift
/// let backend = ANTBackend(networkKey: try ANTNetworkKey(hex: configuredKey))
/// let heard = try await backend.scan(seconds: 5)          // `pulsegate sensors scan`
/// try await backend.run(wanted: { station.accepts($0) }, events: { manager.handle($0) })
/// ```
/// With `networkKey: nil` (nothing configured) both calls throw `.notConfigured` before touching USB,
/// so a deployment without the key says so instead of listening to nothing.
///
/// What it reports: `.seen` the first time a device broadcasts (id `ant:<device number>/<device
/// type>`, profile from ``antProfileName(deviceType:)``); for wanted devices `.streaming` and then a
/// `.payload` with each 8-byte data page; `.lost` when a device was silent for
/// ``Configuration/silenceTimeout`` or the stick went away. A stick pulled out while running is looked
/// for every ``Configuration/reopenInterval`` and configured again when it is back; only a failure
/// before the first successful configuration is thrown.
public struct ANTBackend: SensorBackend {
    /// Timings and radio settings. The defaults suit a real stick; tests shorten them.
    public struct Configuration: Sendable {
        /// How long a device may stay silent before it is reported lost. ANT+ sensors broadcast about
        /// four times a second, so 5 s rides out a body between strap and stick without flapping.
        public var silenceTimeout: Duration
        /// How often a lost stick is looked for again (a re-plugged stick is back within one interval).
        public var reopenInterval: Duration
        /// How long each configuration command may wait for its Channel Response.
        public var responseTimeout: Duration
        /// How long to wait for Startup (0x6F) after Reset System before configuring anyway.
        public var startupTimeout: Duration
        /// The longest single USB read: bounds how late cancellation and silence are noticed.
        public var readTimeout: Duration
        /// The RF channel: 57 (2457 MHz) is ANT+.
        public var rfFrequency: UInt8

        public init(
            silenceTimeout: Duration = .seconds(5), reopenInterval: Duration = .seconds(2),
            responseTimeout: Duration = .seconds(1), startupTimeout: Duration = .seconds(1),
            readTimeout: Duration = .milliseconds(250), rfFrequency: UInt8 = 57
        ) {
            self.silenceTimeout = silenceTimeout
            self.reopenInterval = reopenInterval
            self.responseTimeout = responseTimeout
            self.startupTimeout = startupTimeout
            self.readTimeout = readTimeout
            self.rfFrequency = rfFrequency
        }
    }

    /// Counters since the backend value was made (copies share them), for `doctor` and metrics: a
    /// noisy USB link shows here rather than as missing samples.
    public struct Statistics: Sendable, Equatable {
        /// Frames dropped because their XOR checksum did not match.
        public var checksumErrors = 0
        /// Bytes skipped while looking for the next frame (garbage, the sync bytes of bad frames).
        public var discardedBytes = 0
        /// Broadcasts attributed to a device.
        public var broadcasts = 0
        /// Broadcasts that carried no channel ID (extended data off or truncated): unattributable.
        public var broadcastsWithoutChannelID = 0
        /// Completed configurations: 1 per start plus 1 per recovery.
        public var configurations = 0
        /// Sessions that ended because the stick failed, was pulled out or stopped scanning.
        public var stickFailures = 0
        /// The last failure (of a session or of a re-open attempt), for logs.
        public var lastError: String?

        public init() {}
    }

    public let name = "ant"
    /// `nil` when the configuration has none: the backend then refuses to start.
    public let networkKey: ANTNetworkKey?
    public let configuration: Configuration
    private let opener: any ANTStickOpener
    private let counters = Counters()

    /// - Parameters:
    ///   - networkKey: the ANT+ network key from configuration (`ANTNetworkKey(hex:)`), or `nil`.
    ///   - opener: how the stick is found; libusb unless a test passes a simulated stick.
    public init(
        networkKey: ANTNetworkKey?, configuration: Configuration = Configuration(),
        opener: any ANTStickOpener = LibUSBStickOpener()
    ) {
        self.networkKey = networkKey
        self.configuration = configuration
        self.opener = opener
    }

    public var statistics: Statistics { counters.snapshot }

    /// Opens the stick, configures scan mode, listens for `seconds` and returns every device heard
    /// (sorted by id), including those that went quiet before the end.
    public func scan(seconds: Double) async throws(SensorBackendError) -> [SensorAdvert] {
        let key = try requireKey()
        let transport = try await opener.open()
        var stick = ANTStick(transport: transport)
        var tracker = ANTDeviceTracker(silenceTimeout: configuration.silenceTimeout)
        var heard: [SensorID: SensorAdvert] = [:]
        let listen = Duration.seconds(seconds.isFinite && seconds > 0 ? seconds : 0)
        let outcome = await session(
            &stick, key: key, listen: listen, tracker: &tracker, wanted: { _ in false },
            events: { event in
                if case .seen(let advert) = event { heard[advert.id] = advert }
            }, configured: {})
        await transport.close()
        if case .failed(let failure) = outcome {
            counters.update { $0.lastError = failure.message }
            throw SensorBackendError(backend: name, .unavailable, failure.message)
        }
        return heard.values.sorted { $0.id.description < $1.id.description }
    }

    public func run(
        wanted: @escaping @Sendable (SensorAdvert) -> Bool, events: @escaping @Sendable (SensorEvent) -> Void
    ) async throws(SensorBackendError) {
        let key = try requireKey()
        var transport = try await opener.open()
        var tracker = ANTDeviceTracker(silenceTimeout: configuration.silenceTimeout)
        var everConfigured = false
        while true {
            var stick = ANTStick(transport: transport)
            let outcome = await session(
                &stick, key: key, listen: nil, tracker: &tracker, wanted: wanted, events: events,
                configured: { everConfigured = true })
            await transport.close()
            guard case .failed(let failure) = outcome else { return }
            counters.update {
                $0.stickFailures += 1
                $0.lastError = failure.message
            }
            for event in tracker.loseAll(reason: failure.message) { events(event) }
            if !everConfigured, case .refused = failure {
                throw SensorBackendError(backend: name, .unavailable, failure.message)
            }
            if !everConfigured, case .noAnswer = failure {
                throw SensorBackendError(backend: name, .unavailable, failure.message)
            }
            guard let next = await reopen() else { return }
            transport = next
        }
    }

    private func requireKey() throws(SensorBackendError) -> ANTNetworkKey {
        guard let networkKey else {
            throw SensorBackendError(
                backend: name, .notConfigured,
                "no ANT+ network key is configured: ANT+ sensors cannot be heard without it. The key is licensed "
                    + "through the ANT+ adopter agreement (thisisant.com) and is not shipped with pulsegate; "
                    + "configure it as 8 hex bytes")
        }
        return networkKey
    }

    /// Looks for the stick every `reopenInterval` until one opens; `nil` once the task is cancelled.
    private func reopen() async -> (any ANTTransport)? {
        while true {
            do {
                try await Task.sleep(for: configuration.reopenInterval)
            } catch {
                return nil
            }
            do throws(SensorBackendError) {
                return try await opener.open()
            } catch {
                counters.update { $0.lastError = error.message }
            }
        }
    }

    private enum Outcome {
        /// `listen` has passed (scan).
        case finished
        case cancelled
        case failed(ANTSessionFailure)
    }

    /// Configures the stick, then reads broadcasts for `listen` (forever when `nil`), until
    /// cancellation or a failure.
    private func session(
        _ stick: inout ANTStick, key: ANTNetworkKey, listen: Duration?,
        tracker: inout ANTDeviceTracker, wanted: (SensorAdvert) -> Bool, events: (SensorEvent) -> Void,
        configured: () -> Void
    ) async -> Outcome {
        let setup = ANTChannelSetup(networkKey: key, rfFrequency: configuration.rfFrequency)
        do throws(ANTSessionFailure) {
            try await setup.run(
                on: &stick, responseTimeout: configuration.responseTimeout,
                startupTimeout: configuration.startupTimeout)
        } catch {
            if case .cancelled = error { return .cancelled }
            return .failed(error)
        }
        counters.update { $0.configurations += 1 }
        configured()
        let deadline = listen.map { ContinuousClock.now + $0 }
        var counted = (checksumErrors: stick.parser.checksumErrors, discardedBytes: stick.parser.discardedBytes)
        var listening = ContinuousClock.now
        while true {
            if Task.isCancelled { return .cancelled }
            var wait = configuration.readTimeout
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                guard left > .zero else { return .finished }
                wait = min(wait, left)
            }
            let messages: [ANTMessage]
            do throws(ANTTransportError) {
                messages = try await stick.receive(timeout: wait)
            } catch {
                return .failed(.transport(error))
            }
            let parser = stick.parser
            let instant = ContinuousClock.now
            let time = Timestamp.now
            // A read takes at most `wait`; beyond that since the last pass, the host was not listening.
            let stall = listening.duration(to: instant) - wait
            if stall > .zero { tracker.forgive(stall) }
            var attributed = 0
            var unattributed = 0
            for message in messages {
                if let stop = Self.stopReason(message) { return .failed(.stopped(stop)) }
                guard message.id == ANTMessage.ID.broadcastData || message.id == ANTMessage.ID.acknowledgedData else {
                    continue
                }
                guard let broadcast = ANTBroadcast(message), ANTDeviceTracker.sensorID(of: broadcast) != nil else {
                    unattributed += 1
                    continue
                }
                attributed += 1
                for event in tracker.heard(broadcast, at: instant, time: time, wanted: wanted) { events(event) }
            }
            counters.update {
                $0.checksumErrors += parser.checksumErrors - counted.checksumErrors
                $0.discardedBytes += parser.discardedBytes - counted.discardedBytes
                $0.broadcasts += attributed
                $0.broadcastsWithoutChannelID += unattributed
            }
            counted = (parser.checksumErrors, parser.discardedBytes)
            for event in tracker.expire(now: instant) { events(event) }
            listening = ContinuousClock.now
        }
    }

    /// Why a scanning stick can no longer be trusted to scan, or `nil` for an ordinary message.
    static func stopReason(_ message: ANTMessage) -> String? {
        let p = message.payload
        if message.id == ANTMessage.ID.startup {
            return "the ANT stick restarted (Startup 0x6F) and must be configured again"
        }
        // Channel event (message id 0x01) code 7: EVENT_CHANNEL_CLOSED.
        if message.id == ANTMessage.ID.channelResponse, p.count >= 3, p[1] == 0x01, p[2] == 7 {
            return "the ANT stick closed its scan channel (event 7) and must be configured again"
        }
        return nil
    }

    /// The shared, lock-protected ``Statistics``: a backend is a value handed to several tasks.
    private final class Counters: Sendable {
        private let state = Mutex(Statistics())

        var snapshot: Statistics { state.withLock { $0 } }

        func update(_ body: (inout Statistics) -> Void) {
            state.withLock { body(&$0) }
        }
    }
}

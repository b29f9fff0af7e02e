import PulseGateCore
import Synchronization

/// The default BLE backend: a GATT client of bluetoothd over D-Bus (sd-bus from libsystemd), so it
/// shares the adapter with everything else on the host instead of taking the radio for itself.
///
/// `BlueZBackend(busAddress: nil)` talks to the system bus; tests pass the address of a private bus
/// with a mock `org.bluez` on it. Discovery is filtered on the fitness services (Heart Rate, Cycling
/// Power, CSC, RSC, Fitness Machine) over LE. A wanted device is connected, its Battery Level and
/// Device Information are read once per connection (`.payload` with `ble:2a19`, `.info`), and every
/// fitness characteristic that notifies is enabled with StartNotify; each Value change becomes a
/// `.payload` exactly as bluetoothd delivered it. A dropped link reports `.lost` and is tried again
/// after ``Reconnect`` delays; a device bluetoothd forgot is connected again once discovery hears
/// it. Cancelling the run stops notifications, disconnects the devices it connected and stops its
/// discovery session. If bluetoothd restarts, the run reloads its objects and carries on.
public struct BlueZBackend: SensorBackend {
    static let backendName = "bluez"

    /// How long to wait before connecting a lost sensor again.
    public struct Reconnect: Sendable, Equatable {
        /// The wait after a link that streamed went down; it doubles with each failed attempt.
        public var initial: Duration
        /// The longest wait, so a sensor coming back into range is picked up within it.
        public var maximum: Duration

        public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(30)) {
            self.initial = initial
            self.maximum = maximum
        }

        /// The wait after `failures` failed attempts in a row: between half and all of
        /// `initial × 2^failures` (at most ``maximum``), so sensors that dropped together do not all
        /// ask the controller to connect at the same instant.
        func delay(after failures: Int) -> Duration {
            let grown = initial * (1 << min(failures, 20))
            let ceiling = grown > maximum ? maximum : grown
            return ceiling / 2 + ceiling / 2 * Double.random(in: 0...1)
        }
    }

    public var name: String { Self.backendName }

    /// The D-Bus address (`unix:path=/run/dbus/system_bus_socket`); `nil` is the system bus.
    public var busAddress: String?
    /// The adapter to use (`hci0`, or an object path); `nil` takes the first one.
    public var adapter: String?
    public var reconnect: Reconnect

    public init(busAddress: String? = nil, adapter: String? = nil, reconnect: Reconnect = Reconnect()) {
        self.busAddress = busAddress
        self.adapter = adapter
        self.reconnect = reconnect
    }

    public func scan(seconds: Double) async throws(SensorBackendError) -> [SensorAdvert] {
        let heard = Mutex([SensorAdvert]())
        let record: @Sendable (SensorAdvert) -> Void = { advert in
            heard.withLock { list in
                if let index = list.firstIndex(where: { $0.id == advert.id }) {
                    list[index] = advert
                } else {
                    list.append(advert)
                }
            }
        }
        let bus = try await open()
        let session = BlueZSession(bus: bus, adapter: adapter) { event in
            if case .seen(let advert) = event { record(advert) }
        }
        let known: [(path: String, advert: SensorAdvert)]
        do {
            known = try await start(session)
        } catch {
            await bus.close()
            if Task.isCancelled { return [] }
            throw error
        }
        // Devices bluetoothd only remembers have no RSSI; those in range get one as they are heard.
        for (_, advert) in known where advert.rssi != nil { record(advert) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await signal in bus.signals { _ = await session.handle(signal) }
            }
            try? await Task.sleep(for: .milliseconds(Int64((max(0, seconds) * 1000).rounded())))
            group.cancelAll()
        }
        await session.stopDiscovery()
        await bus.close()
        return heard.withLock { $0 }
    }

    public func run(
        wanted: @escaping @Sendable (SensorAdvert) -> Bool, events: @escaping @Sendable (SensorEvent) -> Void
    ) async throws(SensorBackendError) {
        let bus = try await open()
        let session = BlueZSession(bus: bus, adapter: adapter, events: events)
        let known: [(path: String, advert: SensorAdvert)]
        do {
            known = try await start(session)
        } catch {
            await bus.close()
            if Task.isCancelled { return }  // cancelled while starting: nothing went wrong
            throw error
        }
        for (_, advert) in known { await session.report(.seen(advert)) }
        let reconnect = reconnect
        let failure = await withTaskGroup(of: Void.self) { group -> SensorBackendError? in
            var linked = Set<String>()
            var heard = known
            var signals = bus.signals.makeAsyncIterator()
            while true {
                for (path, advert) in heard where !linked.contains(path) && wanted(advert) {
                    linked.insert(path)
                    let link = BlueZLink(session: session, devicePath: path, sensor: advert.id, reconnect: reconnect)
                    group.addTask { await link.run() }
                }
                guard let signal = await signals.next() else { break }
                let outcome = await session.handle(signal)
                heard = outcome.adverts
                guard outcome.bluezReturned || outcome.adapterAdded else { continue }
                do throws(SensorBackendError) {
                    let known = try await restart(session)
                    for (_, advert) in known { await session.report(.seen(advert)) }
                    heard += known
                } catch {
                    group.cancelAll()
                    await group.waitForAll()
                    return error
                }
            }
            group.cancelAll()
            await group.waitForAll()
            if Task.isCancelled { return nil }
            return SensorBackendError(
                backend: name, .unavailable, "lost the connection to the D-Bus bus; is dbus still running?")
        }
        await session.stopDiscovery()
        await bus.close()
        if let failure { throw failure }
    }

    // MARK: start-up

    private func open() async throws(SensorBackendError) -> SDBusConnection {
        do {
            return try await SDBusConnection.open(address: busAddress, name: "pulsegate-bluez")
        } catch {
            throw Self.describe(.bus(error, stage: "connecting"), busAddress: busAddress)
        }
    }

    /// Matches, snapshot, adapter, discovery; returns the fitness devices already known.
    private func start(_ session: BlueZSession) async throws(SensorBackendError)
        -> [(path: String, advert: SensorAdvert)]
    {
        do throws(BlueZStartError) {
            do {
                try await session.subscribe()
            } catch {
                throw BlueZStartError.bus(error, stage: "subscribing to bluetoothd's signals")
            }
            let known = try await session.load(requireAdapter: true)
            try await session.startDiscovery()
            return known
        } catch {
            throw Self.describe(error, busAddress: busAddress)
        }
    }

    /// After bluetoothd came back or the adapter was plugged in again: reload and rediscover. An
    /// adapter that is not there yet is waited for (its InterfacesAdded brings the run back here).
    private func restart(_ session: BlueZSession) async throws(SensorBackendError)
        -> [(path: String, advert: SensorAdvert)]
    {
        do {
            let known = try await session.load(requireAdapter: false)
            try await session.startDiscovery()
            return known
        } catch {
            throw Self.describe(error, busAddress: busAddress)
        }
    }
}

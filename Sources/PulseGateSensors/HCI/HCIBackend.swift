import PulseGateCore
import Synchronization

/// The raw HCI backend: BLE sensors through libbluetooth and kernel sockets, for appliances that do
/// not run bluetoothd. It scans with raw HCI commands, connects an L2CAP LE socket on the ATT channel
/// and speaks ATT itself (``ATTClient``).
///
/// ```swift
/// let backend = HCIBackend(adapter: "hci0")
/// let heard = try await backend.scan(seconds: 5)
/// try await backend.run(wanted: { $0.profiles.contains("ble:2a37") }, events: { print($0) })
/// ```
///
/// The process needs CAP_NET_RAW and CAP_NET_ADMIN. With bluetoothd running on the same adapter use
/// the BlueZ backend instead: both would drive the controller's scanning.
public struct HCIBackend: SensorBackend {
    /// Radio and link settings; the defaults suit a kiosk with a handful of sensors.
    public struct Configuration: Sendable {
        /// Active scanning asks for scan responses, where most sensors put their name.
        public var activeScan = true
        /// Scan interval and window in units of 0.625 ms; equal values listen continuously.
        public var scanInterval: UInt16 = 0x0010
        public var scanWindow: UInt16 = 0x0010
        public var connectTimeout: Duration = .seconds(10)
        /// The ATT transaction timeout; the specification fixes it at 30 s.
        public var transactionTimeout: Duration = .seconds(30)
        public var backoff = ReconnectBackoff()
        /// Links held at once; USB controllers typically manage 5 to 10 LE links.
        public var maximumLinks = 5
        /// `seen` events for one device are at most this frequent (scanning without duplicate
        /// filtering hears a sensor many times a second), unless what it advertises changed.
        public var seenInterval: Duration = .seconds(1)

        public init() {}
    }

    public let name = "hci"
    /// `hci0`, as `hciconfig` and `btmgmt` name adapters.
    public let adapter: String
    public let configuration: Configuration
    let radio: any HCIRadio

    public init(adapter: String = "hci0", configuration: Configuration = .init()) {
        self.init(
            adapter: adapter, configuration: configuration,
            radio: LibBluetoothRadio(
                adapter: adapter, interval: configuration.scanInterval, window: configuration.scanWindow))
    }

    /// With another radio: tests hand in one whose links are socketpairs.
    package init(adapter: String, configuration: Configuration, radio: any HCIRadio) {
        self.adapter = adapter
        self.configuration = configuration
        self.radio = radio
    }

    public func scan(seconds: Double) async throws(SensorBackendError) -> [SensorAdvert] {
        let scan = try await radio.startScan(active: configuration.activeScan)
        let duration = Duration.milliseconds(Int64((max(0, seconds) * 1000).rounded()))
        var heard = HeardDevices()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: duration)
                await scan.stop()
            }
            for await report in scan.reports { heard.add(report) }
            group.cancelAll()
        }
        await scan.stop()
        return heard.adverts
    }

    public func run(
        wanted: @escaping @Sendable (SensorAdvert) -> Bool, events: @escaping @Sendable (SensorEvent) -> Void
    ) async throws(SensorBackendError) {
        var scan = try await radio.startScan(active: configuration.activeScan)
        let links = LinkTable()
        await withDiscardingTaskGroup { group in
            var restarts = 0
            while !Task.isCancelled {
                var heard = HeardDevices()
                var lastSeen: [LEAddress: (at: ContinuousClock.Instant, advert: SensorAdvert)] = [:]
                for await report in scan.reports {
                    let device = heard.add(report)
                    let advert = device.advert
                    let now = ContinuousClock.now
                    if let last = lastSeen[report.address], now - last.at < configuration.seenInterval,
                        last.advert.name == advert.name, last.advert.profiles == advert.profiles
                    {
                        // a repeat: neither time nor content says it is news
                    } else {
                        lastSeen[report.address] = (now, advert)
                        events(.seen(advert))
                    }
                    guard device.connectable, wanted(advert),
                        links.claim(report.address, now: now, maximumLinks: configuration.maximumLinks)
                    else { continue }
                    let address = report.address
                    let currentScan = scan
                    group.addTask {
                        await link(address, id: advert.id, scan: currentScan, links: links, events: events)
                    }
                }
                await scan.stop()
                if Task.isCancelled { break }
                // The adapter went away mid-run (unplugged, powered off): reopen it with backoff; the
                // links already up carry on on their own sockets until they drop.
                restarts += 1
                try? await Task.sleep(for: configuration.backoff.delay(afterFailures: restarts))
                do throws(SensorBackendError) {
                    scan = try await radio.startScan(active: configuration.activeScan)
                    restarts = 0
                } catch {
                    continue
                }
            }
            group.cancelAll()
        }
    }

    /// One sensor from connect to loss. The scan pauses while connecting (controllers that cannot scan
    /// and initiate at once refuse the connection otherwise); ``LinkTable`` lets one connect run at a
    /// time, which is all a controller initiates anyway.
    private func link(
        _ address: LEAddress, id: SensorID, scan: any HCIScan, links: LinkTable, events: @Sendable (SensorEvent) -> Void
    )
        async
    {
        await scan.pause()
        let fd: Int32
        do throws(SensorBackendError) {
            fd = try await radio.connect(to: address, timeout: configuration.connectTimeout)
        } catch {
            await scan.resume()
            links.ended(address, healthy: false, backoff: configuration.backoff)
            if !Task.isCancelled { events(.lost(id, reason: "connecting failed: \(error.message)")) }
            return
        }
        await scan.resume()
        links.connected(address)
        let started = ContinuousClock.now
        let client: ATTClient
        do throws(ATTError) {
            client = try ATTClient(fd: fd, transactionTimeout: configuration.transactionTimeout)
        } catch {
            links.ended(address, healthy: false, backoff: configuration.backoff)
            events(.lost(id, reason: error.message))
            return
        }
        let end = await Self.session(client: client, id: id, events: events)
        let healthy = end.streamed && ContinuousClock.now - started >= configuration.backoff.resetAfter
        links.ended(address, healthy: healthy, backoff: configuration.backoff)
        if !Task.isCancelled { events(.lost(id, reason: end.reason)) }
    }
}

extension HCIBackend {
    /// Which addresses have a link (or a connect under way) and when each may be tried again.
    final class LinkTable: Sendable {
        private struct Entry {
            var connecting = false
            var connected = false
            var failures = 0
            var notBefore: ContinuousClock.Instant?
        }

        private let state = Mutex([LEAddress: Entry]())

        /// Takes `address` for a connect when it has no link, its backoff has passed, no other connect
        /// is under way and there is room for one more link.
        func claim(_ address: LEAddress, now: ContinuousClock.Instant, maximumLinks: Int) -> Bool {
            state.withLock { table in
                let entry = table[address] ?? Entry()
                guard !entry.connecting, !entry.connected, entry.notBefore.map({ now >= $0 }) ?? true else {
                    return false
                }
                guard !table.values.contains(where: \.connecting),
                    table.values.count(where: { $0.connected }) < maximumLinks
                else { return false }
                table[address, default: Entry()].connecting = true
                return true
            }
        }

        func connected(_ address: LEAddress) {
            state.withLock { table in
                table[address, default: Entry()].connecting = false
                table[address, default: Entry()].connected = true
            }
        }

        /// The link (or the attempt) is over; `healthy` links start their backoff afresh.
        func ended(_ address: LEAddress, healthy: Bool, backoff: ReconnectBackoff) {
            state.withLock { table in
                var entry = table[address] ?? Entry()
                entry.connecting = false
                entry.connected = false
                entry.failures = healthy ? 1 : entry.failures + 1
                entry.notBefore = .now + backoff.delay(afterFailures: entry.failures)
                table[address] = entry
            }
        }

        /// When `address` may be tried again (tests).
        func retryTime(_ address: LEAddress) -> ContinuousClock.Instant? {
            state.withLock { $0[address]?.notBefore }
        }
    }
}

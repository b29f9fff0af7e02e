import PulseGateCore

/// One backend run against bluetoothd: the bus, the copy of its object tree, the characteristics
/// being streamed, and the single place events leave from, so `.seen`, `.streaming`, `.payload` and
/// `.lost` reach the caller in the order they happened.
actor BlueZSession {
    static let service = "org.bluez"
    private static let objectManager = "org.freedesktop.DBus.ObjectManager"
    private static let propertiesInterface = "org.freedesktop.DBus.Properties"

    /// The match rules, added before `GetManagedObjects` so no change between the snapshot and the
    /// first signal is lost (bleak's order). NameOwnerChanged tells a bluetoothd restart.
    static let matchRules = [
        "type='signal',sender='org.bluez',path='/',interface='\(objectManager)',member='InterfacesAdded'",
        "type='signal',sender='org.bluez',path='/',interface='\(objectManager)',member='InterfacesRemoved'",
        "type='signal',sender='org.bluez',interface='\(propertiesInterface)',member='PropertiesChanged',"
            + "path_namespace='/org/bluez'",
        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
            + "member='NameOwnerChanged',arg0='org.bluez'",
    ]

    /// A characteristic whose Value changes are forwarded.
    private struct Stream {
        var sensor: SensorID
        var profile: String
        /// Battery Level only: the last value reported, because BlueZ echoes a ReadValue as a Value
        /// change too and a level is a state, not an event to count twice.
        var lastValue: [UInt8]?
    }

    /// What one signal changed that the pump must act on.
    struct Outcome: Sendable {
        /// Fitness devices the signal told something about (new, RSSI, name, services).
        var adverts: [(path: String, advert: SensorAdvert)] = []
        /// bluetoothd (re)appeared on the bus: reload the tree and restart discovery.
        var bluezReturned = false
        /// bluetoothd left the bus.
        var bluezVanished = false
        /// The adapter in use was (re)added: discovery must be started on it again.
        var adapterAdded = false
    }

    let bus: SDBusConnection
    let conditions = BlueZConditions()
    private let requestedAdapter: String?
    private let emit: @Sendable (SensorEvent) -> Void
    private var objects = BlueZObjects()
    private var streams: [String: Stream] = [:]
    private(set) var adapterPath: String?

    init(bus: SDBusConnection, adapter: String?, events: @escaping @Sendable (SensorEvent) -> Void) {
        self.bus = bus
        self.requestedAdapter = adapter
        self.emit = events
    }

    // MARK: start-up

    /// Adds the match rules (before any snapshot is taken).
    func subscribe() async throws(DBusError) {
        for rule in Self.matchRules { try await bus.addMatch(rule) }
    }

    /// Takes the `GetManagedObjects` snapshot and picks the adapter. Returns the adverts of the
    /// fitness devices bluetoothd already knows. Without `requireAdapter` (bluetoothd just came back and
    /// may not have registered its adapters yet) a missing adapter is waited for instead.
    func load(requireAdapter: Bool) async throws(BlueZStartError) -> [(path: String, advert: SensorAdvert)] {
        let reply: DBusReply
        do {
            reply = try await bus.call(
                DBusMethodCall(
                    destination: Self.service, path: "/", interface: Self.objectManager, member: "GetManagedObjects"))
        } catch {
            throw .bus(error, stage: "listing bluetoothd's objects")
        }
        guard let managed = reply.values.first else { throw .bus(.closed, stage: "listing bluetoothd's objects") }
        objects.load(managed)
        conditions.update(objects)
        if let chosen = chooseAdapter(among: objects.adapters) {
            adapterPath = chosen
        } else if requireAdapter {
            throw .noAdapter(requested: requestedAdapter, found: objects.adapters)
        }
        guard let adapterPath else { return [] }
        return objects.devices(of: adapterPath).compactMap { path in advert(path).map { (path, $0) } }
    }

    private func chooseAdapter(among adapters: [String]) -> String? {
        guard let requestedAdapter else { return adapters.first }
        let path = requestedAdapter.hasPrefix("/") ? requestedAdapter : "/org/bluez/\(requestedAdapter)"
        return adapters.contains(path) ? path : nil
    }

    /// Filters discovery on the fitness services over LE and starts it. The filter only narrows what
    /// bluetoothd reports to this client's merge of all clients' filters, so adverts are re-checked.
    func startDiscovery() async throws(BlueZStartError) {
        guard let adapterPath, objects.properties(adapterPath, BlueZObjects.adapterInterface) != nil else { return }
        let filter = DBusValue.options([
            ("UUIDs", .strings(BlueZFitness.services.map(BlueZUUID.long))),
            ("Transport", .string("le")),
            ("DuplicateData", .bool(false)),
        ])
        do {
            try await bus.call(adapterCall("SetDiscoveryFilter", [filter]))
            try await bus.call(adapterCall("StartDiscovery"))
        } catch let error where error.name == "org.bluez.Error.InProgress" {
            // This client's discovery session is already running (the adapter came back twice).
        } catch {
            throw .bus(error, stage: "starting discovery on \(adapterPath)")
        }
    }

    /// Stops this client's discovery session; failures do not matter at that point.
    func stopDiscovery() async {
        guard adapterPath != nil else { return }
        _ = try? await bus.call(adapterCall("StopDiscovery"), timeout: .seconds(2), cancellable: false)
    }

    private func adapterCall(_ member: String, _ arguments: [DBusValue] = []) -> DBusMethodCall {
        DBusMethodCall(
            destination: Self.service, path: adapterPath ?? "/org/bluez/hci0", interface: BlueZObjects.adapterInterface,
            member: member, arguments: arguments)
    }

    // MARK: signals

    /// Applies one signal to the tree, forwards notifications, and reports what the pump must do.
    func handle(_ signal: DBusSignal) -> Outcome {
        var outcome = Outcome()
        let args = signal.arguments
        switch (signal.interface, signal.member) {
        case (Self.propertiesInterface, "PropertiesChanged"):
            guard args.count >= 2, let interface = args[0].string, let changed = args[1].dictionary else { break }
            if interface == BlueZObjects.characteristicInterface, let value = changed["Value"]?.bytes {
                forward(value, from: signal.path)
                if changed.count == 1 {  // a notification alone changes no state we track
                    conditions.applied(signal.sequence)
                    return outcome
                }
            }
            let invalidated = args.count >= 3 ? args[2].strings ?? [] : []
            guard objects.change(path: signal.path, interface: interface, changed: changed, invalidated: invalidated)
            else { break }
            if interface == BlueZObjects.deviceInterface,
                !Set(changed.keys).isDisjoint(with: ["RSSI", "Name", "Alias", "UUIDs"]),
                let advert = advert(signal.path)
            {
                outcome.adverts.append((signal.path, advert))
            }
        case (Self.objectManager, "InterfacesAdded"):
            guard args.count >= 2, let path = args[0].string else { break }
            objects.add(path: path, interfaces: args[1])
            let names = args[1].dictionary?.keys
            if names?.contains(BlueZObjects.deviceInterface) == true, let advert = advert(path) {
                outcome.adverts.append((path, advert))
            }
            if names?.contains(BlueZObjects.adapterInterface) == true, path == chooseAdapter(among: [path]) {
                // The adapter in use came back, or the first one appeared when none was required.
                let current = adapterPath.flatMap { objects.properties($0, BlueZObjects.adapterInterface) }
                if adapterPath == path || current == nil {
                    adapterPath = path
                    outcome.adapterAdded = true
                }
            }
        case (Self.objectManager, "InterfacesRemoved"):
            guard args.count >= 2, let path = args[0].string else { break }
            objects.remove(path: path, interfaces: args[1].strings ?? [])
        case ("org.freedesktop.DBus", "NameOwnerChanged"):
            guard args.count >= 3, args[0].string == Self.service else { break }
            if args[2].string?.isEmpty == false {
                outcome.bluezReturned = true
            } else {
                objects.removeAll()
                outcome.bluezVanished = true
            }
        default:
            break
        }
        conditions.update(objects, applied: signal.sequence)
        for (_, advert) in outcome.adverts { emit(.seen(advert)) }
        return outcome
    }

    private func forward(_ value: [UInt8], from path: String) {
        guard var stream = streams[path] else { return }
        if stream.profile == BlueZFitness.batteryProfile {
            if stream.lastValue == value { return }
            stream.lastValue = value
            streams[path] = stream
        }
        emit(.payload(stream.sensor, profile: stream.profile, bytes: value, at: .now))
    }

    /// The advert of a fitness device on the adapter in use, or `nil` for anything else: filters from
    /// other clients are merged into ours, so bluetoothd may report devices we did not ask for.
    func advert(_ path: String) -> SensorAdvert? {
        guard let adapterPath, path.hasPrefix(adapterPath + "/"), let device = objects.device(path),
            let address = device.address
        else { return nil }
        let services = Set(device.uuids.compactMap(BlueZUUID.short))
        guard !services.isDisjoint(with: BlueZFitness.services) else { return nil }
        return SensorAdvert(
            id: SensorID(transport: .ble, address: address), name: device.name, rssi: device.rssi,
            profiles: BlueZFitness.profiles(advertising: services), backend: BlueZBackend.backendName)
    }

    // MARK: links

    /// Starts forwarding Value changes of `path` as `profile` payloads of `sensor`.
    func addStream(_ path: String, sensor: SensorID, profile: String, lastValue: [UInt8]? = nil) {
        streams[path] = Stream(sensor: sensor, profile: profile, lastValue: lastValue)
    }

    func removeStreams(_ paths: [String]) {
        for path in paths { streams[path] = nil }
    }

    /// Sends one event from a link, in order with the signal-driven ones.
    func report(_ event: SensorEvent) {
        emit(event)
    }
}

/// Why a backend run could not start (or restart after bluetoothd came back).
enum BlueZStartError: Error, Sendable {
    case bus(DBusError, stage: String)
    case noAdapter(requested: String?, found: [String])
}

/// The backend's copy of bluetoothd's object tree, kept current from `GetManagedObjects` plus the
/// `InterfacesAdded`, `InterfacesRemoved` and `PropertiesChanged` signals, the way bleak's manager
/// does it: every decision (is the device connected, are its services resolved, which object is the
/// Heart Rate Measurement characteristic) reads this copy instead of asking bluetoothd again.
struct BlueZObjects: Sendable {
    typealias Properties = [String: DBusValue]

    static let adapterInterface = "org.bluez.Adapter1"
    static let deviceInterface = "org.bluez.Device1"
    static let serviceInterface = "org.bluez.GattService1"
    static let characteristicInterface = "org.bluez.GattCharacteristic1"

    /// path → interface → properties.
    private(set) var objects: [String: [String: Properties]] = [:]

    /// Merges a `GetManagedObjects` reply (`a{oa{sa{sv}}}`).
    mutating func load(_ managed: DBusValue) {
        for (path, interfaces) in managed.dictionary ?? [:] { add(path: path, interfaces: interfaces) }
    }

    /// Applies `InterfacesAdded(o, a{sa{sv}})`; interfaces already known have their properties merged.
    mutating func add(path: String, interfaces: DBusValue) {
        for (interface, properties) in interfaces.dictionary ?? [:] {
            objects[path, default: [:]][interface, default: [:]].merge(properties.dictionary ?? [:]) { $1 }
        }
    }

    /// Applies `InterfacesRemoved(o, as)`.
    mutating func remove(path: String, interfaces: [String]) {
        for interface in interfaces { objects[path]?[interface] = nil }
        if objects[path]?.isEmpty == true { objects[path] = nil }
    }

    /// Applies `PropertiesChanged(s, a{sv}, as)`. Returns `false` (and changes nothing) for an object
    /// or interface that is not known yet: its `InterfacesAdded` will carry the full set.
    @discardableResult
    mutating func change(path: String, interface: String, changed: Properties, invalidated: [String]) -> Bool {
        guard objects[path]?[interface] != nil else { return false }
        objects[path]?[interface]?.merge(changed) { $1 }
        for name in invalidated { objects[path]?[interface]?[name] = nil }
        return true
    }

    /// Forgets everything (bluetoothd went away).
    mutating func removeAll() { objects.removeAll() }

    func properties(_ path: String, _ interface: String) -> Properties? { objects[path]?[interface] }

    /// The adapters' paths, sorted (`/org/bluez/hci0` first).
    var adapters: [String] {
        objects.filter { $0.value[Self.adapterInterface] != nil }.keys.sorted()
    }

    /// The devices under `adapter`, sorted by path.
    func devices(of adapter: String) -> [String] {
        let prefix = adapter + "/"
        return objects.filter { $0.key.hasPrefix(prefix) && $0.value[Self.deviceInterface] != nil }.keys.sorted()
    }

    /// A device's state as the backend needs it, or `nil` when the object is gone.
    func device(_ path: String) -> BlueZDevice? {
        guard let properties = properties(path, Self.deviceInterface) else { return nil }
        return BlueZDevice(path: path, properties: properties)
    }

    /// The GATT characteristics below `device`, each with its 16-bit UUID when it is a SIG one.
    func characteristics(of device: String) -> [BlueZCharacteristic] {
        let prefix = device + "/"
        var out = [BlueZCharacteristic]()
        for (path, interfaces) in objects where path.hasPrefix(prefix) {
            guard let properties = interfaces[Self.characteristicInterface],
                let uuid = properties["UUID"]?.string
            else { continue }
            let service = properties["Service"]?.string
            let serviceUUID = service.flatMap { self.properties($0, Self.serviceInterface)?["UUID"]?.string }
            out.append(
                BlueZCharacteristic(
                    path: path, uuid: uuid.lowercased(), serviceUUID: serviceUUID?.lowercased(),
                    flags: properties["Flags"]?.strings ?? []))
        }
        return out.sorted { $0.path < $1.path }
    }
}

/// The Device1 properties the backend reads.
struct BlueZDevice: Sendable, Equatable {
    var path: String
    var address: String?
    var name: String?
    var rssi: Int?
    /// Lower-case 128-bit UUIDs, from advertising and later from resolved services.
    var uuids: [String]
    var connected: Bool
    var servicesResolved: Bool

    init(path: String, properties: BlueZObjects.Properties) {
        self.path = path
        address = properties["Address"]?.string?.uppercased()
        name = properties["Name"]?.string ?? properties["Alias"]?.string
        rssi = properties["RSSI"]?.int
        uuids = (properties["UUIDs"]?.strings ?? []).map { $0.lowercased() }
        connected = properties["Connected"]?.bool ?? false
        servicesResolved = properties["ServicesResolved"]?.bool ?? false
    }
}

/// One GattCharacteristic1 object.
struct BlueZCharacteristic: Sendable, Equatable {
    var path: String
    /// Lower-case 128-bit UUID.
    var uuid: String
    var serviceUUID: String?
    var flags: [String]

    /// The 16-bit SIG id (`2a37`) when the UUID is on the Bluetooth base UUID, else `nil`.
    var shortUUID: String? { BlueZUUID.short(uuid) }

    var canNotify: Bool { flags.contains("notify") || flags.contains("indicate") }
    var canRead: Bool { flags.contains("read") }
}

/// The Bluetooth base UUID, both ways.
enum BlueZUUID {
    private static let baseSuffix = "-0000-1000-8000-00805f9b34fb"

    /// `180d` → `0000180d-0000-1000-8000-00805f9b34fb`.
    static func long(_ short: String) -> String { "0000\(short.lowercased())\(baseSuffix)" }

    /// `0000180d-0000-1000-8000-00805f9b34fb` → `180d`; `nil` for a vendor UUID.
    static func short(_ uuid: String) -> String? {
        let lower = uuid.lowercased()
        guard lower.count == 36, lower.hasPrefix("0000"), lower.hasSuffix(baseSuffix) else { return nil }
        return String(lower.dropFirst(4).prefix(4))
    }
}

import PulseGateCore

/// A sensor as every backend names it: the backend plus its own address (a Bluetooth address, or an
/// ANT+ device number with its device type), so the same strap heard over BlueZ and raw HCI stays one
/// id per path and stations can name it in config.
public struct SensorID: Sendable, Hashable, CustomStringConvertible {
    /// `ble` (BlueZ or raw HCI: the same radio identity) or `ant`.
    public var transport: SourceRef.Kind
    /// `AA:BB:CC:DD:EE:FF` for BLE; `<device number>/<device type>` for ANT+ (`12345/120`).
    public var address: String

    public init(transport: SourceRef.Kind, address: String) {
        self.transport = transport
        self.address = address
    }

    public var description: String { "\(transport.rawValue):\(address)" }

    /// Reads the configuration form: `ble:AA:BB:CC:DD:EE:FF` (case-insensitive, kept upper case) or
    /// `ant:<device number 0-65535>/<device type 1-127>`.
    public init?(parsing text: String) {
        let lower = text.lowercased()
        if lower.hasPrefix("ble:") {
            let address = text.dropFirst(4).uppercased()
            let parts = address.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 6, parts.allSatisfy({ $0.count == 2 && UInt8($0, radix: 16) != nil }) else {
                return nil
            }
            self.init(transport: .ble, address: address)
        } else if lower.hasPrefix("ant:") {
            let parts = lower.dropFirst(4).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let number = UInt16(parts[0]), let type = UInt8(parts[1]), (1...127).contains(type)
            else { return nil }
            self.init(transport: .ant, address: "\(number)/\(type)")
        } else {
            return nil
        }
    }
}

/// What a backend heard while scanning: enough to show in `pulsegate sensors scan` and to decide
/// whether a station wants the sensor.
public struct SensorAdvert: Sendable, Equatable {
    public var id: SensorID
    public var name: String?
    public var rssi: Int?
    /// The profiles the sensor offers, as ``ProfileDecoders`` names them (`ble:2a37`, `ant:hrm`).
    public var profiles: [String]
    /// `bluez`, `hci` or `ant`.
    public var backend: String

    public init(id: SensorID, name: String?, rssi: Int?, profiles: [String], backend: String) {
        self.id = id
        self.name = name
        self.rssi = rssi
        self.profiles = profiles
        self.backend = backend
    }
}

/// Everything a backend reports, in one ordered stream per backend. The sensor manager owns the state
/// machine (seen → connecting → streaming → lost → reconnecting); backends only say what happened.
public enum SensorEvent: Sendable, Equatable {
    /// An advertisement (BLE) or the first broadcast of a device (ANT+ scan mode), repeated with fresh
    /// RSSI as the backend hears it again.
    case seen(SensorAdvert)
    /// A link is up and notifications for `profiles` are enabled (BLE); ANT+ has no link and reports
    /// this once the first broadcast of a device is decoded.
    case streaming(SensorID, profiles: [String])
    /// One raw payload of one profile (a characteristic value, an 8-byte ANT+ data page), exactly as
    /// received, with the time it arrived.
    case payload(SensorID, profile: String, bytes: [UInt8], at: Timestamp)
    /// What the Device Information service or ANT+ common pages told about the device.
    case info(SensorID, SourceRef.Device)
    /// The link dropped or the device went quiet; the backend will try again on its own (`reason` is
    /// for logs and `doctor`).
    case lost(SensorID, reason: String)
}

/// A way to hear sensors: BlueZ over D-Bus, raw HCI/L2CAP, an ANT+ USB stick. Each runs until it is
/// cancelled, reconnecting by itself; failures to start (no adapter, no stick, no permission) are
/// thrown as ``SensorBackendError`` with an operator-facing message.
public protocol SensorBackend: Sendable {
    /// `bluez`, `hci` or `ant`.
    var name: String { get }

    /// Scans for `seconds` and returns what was heard (the `sensors scan` command).
    func scan(seconds: Double) async throws(SensorBackendError) -> [SensorAdvert]

    /// Streams events for the sensors `wanted` accepts (by advert) until the task is cancelled:
    /// connects, enables notifications, reconnects with backoff after a loss.
    func run(wanted: @escaping @Sendable (SensorAdvert) -> Bool, events: @escaping @Sendable (SensorEvent) -> Void)
        async throws(SensorBackendError)
}

/// Why a backend cannot work on this host, said so an installer knows what to do.
public struct SensorBackendError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// No Bluetooth adapter, no ANT stick: not an error for a cloud-only deployment.
        case notFound = "not_found"
        /// The device exists but the process may not use it (udev rule, capabilities, polkit).
        case permission
        /// bluetoothd or the bus is not reachable, a stick stopped answering.
        case unavailable
        /// The backend is not configured (no ANT+ network key).
        case notConfigured = "not_configured"
    }

    public let backend: String
    public let code: Code
    public let message: String

    public init(backend: String, _ code: Code, _ message: String) {
        self.backend = backend
        self.code = code
        self.message = message
    }

    public var description: String { "\(backend): \(message)" }
}

/// Where a sample came from: enough to tell two devices apart and to find the vendor's record again.
///
/// Every field except `kind` is optional because sources know different things: a BLE strap has an
/// address but no vendor record, a cloud vendor has a record id but maybe no serial number.
public struct SourceRef: Sendable, Hashable {
    /// The path a sample took into pulsegate.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case ble, ant, cloud, file, app
    }

    public var kind: Kind
    /// Cloud vendor id (`strava`, `polar`, …) — the adapter's folder name.
    public var vendor: String?
    /// On-device data store for `app` sources (`apple_health`, `health_connect`).
    public var app: String?
    /// Kiosk station id, when the sample was heard by a kiosk.
    public var station: String?
    public var device: Device?
    /// The vendor's own id of the record this sample came from (activity, workout, measure group).
    public var recordID: String?

    /// The physical device that measured.
    public struct Device: Sendable, Hashable {
        public var manufacturer: String?
        public var model: String?
        public var serial: String?
        /// Bluetooth address or ANT device number.
        public var address: String?
        public var firmware: String?

        public init(
            manufacturer: String? = nil, model: String? = nil, serial: String? = nil, address: String? = nil,
            firmware: String? = nil
        ) {
            self.manufacturer = manufacturer
            self.model = model
            self.serial = serial
            self.address = address
            self.firmware = firmware
        }

        var isEmpty: Bool {
            manufacturer == nil && model == nil && serial == nil && address == nil && firmware == nil
        }
    }

    public init(
        kind: Kind, vendor: String? = nil, app: String? = nil, station: String? = nil, device: Device? = nil,
        recordID: String? = nil
    ) {
        self.kind = kind
        self.vendor = vendor
        self.app = app
        self.station = station
        self.device = device
        self.recordID = recordID
    }

    /// A short label for per-source metrics: `cloud:strava`, `app:health_connect`, `ble`.
    public var metricLabel: String {
        if let vendor { return "\(kind.rawValue):\(vendor)" }
        if let app { return "\(kind.rawValue):\(app)" }
        return kind.rawValue
    }
}

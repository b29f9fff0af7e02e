import PulseGateCore

/// Turns the broadcasts a scanning stick hears into ``SensorEvent``s: which devices are on the air,
/// which of them the caller wants, and which went quiet.
///
/// ANT+ has no connection to lose, so "lost" means silence: a device that sent nothing for
/// `silenceTimeout` is reported lost and forgotten; if it speaks again it is seen again, and `wanted`
/// is asked again (a station's bindings may have changed meanwhile).
struct ANTDeviceTracker {
    private struct Device {
        var advert: SensorAdvert
        var profile: String?
        var wanted: Bool
        var lastHeard: ContinuousClock.Instant
    }

    let silenceTimeout: Duration
    private var devices: [SensorID: Device] = [:]

    init(silenceTimeout: Duration) {
        self.silenceTimeout = silenceTimeout
    }

    /// The devices on the air, in no particular order.
    var adverts: [SensorAdvert] { devices.values.map(\.advert) }

    /// The id a broadcast's sender is known by: the 20-bit device number and the device type without
    /// the pairing bit (`12345/120`), or `nil` when the broadcast carries no channel ID.
    static func sensorID(of broadcast: ANTBroadcast) -> SensorID? {
        guard let number = broadcast.extendedDeviceNumber, let type = broadcast.deviceType else { return nil }
        return SensorID(transport: .ant, address: "\(number)/\(type & 0x7F)")
    }

    /// Events for one broadcast: `.seen` (and, when wanted, `.streaming`) the first time a device is
    /// heard, then a `.payload` for every broadcast of a wanted device with a profile pulsegate
    /// decodes. A broadcast without channel ID yields nothing (the caller counts it).
    mutating func heard(
        _ broadcast: ANTBroadcast, at instant: ContinuousClock.Instant, time: Timestamp,
        wanted: (SensorAdvert) -> Bool
    ) -> [SensorEvent] {
        guard let id = Self.sensorID(of: broadcast), let type = broadcast.deviceType else { return [] }
        var events: [SensorEvent] = []
        var device: Device
        if let known = devices[id] {
            device = known
        } else {
            let profile = antProfileName(deviceType: type)
            // ANT+ devices broadcast no name and, without Lib Config flag 0x40, no RSSI.
            let advert = SensorAdvert(
                id: id, name: nil, rssi: nil, profiles: profile.map { [$0] } ?? [], backend: "ant")
            device = Device(advert: advert, profile: profile, wanted: false, lastHeard: instant)
            device.wanted = profile != nil && wanted(advert)
            events.append(.seen(advert))
            if device.wanted { events.append(.streaming(id, profiles: advert.profiles)) }
        }
        device.lastHeard = instant
        devices[id] = device
        if device.wanted, let profile = device.profile {
            events.append(.payload(id, profile: profile, bytes: broadcast.page, at: time))
        }
        return events
    }

    /// Moves every device's last broadcast `stall` later: the time the host did not read (a starved
    /// process, a slow event consumer) is not time the devices were silent, and a stalled kiosk must
    /// not report its whole floor lost.
    mutating func forgive(_ stall: Duration) {
        for id in devices.keys { devices[id]?.lastHeard += stall }
    }

    /// `.lost` for every device silent for longer than `silenceTimeout` at `now`.
    mutating func expire(now: ContinuousClock.Instant) -> [SensorEvent] {
        var events: [SensorEvent] = []
        for (id, device) in devices where device.lastHeard.duration(to: now) > silenceTimeout {
            devices[id] = nil
            events.append(.lost(id, reason: "no broadcast for \(silenceTimeout)"))
        }
        return events.sorted { $0.sortKey < $1.sortKey }
    }

    /// `.lost` for every device, because the stick itself is gone or being reconfigured.
    mutating func loseAll(reason: String) -> [SensorEvent] {
        defer { devices.removeAll() }
        return devices.keys.map { SensorEvent.lost($0, reason: reason) }.sorted { $0.sortKey < $1.sortKey }
    }
}

extension SensorEvent {
    /// Orders a batch of `.lost` events by address so their order does not depend on hashing.
    fileprivate var sortKey: String {
        if case .lost(let id, _) = self { return id.address }
        return ""
    }
}

import Foundation
import PulseGateCore
import Synchronization

/// A kiosk station: a bike or treadmill slot with the sensors that belong to it, as configured.
public struct Station: Sendable, Equatable {
    public var id: String
    public var name: String
    /// The station's sensors, in default priority order.
    public var sensors: [SensorID]
    /// Per metric (`heart_rate`, `power`…), the sensors to take it from, best first. A metric not
    /// listed follows the order of ``sensors``.
    public var priority: [String: [SensorID]]
    /// Metres, for speed from wheel revolutions.
    public var wheelCircumference: Double

    public init(
        id: String, name: String, sensors: [SensorID], priority: [String: [SensorID]] = [:],
        wheelCircumference: Double = 2.096
    ) {
        self.id = id
        self.name = name
        self.sensors = sensors
        self.priority = priority
        self.wheelCircumference = wheelCircumference
    }

    /// The sensors that may supply `metric`, best first.
    func ranking(_ metric: String) -> [SensorID] { priority[metric] ?? sensors }

    /// The subject samples carry while no member is bound.
    public var unboundSubject: String { "station:\(id)" }
}

/// A member bound to a station until `expiresAt` (the kiosk board or the member's app made it).
public struct Binding: Sendable, Equatable {
    public var station: String
    public var subject: String
    /// What the kiosk board shows; never sent downstream.
    public var displayName: String?
    public var expiresAt: Timestamp

    public init(station: String, subject: String, displayName: String? = nil, expiresAt: Timestamp) {
        self.station = station
        self.subject = subject
        self.displayName = displayName
        self.expiresAt = expiresAt
    }
}

/// Where a sensor is in its life; the manager moves it on events and on silence.
public enum SensorState: String, Sendable, Equatable {
    /// Heard (an advertisement, a first broadcast), not streaming.
    case seen
    /// Payloads arrive.
    case streaming
    /// The link dropped or the sensor went silent; values are no longer current.
    case lost
    /// Heard again after a loss; streaming resumes with its next payload.
    case reconnecting
}

/// One sensor as the registry knows it.
public struct SensorStatus: Sendable, Equatable {
    public var id: SensorID
    public var name: String?
    public var backend: String
    public var state: SensorState
    public var rssi: Int?
    public var battery: Int?
    public var device: SourceRef.Device?
    public var lastPayloadAt: Timestamp?
    /// Last value per metric name (for the kiosk board and `doctor`).
    public var lastValues: [String: Double]
    /// Payloads refused by the decoder (truncated, garbage): counted, never fatal.
    public var rejected: Int
    /// Losses since start (each dropped link or silence).
    public var losses: Int
}

/// What a station shows: its binding, and per metric the source in use and its latest value.
public struct StationStatus: Sendable, Equatable {
    public var station: Station
    public var binding: Binding?
    public var metrics: [String: MetricStatus]

    public struct MetricStatus: Sendable, Equatable {
        public var value: Double
        public var unit: String
        public var at: Timestamp
        public var source: SensorID
        /// True when a lower-priority sensor supplies the metric because the preferred one is quiet.
        public var failover: Bool
    }
}

/// The live side of the kiosk: one state machine per sensor (seen → streaming → lost → reconnecting),
/// a registry with last values, RSSI and battery, stations with their bindings, and the choice of
/// source per metric. Backends feed it ``SensorEvent``s; it hands canonical samples to `emit`.
///
/// Thread-safe: backends call ``handle(_:)`` from their own threads; state sits behind one mutex and
/// `emit` is called outside it, in event order per sensor.
public final class SensorManager: Sendable {
    /// How long a metric's preferred source may stay quiet before the next one takes over, and how
    /// long a sensor may stay silent before it counts as lost (ANT+ has no link to drop).
    public struct Timing: Sendable {
        public var failoverAfter: Duration
        public var lostAfter: Duration
        public init(failoverAfter: Duration = .seconds(3), lostAfter: Duration = .seconds(5)) {
            self.failoverAfter = failoverAfter
            self.lostAfter = lostAfter
        }
    }

    private struct Tracked {
        var status: SensorStatus
        var decoders: [String: any ProfileDecoder] = [:]
        /// Per metric, when this sensor last supplied it.
        var lastByMetric: [String: Timestamp] = [:]
    }

    private struct State {
        var sensors: [SensorID: Tracked] = [:]
        var bindings: [String: Binding] = [:]
        var current: [String: [String: StationStatus.MetricStatus]] = [:]
        var refusedSamples = 0
    }

    public let stations: [Station]
    private let stationsBySensor: [SensorID: [Station]]
    private let timing: Timing
    private let emit: @Sendable ([Sample]) -> Void
    private let rejected: @Sendable (SensorID, String, DecodeError) -> Void
    private let clock: @Sendable () -> Timestamp
    private let state = Mutex(State())

    /// - Parameters:
    ///   - emit: receives each payload's samples (already attributed to the station and its bound
    ///     subject); it must not block for long: it runs on the backend's thread.
    ///   - rejected: told about each payload the decoder refused (sensor, profile, reason), for the
    ///     log and a metric; the count is also kept per sensor.
    public init(
        stations: [Station], timing: Timing = Timing(), clock: @escaping @Sendable () -> Timestamp = { .now },
        rejected: @escaping @Sendable (SensorID, String, DecodeError) -> Void = { _, _, _ in },
        emit: @escaping @Sendable ([Sample]) -> Void
    ) {
        self.rejected = rejected
        self.stations = stations
        var index = [SensorID: [Station]]()
        for station in stations {
            for sensor in Set(station.sensors + station.priority.values.flatMap { $0 }) {
                index[sensor, default: []].append(station)
            }
        }
        self.stationsBySensor = index
        self.timing = timing
        self.clock = clock
        self.emit = emit
    }

    /// Whether a backend should connect to the sensor behind `advert`: only sensors a station names.
    public func wants(_ advert: SensorAdvert) -> Bool { stationsBySensor[advert.id] != nil }

    // MARK: events

    public func handle(_ event: SensorEvent) {
        switch event {
        case .seen(let advert):
            state.withLock { s in
                var t = s.sensors[advert.id] ?? Tracked(status: Self.fresh(advert.id, backend: advert.backend))
                t.status.name = advert.name ?? t.status.name
                t.status.rssi = advert.rssi ?? t.status.rssi
                if t.status.state == .lost { t.status.state = .reconnecting }
                s.sensors[advert.id] = t
            }
        case .streaming(let id, _):
            state.withLock { s in
                var t = s.sensors[id] ?? Tracked(status: Self.fresh(id, backend: id.transport.rawValue))
                t.status.state = .streaming
                s.sensors[id] = t
            }
        case .info(let id, let device):
            state.withLock { s in
                var t = s.sensors[id] ?? Tracked(status: Self.fresh(id, backend: id.transport.rawValue))
                t.status.device = device
                s.sensors[id] = t
            }
        case .lost(let id, _):
            state.withLock { s in
                guard var t = s.sensors[id], t.status.state != .lost else { return }
                t.status.state = .lost
                t.status.losses += 1
                // Derived values (cadence from revolutions) must not bridge the gap.
                t.decoders = [:]
                s.sensors[id] = t
            }
        case .payload(let id, let profile, let bytes, let at):
            let samples = decode(id, profile: profile, bytes: bytes, at: at)
            if !samples.isEmpty { emit(samples) }
        }
    }

    /// Marks sensors that stayed silent past `lostAfter` as lost (call about once a second).
    public func tick() {
        let now = clock()
        state.withLock { s in
            for (id, var t) in s.sensors where t.status.state == .streaming || t.status.state == .reconnecting {
                guard let last = t.status.lastPayloadAt,
                    now.millisecondsSinceEpoch - last.millisecondsSinceEpoch > timing.lostAfter.milliseconds
                else { continue }
                t.status.state = .lost
                t.status.losses += 1
                t.decoders = [:]
                s.sensors[id] = t
            }
            for (station, binding) in s.bindings where binding.expiresAt < now { s.bindings[station] = nil }
        }
    }

    private func decode(_ id: SensorID, profile: String, bytes: [UInt8], at: Timestamp) -> [Sample] {
        let now = clock()
        var refusal: DecodeError?
        defer { if let refusal { rejected(id, profile, refusal) } }
        return state.withLock { s -> [Sample] in
            var t = s.sensors[id] ?? Tracked(status: Self.fresh(id, backend: id.transport.rawValue))
            defer { s.sensors[id] = t }
            let stations = stationsBySensor[id] ?? []
            guard
                var active = t.decoders[profile]
                    ?? ProfileDecoders.make(profile, wheelCircumference: stations.first?.wheelCircumference ?? 2.096)
            else {
                t.status.rejected += 1
                refusal = DecodeError(profile: profile, "no decoder for this profile")
                return []
            }
            let readings: [Reading]
            do {
                readings = try active.decode(bytes, at: at)
            } catch {
                t.status.rejected += 1
                t.decoders[profile] = active
                refusal = (error as? DecodeError) ?? DecodeError(profile: profile, "\(error)")
                return []
            }
            t.decoders[profile] = active
            t.status.lastPayloadAt = at
            if t.status.state != .streaming { t.status.state = .streaming }

            var out = [Sample]()
            for reading in readings {
                switch reading {
                case .battery(let percent):
                    t.status.battery = percent
                case .measurement(let metric, let value, let unit, let quality, let offset):
                    t.status.lastValues[metric.name] = value
                    t.lastByMetric[metric.name] = at
                    for station in stations {
                        guard let failover = choose(id, metric: metric.name, station: station, at: at, s: s)
                        else { continue }
                        let subject = s.bindings[station.id].flatMap { $0.expiresAt < now ? nil : $0.subject }
                        let source = SourceRef(
                            kind: id.transport, station: station.id,
                            device: Self.device(t.status.device, address: id.address))
                        do {
                            out.append(
                                try Sample(
                                    subject: subject ?? station.unboundSubject, metric: metric, value: .number(value),
                                    unit: unit, start: at.adding(milliseconds: offset), source: source,
                                    quality: failover ? quality.union(.failover) : quality, now: now))
                            s.current[station.id, default: [:]][metric.name] = StationStatus.MetricStatus(
                                value: value, unit: unit, at: at, source: id, failover: failover)
                        } catch {
                            s.refusedSamples += 1
                        }
                    }
                }
            }
            return out
        }
    }

    /// Whether `id` supplies `metric` for `station` now: it does when no better-ranked sensor has
    /// supplied the metric within `failoverAfter`. Returns whether that is a failover — a better
    /// sensor has supplied this metric before and is now quiet or lost — or `nil` when `id` is not
    /// chosen. A sensor the ranking does not name never supplies the metric.
    private func choose(_ id: SensorID, metric: String, station: Station, at: Timestamp, s: State) -> Bool? {
        let ranking = station.ranking(metric)
        guard let rank = ranking.firstIndex(of: id) else { return nil }
        var failover = false
        for better in ranking[..<rank] {
            guard let tracked = s.sensors[better], let last = tracked.lastByMetric[metric] else { continue }
            let fresh = at.millisecondsSinceEpoch - last.millisecondsSinceEpoch <= timing.failoverAfter.milliseconds
            if fresh && tracked.status.state != .lost { return nil }
            failover = true
        }
        return failover
    }

    // MARK: bindings

    /// Binds `subject` to `station` until `expiresAt`, replacing an earlier binding.
    public func bind(_ binding: Binding) throws(SensorManagerError) {
        guard stations.contains(where: { $0.id == binding.station }) else {
            throw SensorManagerError("unknown station '\(binding.station)'")
        }
        guard binding.expiresAt > clock() else { throw SensorManagerError("the binding's expiry is in the past") }
        state.withLock { $0.bindings[binding.station] = binding }
    }

    /// Ends the binding of `station`; returns it, or `nil` when there was none.
    @discardableResult
    public func unbind(_ station: String) -> Binding? {
        state.withLock { $0.bindings.removeValue(forKey: station) }
    }

    // MARK: views

    public func sensors() -> [SensorStatus] {
        state.withLock { s in s.sensors.values.map(\.status) }.sorted { $0.id.description < $1.id.description }
    }

    public func stationStatuses() -> [StationStatus] {
        let now = clock()
        return state.withLock { s in
            stations.map { station in
                let binding = s.bindings[station.id].flatMap { $0.expiresAt < now ? nil : $0 }
                return StationStatus(station: station, binding: binding, metrics: s.current[station.id] ?? [:])
            }
        }
    }

    /// Readings the schema refused (out-of-range values), across sensors.
    public var refusedSamples: Int { state.withLock { $0.refusedSamples } }

    private static func fresh(_ id: SensorID, backend: String) -> SensorStatus {
        SensorStatus(
            id: id, name: nil, backend: backend, state: .seen, rssi: nil, battery: nil, device: nil,
            lastPayloadAt: nil, lastValues: [:], rejected: 0, losses: 0)
    }

    private static func device(_ info: SourceRef.Device?, address: String) -> SourceRef.Device {
        var d = info ?? SourceRef.Device()
        d.address = address
        return d
    }
}

/// A refused binding or station request, said for the API's error body.
public struct SensorManagerError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Duration {
    fileprivate var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import PulseGateCore
import PulseGateSensors

/// Kiosk stations and their bindings: staff or a member's app bind a member to a bike for a while, so
/// the station's samples carry the member as their subject.
public struct KioskController: Sendable {
    let manager: SensorManager
    let keyring: APIKeyring
    let maxBinding: Duration

    public init(manager: SensorManager, keyring: APIKeyring, maxBinding: Duration) {
        self.manager = manager
        self.keyring = keyring
        self.maxBinding = maxBinding
    }

    public func register(on router: Router<some RequestContext>) {
        router.post("/v1/kiosk/bindings") { request, _ in
            _ = try keyring.authorize(request, scope: .kioskBind)
            return try await bind(request)
        }
        router.delete("/v1/kiosk/bindings/{station}") { request, context in
            _ = try keyring.authorize(request, scope: .kioskBind)
            let station = try context.parameters.require("station")
            guard manager.stations.contains(where: { $0.id == station }) else {
                throw APIError(.notFound, code: "unknown_station", message: "no station '\(station)' is configured")
            }
            guard manager.unbind(station) != nil else {
                throw APIError(.notFound, code: "not_bound", message: "station '\(station)' has no binding")
            }
            return Response(status: .noContent)
        }
        router.get("/v1/kiosk/stations") { request, _ in
            _ = try keyring.authorize(request, scope: .kioskBind)
            let sensors = Dictionary(manager.sensors().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            return try Response.json(
                StationList(stations: manager.stationStatuses().map { StationView($0, sensors: sensors) }))
        }
    }

    struct BindRequest: Decodable {
        let station: String
        let subject: String
        let displayName: String?
        let expiresInSeconds: Double?
        enum CodingKeys: String, CodingKey {
            case station, subject, displayName = "display_name", expiresInSeconds = "expires_in_seconds"
        }
    }

    func bind(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 16 * 1024)
        let input: BindRequest
        do {
            input = try JSONDecoder().decode(BindRequest.self, from: Data(body.readableBytesView))
        } catch {
            throw APIError(
                .badRequest, code: "malformed_body",
                message: "expected {\"station\": …, \"subject\": …, \"display_name\"?: …, \"expires_in_seconds\"?: …}")
        }
        guard !input.subject.isEmpty, input.subject.utf8.count <= 200 else {
            throw APIError(.badRequest, code: "invalid_subject", message: "subject must be 1–200 bytes")
        }
        if let name = input.displayName, name.isEmpty || name.count > 80 {
            throw APIError(.badRequest, code: "invalid_display_name", message: "display_name must be 1–80 characters")
        }
        let maxSeconds = Double(maxBinding.components.seconds)
        let seconds = input.expiresInSeconds ?? min(3600, maxSeconds)
        guard seconds.isFinite, seconds >= 60, seconds <= maxSeconds else {
            throw APIError(
                .badRequest, code: "invalid_expiry",
                message: "expires_in_seconds must be 60…\(Int(maxSeconds)) (kiosk.max_binding_hours)")
        }
        let binding = Binding(
            station: input.station, subject: input.subject, displayName: input.displayName,
            expiresAt: Timestamp.now.adding(milliseconds: Int64(seconds * 1000)))
        do {
            try manager.bind(binding)
        } catch {
            guard manager.stations.contains(where: { $0.id == input.station }) else {
                throw APIError(
                    .notFound, code: "unknown_station", message: "no station '\(input.station)' is configured")
            }
            throw APIError(.badRequest, code: "invalid_binding", message: error.message)
        }
        return try Response.json(BindingView(binding), status: .created)
    }
}

struct BindingView: Encodable {
    let station: String
    let subject: String
    let displayName: String?
    let expiresAt: String
    init(_ b: Binding) {
        station = b.station
        subject = b.subject
        displayName = b.displayName
        expiresAt = b.expiresAt.description
    }
    enum CodingKeys: String, CodingKey {
        case station, subject, displayName = "display_name", expiresAt = "expires_at"
    }
}

struct StationList: Encodable {
    let stations: [StationView]
}

/// A station as the kiosk board and staff tools see it: binding, current value per metric with the
/// sensor it came from, and each sensor's state, signal and battery.
struct StationView: Encodable {
    let id: String
    let name: String
    let binding: BindingView?
    let metrics: [String: MetricView]
    let sensors: [SensorView]

    init(_ s: StationStatus, sensors known: [SensorID: SensorStatus]) {
        id = s.station.id
        name = s.station.name
        binding = s.binding.map(BindingView.init)
        metrics = s.metrics.mapValues(MetricView.init)
        sensors = s.station.sensors.map { id in
            known[id].map(SensorView.init)
                ?? SensorView(
                    id: id.description, name: nil, backend: nil, state: "unseen", rssi: nil, battery: nil,
                    lastPayloadAt: nil, rejected: 0, losses: 0)
        }
    }

    struct MetricView: Encodable {
        let value: Double
        let unit: String
        let at: String
        let source: String
        let failover: Bool
        init(_ m: StationStatus.MetricStatus) {
            value = m.value
            unit = m.unit
            at = m.at.description
            source = m.source.description
            failover = m.failover
        }
    }

    struct SensorView: Encodable {
        let id: String
        let name: String?
        let backend: String?
        let state: String
        let rssi: Int?
        let battery: Int?
        let lastPayloadAt: String?
        let rejected: Int
        let losses: Int
        enum CodingKeys: String, CodingKey {
            case id, name, backend, state, rssi, battery, rejected, losses, lastPayloadAt = "last_payload_at"
        }
        init(
            id: String, name: String?, backend: String?, state: String, rssi: Int?, battery: Int?,
            lastPayloadAt: String?, rejected: Int, losses: Int
        ) {
            self.id = id
            self.name = name
            self.backend = backend
            self.state = state
            self.rssi = rssi
            self.battery = battery
            self.lastPayloadAt = lastPayloadAt
            self.rejected = rejected
            self.losses = losses
        }
        init(_ s: SensorStatus) {
            self.init(
                id: s.id.description, name: s.name, backend: s.backend, state: s.state.rawValue, rssi: s.rssi,
                battery: s.battery, lastPayloadAt: s.lastPayloadAt?.description, rejected: s.rejected,
                losses: s.losses)
        }
    }
}

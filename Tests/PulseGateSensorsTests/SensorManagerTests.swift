import PulseGateCore
import PulseGateSensors
import Synchronization
import Testing

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let ms = Mutex<Int64>(1_795_000_000_000)
    var now: Timestamp { Timestamp(millisecondsSinceEpoch: ms.withLock { $0 }) }
    func advance(_ millis: Int64) { ms.withLock { $0 += millis } }
}

final class Collected: Sendable {
    private let samples = Mutex<[Sample]>([])
    func add(_ batch: [Sample]) { samples.withLock { $0 += batch } }
    var all: [Sample] { samples.withLock { $0 } }
    func take() -> [Sample] {
        samples.withLock { s in
            defer { s = [] }; return s
        }
    }
}

@Suite struct SensorManagerTests {
    static let strap = SensorID(transport: .ble, address: "C0:FF:EE:00:00:01")
    static let trainer = SensorID(transport: .ble, address: "C0:FF:EE:00:00:02")
    static let antStrap = SensorID(transport: .ant, address: "4711/120")
    static let stranger = SensorID(transport: .ble, address: "C0:FF:EE:00:00:09")

    static let bike = Station(
        id: "bike-1", name: "Bike 1", sensors: [strap, trainer],
        priority: ["heart_rate": [strap, antStrap, trainer]])

    /// Heart Rate Measurement, 8-bit value, no RR.
    static func hr(_ bpm: UInt8) -> [UInt8] { [0x00, bpm] }
    /// FTMS Indoor Bike Data: speed (inverted bit 0 clear), power (bit 6) and heart rate (bit 9).
    static func bikeData(power: Int16, bpm: UInt8) -> [UInt8] {
        let p = UInt16(bitPattern: power)
        return [0x40, 0x02, 0xE8, 0x03, UInt8(p & 0xFF), UInt8(p >> 8), bpm]
    }

    func harness() -> (SensorManager, ManualClock, Collected) {
        let clock = ManualClock()
        let out = Collected()
        let manager = SensorManager(stations: [Self.bike], clock: { clock.now }, emit: { out.add($0) })
        return (manager, clock, out)
    }

    @Test func samplesCarryTheStationAndTheBoundSubject() throws {
        let (m, clock, out) = harness()
        m.handle(.streaming(Self.strap, profiles: ["ble:2a37"]))
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(120), at: clock.now))
        let unbound = try #require(out.take().first)
        #expect(unbound.subject == "station:bike-1")
        #expect(unbound.source.station == "bike-1" && unbound.source.kind == .ble)
        #expect(unbound.source.device?.address == Self.strap.address)

        try m.bind(Binding(station: "bike-1", subject: "member-7", expiresAt: clock.now.adding(milliseconds: 60_000)))
        clock.advance(1000)
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(121), at: clock.now))
        #expect(out.take().map(\.subject) == ["member-7"])

        clock.advance(60_000)
        m.tick()
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(122), at: clock.now))
        #expect(out.take().map(\.subject) == ["station:bike-1"], "an expired binding ends by itself")
    }

    @Test func aPreferredSourceWinsAndAQuietOneFailsOver() throws {
        let (m, clock, out) = harness()
        // Both the strap and the trainer report heart rate; the strap is preferred.
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(130), at: clock.now))
        m.handle(.payload(Self.trainer, profile: "ble:2ad2", bytes: Self.bikeData(power: 200, bpm: 128), at: clock.now))
        let first = out.take()
        let heart = first.filter { $0.metric == .heartRate }
        #expect(heart.map(\.value.number) == [130], "the trainer's heart rate is not used beside the strap's")
        #expect(first.contains { $0.metric == .power && $0.value.number == 200 && !$0.quality.contains(.failover) })

        // The strap goes quiet: after failoverAfter the trainer's heart rate is taken, marked.
        clock.advance(3500)
        m.handle(.payload(Self.trainer, profile: "ble:2ad2", bytes: Self.bikeData(power: 210, bpm: 129), at: clock.now))
        let failover = out.take().filter { $0.metric == .heartRate }
        #expect(failover.map(\.value.number) == [129])
        #expect(failover.first?.quality.contains(.failover) == true)
        #expect(failover.first?.source.device?.address == Self.trainer.address, "source names the sensor used")
        let status = try #require(m.stationStatuses().first?.metrics["heart_rate"])
        #expect(status.failover && status.source == Self.trainer)

        // The strap returns: it takes over again at once.
        clock.advance(500)
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(131), at: clock.now))
        m.handle(.payload(Self.trainer, profile: "ble:2ad2", bytes: Self.bikeData(power: 220, bpm: 127), at: clock.now))
        #expect(out.take().filter { $0.metric == .heartRate }.map(\.value.number) == [131])
    }

    @Test func aSensorThatDisappearsLeavesAGapAndComesBackWithItsBinding() throws {
        let (m, clock, out) = harness()
        try m.bind(
            Binding(station: "bike-1", subject: "member-9", expiresAt: clock.now.adding(milliseconds: 3_600_000)))
        for _ in 0..<4 {
            m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(140), at: clock.now))
            clock.advance(250)
        }
        #expect(out.take().count == 4)
        m.handle(.lost(Self.strap, reason: "link dropped"))
        #expect(m.sensors().first { $0.id == Self.strap }?.state == .lost)
        clock.advance(10_000)
        m.tick()
        #expect(out.take().isEmpty, "nothing is invented while the sensor is away")
        m.handle(.seen(SensorAdvert(id: Self.strap, name: "HRM", rssi: -60, profiles: ["ble:2a37"], backend: "bluez")))
        #expect(m.sensors().first { $0.id == Self.strap }?.state == .reconnecting)
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(142), at: clock.now))
        let back = out.take()
        #expect(back.map(\.subject) == ["member-9"], "the station kept its binding")
        let strap = try #require(m.sensors().first { $0.id == Self.strap })
        #expect(strap.state == .streaming && strap.losses == 1 && strap.rssi == -60)
    }

    @Test func silenceCountsAsALossForBroadcastSensors() throws {
        let clock = ManualClock()
        let station = Station(id: "row-2", name: "Rower 2", sensors: [Self.antStrap])
        let m = SensorManager(stations: [station], clock: { clock.now }, emit: { _ in })
        let page: [UInt8] = [0x00, 0xFF, 0xFF, 0xFF, 0x00, 0x04, 0x01, 0x48]
        m.handle(.payload(Self.antStrap, profile: "ant:hrm", bytes: page, at: clock.now))
        #expect(m.sensors().first?.state == .streaming)
        clock.advance(6000)
        m.tick()
        #expect(m.sensors().first?.state == .lost)
    }

    @Test func garbageIsCountedNeverFatalAndStrangersAreNotRecorded() throws {
        let clock = ManualClock()
        let out = Collected()
        let reasons = Mutex<[String]>([])
        let m = SensorManager(
            stations: [Self.bike], clock: { clock.now },
            rejected: { _, profile, error in
                reasons.withLock { $0.append("\(profile): \(error.reason)") }
            }, emit: { out.add($0) })
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: [0x01], at: clock.now))
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: [], at: clock.now))
        m.handle(.payload(Self.strap, profile: "ble:9999", bytes: [0x00, 0x50], at: clock.now))
        m.handle(.payload(Self.stranger, profile: "ble:2a37", bytes: Self.hr(90), at: clock.now))
        #expect(out.all.isEmpty)
        #expect(m.sensors().first { $0.id == Self.strap }?.rejected == 3)
        #expect(reasons.withLock { $0 }.count == 3, "each refusal is reported for the log and the metric")
        #expect(reasons.withLock { $0 }.last == "ble:9999: no decoder for this profile")
        #expect(!m.wants(SensorAdvert(id: Self.stranger, name: nil, rssi: nil, profiles: [], backend: "bluez")))
        #expect(m.wants(SensorAdvert(id: Self.strap, name: nil, rssi: nil, profiles: [], backend: "bluez")))
        // A zero heart rate (no skin contact) is refused by the schema, counted, not emitted.
        m.handle(.payload(Self.strap, profile: "ble:2a37", bytes: Self.hr(0), at: clock.now))
        #expect(out.all.isEmpty && m.refusedSamples == 1)
    }

    @Test func bindingsAreCheckedAndReplaceable() throws {
        let (m, clock, _) = harness()
        #expect(throws: SensorManagerError.self) {
            try m.bind(Binding(station: "nope", subject: "m", expiresAt: clock.now.adding(milliseconds: 1000)))
        }
        #expect(throws: SensorManagerError.self) {
            try m.bind(Binding(station: "bike-1", subject: "m", expiresAt: clock.now.adding(milliseconds: -1)))
        }
        try m.bind(Binding(station: "bike-1", subject: "a", expiresAt: clock.now.adding(milliseconds: 1000)))
        try m.bind(Binding(station: "bike-1", subject: "b", expiresAt: clock.now.adding(milliseconds: 1000)))
        #expect(m.stationStatuses().first?.binding?.subject == "b")
        #expect(m.unbind("bike-1")?.subject == "b")
        #expect(m.unbind("bike-1") == nil)
    }
}

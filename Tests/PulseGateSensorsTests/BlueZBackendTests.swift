import Foundation
import PulseGateCore
import PulseGateTestSupport
import Synchronization
import Testing

@testable import PulseGateSensors

/// The BlueZ backend against a mock bluetoothd (Tests/e2e/mockbluez) on a private dbus-daemon: the
/// D-Bus conversation, the events it yields, the reconnects, and the errors an installer sees.
@Suite(.timeLimit(.minutes(1)))
struct BlueZBackendTests {
    static let hr = MockBlueZ.heartRateStrap
    static let power = MockBlueZ.powerMeter
    /// Reconnect quickly so the tests do not wait out production delays.
    static let fast = BlueZBackend.Reconnect(initial: .milliseconds(100), maximum: .milliseconds(400))

    // sensor-vectors.md: HR4, HR10, HR5, HR9 (Heart Rate Measurement); CP1, CP7, CP8, CP3 (Cycling Power).
    static let heartRate = ["1E5532002100", "105A00080010", "1F0101320101000201FFFF"]
    static let heartRateAfterReconnect = "0E4B8000"
    static let cyclingPower = ["0000D204", "2000700190010004", "310894016E393000000010900100081500"]
    static let cyclingPowerAfterReturn = "0000FA00"

    static func bytes(_ hex: String) -> [UInt8] { BLE.bytes(hex) }

    struct Running {
        let bus: PrivateDBus
        let mock: MockBlueZ
        let log: EventLog
        let task: Task<Void, any Error>

        func stop() async {
            task.cancel()
            _ = await task.result
            mock.stop()
            bus.stop()
        }
    }

    /// A private bus, the mock on it, and a backend run collecting events.
    static func start(
        wanted: @escaping @Sendable (SensorAdvert) -> Bool = { _ in true },
        before: (MockBlueZ) async throws -> Void = { _ in }
    ) async throws -> Running {
        let bus = try PrivateDBus.start()
        let mock = try await MockBlueZ.start(on: bus)
        try await before(mock)
        let log = EventLog()
        let backend = BlueZBackend(busAddress: bus.address, reconnect: fast)
        let task = Task { try await backend.run(wanted: wanted, events: { log.record($0) }) }
        return Running(bus: bus, mock: mock, log: log, task: task)
    }

    @Test func streamsBothSensorsAndReconnectsAfterDropsAndRemovals() async throws {
        let hr = Self.hr
        let power = Self.power
        let run = try await Self.start(before: { mock in
            // Another client discovering without a filter makes bluetoothd report a keyboard as well.
            try await mock.send("other-client-discovery")
            try await mock.waitFor("event found \(MockBlueZ.keyboard)")
        })
        let log = run.log
        let mock = run.mock

        try await log.wait("both streaming") { $0.streaming(hr) == 1 && $0.streaming(power) == 1 }
        let filter = try #require(mock.lines.first { $0.hasPrefix("call SetDiscoveryFilter") })
        for service in ["180d", "1818", "1816", "1814", "1826"] {
            #expect(filter.contains(BlueZUUID.long(service)), "\(filter)")
        }
        #expect(filter.contains(#""Transport": "le""#), "\(filter)")
        #expect(filter.contains(#""DuplicateData": false"#), "\(filter)")
        #expect(mock.count("call StartDiscovery") == 1)

        for hex in Self.heartRate { try await mock.send("notify \(hr) 2a37 \(hex)") }
        for hex in Self.cyclingPower { try await mock.send("notify \(power) 2a63 \(hex)") }
        try await log.wait("the notifications") {
            $0.payloads(hr, "ble:2a37").count == 3 && $0.payloads(power, "ble:2a63").count == 3
        }
        // Battery notifications are forwarded too, once per new level.
        try await mock.send("notify \(hr) 2a19 54")
        try await log.wait("the battery notification") { $0.payloads(hr, "ble:2a19").count == 2 }

        // The strap's link drops: lost, then connected and streaming again by itself.
        try await mock.send("drop \(hr)")
        try await log.wait("the strap back") { $0.lost(hr) == 1 && $0.streaming(hr) == 2 }
        try await mock.send("notify \(hr) 2a37 \(Self.heartRateAfterReconnect)")
        try await log.wait("a notification after the reconnect") { $0.payloads(hr, "ble:2a37").count == 4 }

        // bluetoothd forgets the power meter (out of range); it is connected again once found again.
        try await mock.send("remove \(power)")
        try await log.wait("the meter lost") { $0.lost(power) == 1 }
        try await mock.send("appear \(power)")
        try await log.wait("the meter back") { $0.streaming(power) == 2 }
        try await mock.send("notify \(power) 2a63 \(Self.cyclingPowerAfterReturn)")
        try await log.wait("a notification after the return") { $0.payloads(power, "ble:2a63").count == 4 }

        await run.stop()
        let events = log.events

        // Exactly the bytes sent, in order, on the right sensor and profile.
        let heartRateSent: [[UInt8]] = (Self.heartRate + [Self.heartRateAfterReconnect]).map(Self.bytes)
        let powerSent: [[UInt8]] = (Self.cyclingPower + [Self.cyclingPowerAfterReturn]).map(Self.bytes)
        #expect(events.payloads(hr, "ble:2a37") == heartRateSent)
        #expect(events.payloads(power, "ble:2a63") == powerSent)
        // Battery: read on each connection (85 %), then the notified 84 %; the power meter's is read only.
        #expect(events.payloads(hr, "ble:2a19") == [[0x55], [0x54], [0x55]])
        #expect(events.payloads(power, "ble:2a19") == [[0x40], [0x40]])

        // The strap's story, in order.
        let hrID = SensorID(transport: .ble, address: hr)
        let info = SourceRef.Device(
            manufacturer: "Mock Sensors Ltd", model: "HRM-1", serial: "SN-0001", address: hr, firmware: "1.2.3")
        let story = events.filter { if case .seen = $0 { false } else { $0.sensor == hrID } }
        func payload(_ profile: String, _ bytes: [UInt8]) -> SensorEvent {
            .payload(hrID, profile: profile, bytes: bytes, at: .zero)
        }
        let connected: [SensorEvent] = [
            payload("ble:2a19", [0x55]), .info(hrID, info), .streaming(hrID, profiles: ["ble:2a37", "ble:2a19"]),
        ]
        var expected = connected
        expected += Self.heartRate.map { payload("ble:2a37", Self.bytes($0)) }
        expected += [payload("ble:2a19", [0x54]), .lost(hrID, reason: "disconnected")]
        expected += connected
        expected += [payload("ble:2a37", Self.bytes(Self.heartRateAfterReconnect))]
        #expect(story.map(\.withoutTime) == expected.map(\.withoutTime))

        let powerID = SensorID(transport: .ble, address: power)
        #expect(
            events.contains(
                .info(powerID, SourceRef.Device(manufacturer: "Mock Power Co", model: "PM-2", address: power))))
        #expect(events.contains(.streaming(powerID, profiles: ["ble:2a63"])))
        // Whether the link saw Connected=false or the device object go first depends on timing.
        let powerLost = events.compactMap { if case .lost(powerID, let reason) = $0 { reason } else { nil } }
        #expect(powerLost.count == 1)
        #expect(powerLost.allSatisfy { ["disconnected", "device removed by bluetoothd"].contains($0) }, "\(powerLost)")

        // Adverts: both fitness devices with their names and profiles; never the keyboard.
        let seen = events.compactMap { if case .seen(let advert) = $0 { advert } else { nil } }
        #expect(!seen.contains { $0.id.address == MockBlueZ.keyboard })
        #expect(seen.contains { $0.id == hrID && $0.name == "HRM Mock" && $0.profiles.contains("ble:2a37") })
        #expect(
            seen.contains {
                $0.id == powerID && $0.name == "Power Mock" && $0.rssi == -70 && $0.profiles == ["ble:2a63"]
            })
        #expect(seen.allSatisfy { $0.backend == "bluez" })

        // Two connections each; a clean goodbye on cancel.
        #expect(mock.count("call Connect \(hr)") == 2)
        #expect(mock.count("call Connect \(power)") == 2)
        try await mock.waitFor("call StopDiscovery")
        #expect(mock.count("call StopNotify \(hr) 2a37") == 1)
        #expect(mock.count("call StopNotify \(hr) 2a19") == 1)
        #expect(mock.count("call StopNotify \(power) 2a63") == 1)
        #expect(mock.count("call Disconnect \(hr)") == 1)
        #expect(mock.count("call Disconnect \(power)") == 1)
        // StartNotify only where the characteristic notifies: not the meter's read-only battery.
        #expect(mock.count("call StartNotify \(power) 2a19") == 0)
    }

    @Test func onlyWantedSensorsAreConnected() async throws {
        let power = Self.power
        let run = try await Self.start(wanted: { $0.id.address == power })
        try await run.log.wait("the meter streaming") { $0.streaming(power) == 1 }
        try await run.log.wait("the strap seen") { events in
            events.contains { if case .seen(let advert) = $0 { advert.id.address == Self.hr } else { false } }
        }
        #expect(run.mock.count("call Connect \(Self.hr)") == 0)
        await run.stop()
    }

    @Test func refusedConnectsAreRetriedWithBackoff() async throws {
        let hr = Self.hr
        let run = try await Self.start(
            wanted: { $0.id.address == hr },
            before: { mock in try await mock.send("refuse \(hr) 2") })
        try await run.log.wait("streaming after two refusals") { $0.streaming(hr) == 1 }
        let lost = run.log.events.compactMap { if case .lost(_, let reason) = $0 { reason } else { nil } }
        #expect(lost.count == 2)
        #expect(lost.allSatisfy { $0.hasPrefix("connect failed: org.bluez.Error.Failed") }, "\(lost)")
        #expect(run.mock.count("call Connect \(hr)") == 3)
        await run.stop()
    }

    @Test func bluetoothdRestartIsSurvived() async throws {
        let hr = Self.hr
        let run = try await Self.start(wanted: { $0.id.address == hr })
        try await run.log.wait("streaming") { $0.streaming(hr) == 1 }
        try await run.mock.send("vanish")
        try await run.log.wait("lost with bluetoothd") { $0.lost(hr) == 1 }
        try await run.mock.send("restart")
        try await run.log.wait("streaming after the restart") { $0.streaming(hr) == 2 }
        try await run.mock.send("notify \(hr) 2a37 \(Self.heartRate[0])")
        try await run.log.wait("a notification") { $0.payloads(hr, "ble:2a37") == [Self.bytes(Self.heartRate[0])] }
        #expect(run.mock.count("call StartDiscovery") >= 2)
        await run.stop()
    }

    @Test func cancellingAtOnceEndsCleanly() async throws {
        let bus = try PrivateDBus.start()
        defer { bus.stop() }
        let mock = try await MockBlueZ.start(on: bus)
        defer { mock.stop() }
        let backend = BlueZBackend(busAddress: bus.address)
        let task = Task { try await backend.run(wanted: { _ in true }, events: { _ in }) }
        task.cancel()
        let result = await task.result
        #expect(result.error == nil, "\(result)")
    }

    /// The bus thread sleeps in poll(2) while nothing happens: a streaming link costs no CPU between
    /// notifications.
    @Test func idleLinkCostsNoCPU() async throws {
        let hr = Self.hr
        let run = try await Self.start(wanted: { $0.id.address == hr })
        try await run.log.wait("streaming") { $0.streaming(hr) == 1 }
        let before = try #require(Self.busThreadsCPUSeconds())
        try await Task.sleep(for: .seconds(1))
        let used = try #require(Self.busThreadsCPUSeconds()) - before
        // A busy loop would burn the whole second; other tests' backends share the thread name.
        #expect(used < 0.15, "bus threads used \(used) s of CPU in an idle second")
        await run.stop()
    }

    /// User + system CPU seconds of this process's threads named like the backend's bus thread, or
    /// `nil` when there is none.
    static func busThreadsCPUSeconds() -> Double? {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var ticks = 0
        var found = false
        for task in tasks {
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
            guard comm.hasPrefix("pulsegate-bluez"),
                let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { continue }
            ticks += user + system
            found = true
        }
        return found ? Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK))) : nil
    }

    @Test func scanReportsFitnessDevicesOnly() async throws {
        let bus = try PrivateDBus.start()
        defer { bus.stop() }
        let mock = try await MockBlueZ.start(on: bus)
        defer { mock.stop() }
        try await mock.send("other-client-discovery")
        let adverts = try await BlueZBackend(busAddress: bus.address).scan(seconds: 0.5)
        #expect(Set(adverts.map(\.id.address)) == [Self.hr, Self.power])
        let strap = try #require(adverts.first { $0.id.address == Self.hr })
        #expect(strap.name == "HRM Mock")
        #expect(strap.rssi == -58)
        #expect(strap.profiles == ["ble:2a37"])
        try await mock.waitFor("call StopDiscovery")
        #expect(mock.count("call Connect") == 0)
    }

    // MARK: errors an installer sees

    @Test func busWithoutBluetoothdIsUnavailable() async throws {
        let bus = try PrivateDBus.start()
        defer { bus.stop() }
        let backend = BlueZBackend(busAddress: bus.address)
        let error = await #expect(throws: SensorBackendError.self) {
            try await backend.run(wanted: { _ in true }, events: { _ in })
        }
        #expect(error?.code == .unavailable)
        #expect(error?.backend == "bluez")
        #expect(error?.message.contains("bluetoothd is not running") == true, "\(String(describing: error))")
        #expect(error?.message.contains("systemctl enable --now bluetooth") == true)
        let scanError = await #expect(throws: SensorBackendError.self) { try await backend.scan(seconds: 1) }
        #expect(scanError?.code == .unavailable)
    }

    @Test func missingBusIsUnavailable() async throws {
        let directory = temporaryDirectory("nobus")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let backend = BlueZBackend(busAddress: "unix:path=\(directory)/no-such-socket")
        let error = await #expect(throws: SensorBackendError.self) {
            try await backend.run(wanted: { _ in true }, events: { _ in })
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("cannot reach") == true, "\(String(describing: error))")
    }

    @Test func deniedPolicyIsAPermissionError() async throws {
        let bus = try PrivateDBus.start(policy: .denyCallsTo("org.bluez"))
        defer { bus.stop() }
        let mock = try await MockBlueZ.start(on: bus)
        defer { mock.stop() }
        let error = await #expect(throws: SensorBackendError.self) {
            try await BlueZBackend(busAddress: bus.address).run(wanted: { _ in true }, events: { _ in })
        }
        #expect(error?.code == .permission, "\(String(describing: error))")
        #expect(error?.message.contains("bluetooth.conf") == true)
    }

    @Test func noAdapterIsNotFound() async throws {
        let bus = try PrivateDBus.start()
        defer { bus.stop() }
        let mock = try await MockBlueZ.start(on: bus, options: ["--no-adapter"])
        defer { mock.stop() }
        let error = await #expect(throws: SensorBackendError.self) {
            try await BlueZBackend(busAddress: bus.address).run(wanted: { _ in true }, events: { _ in })
        }
        #expect(error?.code == .notFound, "\(String(describing: error))")
        let named = await #expect(throws: SensorBackendError.self) {
            try await BlueZBackend(busAddress: bus.address, adapter: "hci1").scan(seconds: 1)
        }
        #expect(named?.code == .notFound)
        #expect(named?.message.contains("hci1") == true)
    }

    @Test func poweredOffAdapterSaysSo() async throws {
        let bus = try PrivateDBus.start()
        defer { bus.stop() }
        let mock = try await MockBlueZ.start(on: bus, options: ["--powered-off"])
        defer { mock.stop() }
        let error = await #expect(throws: SensorBackendError.self) {
            try await BlueZBackend(busAddress: bus.address).run(wanted: { _ in true }, events: { _ in })
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("powered off") == true, "\(String(describing: error))")
    }

    @Test func busGoingAwayEndsTheRunWithAnError() async throws {
        let hr = Self.hr
        let run = try await Self.start(wanted: { $0.id.address == hr })
        try await run.log.wait("streaming") { $0.streaming(hr) == 1 }
        run.bus.stop()
        let result = await run.task.result
        run.mock.stop()
        let error = try #require(result.error as? SensorBackendError, "\(result)")
        #expect(error.code == .unavailable)
    }

    // MARK: pieces without a bus

    @Test func uuidsAndProfiles() {
        #expect(BlueZUUID.long("180D") == "0000180d-0000-1000-8000-00805f9b34fb")
        #expect(BlueZUUID.short("0000180D-0000-1000-8000-00805F9B34FB") == "180d")
        #expect(BlueZUUID.short("6e400001-b5a3-f393-e0a9-e50e24dcca9e") == nil)
        #expect(
            BlueZFitness.profiles(advertising: ["1826", "180d", "180f", "1812"]) == [
                "ble:2a37", "ble:2ad2", "ble:2acd", "ble:2a19",
            ])
        #expect(BlueZFitness.text([0x48, 0x31, 0x30, 0x00, 0x00]) == "H10")
        #expect(BlueZFitness.text([0x20, 0x00]) == nil)
    }

    @Test func objectTreeFollowsSignals() {
        var tree = BlueZObjects()
        let device = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01"
        tree.load(
            .array(
                "{oa{sa{sv}}}",
                [
                    .dictEntry(
                        .objectPath("/org/bluez/hci0"),
                        .array("{sa{sv}}", [.dictEntry(.string("org.bluez.Adapter1"), .options([]))]))
                ]))
        #expect(tree.adapters == ["/org/bluez/hci0"])
        // A change for an object not announced yet is ignored: its InterfacesAdded carries it all.
        let early = tree.change(
            path: device, interface: "org.bluez.Device1", changed: ["RSSI": .int16(-40)], invalidated: [])
        #expect(!early)
        #expect(tree.device(device) == nil)
        tree.add(
            path: device,
            interfaces: .array(
                "{sa{sv}}",
                [
                    .dictEntry(
                        .string("org.bluez.Device1"),
                        .options([
                            ("Address", .string("aa:bb:cc:dd:ee:01")), ("Alias", .string("Strap")),
                            ("UUIDs", .strings([BlueZUUID.long("180D")])), ("Connected", .bool(false)),
                        ]))
                ]))
        #expect(tree.device(device)?.address == "AA:BB:CC:DD:EE:01")
        #expect(tree.device(device)?.name == "Strap")
        let applied = tree.change(
            path: device, interface: "org.bluez.Device1", changed: ["Connected": .bool(true)], invalidated: ["Alias"])
        #expect(applied)
        #expect(tree.device(device)?.connected == true)
        #expect(tree.device(device)?.name == nil)
        tree.remove(path: device, interfaces: ["org.bluez.Device1"])
        #expect(tree.device(device) == nil)
        #expect(tree.devices(of: "/org/bluez/hci0").isEmpty)
    }

    @Test func reconnectDelaysGrowToTheirCap() {
        let policy = BlueZBackend.Reconnect(initial: .seconds(1), maximum: .seconds(30))
        for failures in 0..<12 {
            let ceiling = min(Double(1 << failures), 30)
            let delay = policy.delay(after: failures)
            #expect(delay >= .seconds(ceiling / 2) && delay <= .seconds(ceiling), "\(failures): \(delay)")
        }
    }
}

/// The events of one run, with waits for the state a test expects.
final class EventLog: Sendable {
    private struct State {
        var events: [SensorEvent] = []
        var waiters:
            [UInt64: (condition: @Sendable ([SensorEvent]) -> Bool, continuation: CheckedContinuation<Bool, Never>)] =
                [:]
        var next: UInt64 = 0
    }

    private let state = Mutex(State())

    var events: [SensorEvent] { state.withLock { $0.events } }

    func record(_ event: SensorEvent) {
        let ready = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.events.append(event)
            var ready = [CheckedContinuation<Bool, Never>]()
            for (id, waiter) in state.waiters where waiter.condition(state.events) {
                ready.append(waiter.continuation)
                state.waiters[id] = nil
            }
            return ready
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    /// Waits until `condition` holds for the events so far; records an issue and throws on timeout.
    func wait(
        _ what: String, timeout: Duration = .seconds(15), sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: @escaping @Sendable ([SensorEvent]) -> Bool
    ) async throws {
        let id = state.withLock { state in
            state.next += 1
            return state.next
        }
        let met = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                        let now = self.state.withLock { state -> Bool in
                            if condition(state.events) { return true }
                            state.waiters[id] = (condition, continuation)
                            return false
                        }
                        if now { continuation.resume(returning: true) }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                    waiter?.continuation.resume(returning: false)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !met {
            Issue.record("timed out waiting for \(what); events: \(events)", sourceLocation: sourceLocation)
            throw TestServiceError("timed out waiting for \(what)")
        }
    }
}

extension [SensorEvent] {
    func streaming(_ address: String) -> Int {
        count { if case .streaming(let id, _) = $0 { id.address == address } else { false } }
    }

    func lost(_ address: String) -> Int {
        count { if case .lost(let id, _) = $0 { id.address == address } else { false } }
    }

    func payloads(_ address: String, _ profile: String) -> [[UInt8]] {
        compactMap {
            if case .payload(let id, profile, let bytes, _) = $0, id.address == address { bytes } else { nil }
        }
    }
}

extension SensorEvent {
    var sensor: SensorID? {
        switch self {
        case .seen(let advert): advert.id
        case .streaming(let id, _), .payload(let id, _, _, _), .info(let id, _), .lost(let id, _): id
        }
    }

    /// The event with its arrival time zeroed, to compare sequences.
    var withoutTime: SensorEvent {
        if case .payload(let id, let profile, let bytes, _) = self {
            return .payload(id, profile: profile, bytes: bytes, at: .zero)
        }
        return self
    }
}

extension Timestamp {
    fileprivate static let zero = Timestamp(millisecondsSinceEpoch: 0)
}

extension Result {
    fileprivate var error: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

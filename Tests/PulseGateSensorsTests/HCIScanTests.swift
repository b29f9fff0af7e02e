import Foundation
import PulseGateCore
import PulseGateSensors
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// LE Advertising Report events and AD structures, byte for byte.
@Suite struct HCIScanTests {
    /// A chest strap's ADV_IND from public address AA:BB:CC:DD:EE:FF: flags 06, complete 16-bit UUID
    /// list {180D}, complete name "HRM-12", RSSI −59.
    static let strapPacket =
        "04 3E 1B 02 01 00 00 FF EE DD CC BB AA 0F 02 01 06 03 03 0D 18 07 09 48 52 4D 2D 31 32 C5"

    /// Two reports in one event from random address C6:55:44:33:22:11: an ADV_IND (flags, incomplete
    /// UUID list {1818, 180F}, Nordic manufacturer data 01 02, Cycling Power service data 00, RSSI −80)
    /// and its SCAN_RSP (complete name "Stages PM", TX power −4, RSSI −82).
    static let powerMeterPacket =
        "04 3E 38 02 02"
        + " 00 01 11 22 33 44 55 C6 14 02 01 06 05 02 18 18 0F 18 05 FF 59 00 01 02 04 16 18 18 00 B0"
        + " 04 01 11 22 33 44 55 C6 0E 0A 09 53 74 61 67 65 73 20 50 4D 02 0A FC AE"

    /// Builds an LE Advertising Report event with one report.
    static func packet(eventType: UInt8 = 0, addressType: UInt8 = 1, address: [UInt8], data: [UInt8], rssi: Int8)
        -> [UInt8]
    {
        let report = [eventType, addressType] + address + [UInt8(data.count)] + data + [UInt8(bitPattern: rssi)]
        return [0x04, 0x3E, UInt8(2 + report.count), 0x02, 0x01] + report
    }

    @Test func parsesAStrapAdvertisement() throws {
        let reports = try LEAdvertisingReport.parse(packet: BLE.bytes(Self.strapPacket))
        try #require(reports.count == 1)
        let r = reports[0]
        #expect(r.eventType == 0x00 && r.isConnectable && !r.isScanResponse)
        #expect(r.address.description == "AA:BB:CC:DD:EE:FF" && r.address.type == .public)
        #expect(r.rssi == -59)
        #expect(r.data.flags == 0x06)
        #expect(r.data.serviceUUIDs == [BluetoothUUID(0x180D)])
        #expect(r.data.name == "HRM-12" && r.data.nameIsComplete)
        #expect(!r.data.truncated)
        #expect(HCIBackend.profiles(advertising: r.data) == ["ble:2a37"])
    }

    @Test func parsesTwoReportsInOneEventAndMergesTheScanResponse() throws {
        let reports = try LEAdvertisingReport.parse(packet: BLE.bytes(Self.powerMeterPacket))
        try #require(reports.count == 2)
        let (adv, rsp) = (reports[0], reports[1])
        #expect(adv.address == LEAddress("C6:55:44:33:22:11", type: .random))
        #expect(adv.rssi == -80 && rsp.rssi == -82)
        #expect(adv.data.serviceUUIDs == [BluetoothUUID(0x1818), BluetoothUUID(0x180F)])
        #expect(adv.data.manufacturerData == [.init(company: 0x0059, data: [0x01, 0x02])])
        #expect(adv.data.serviceData == [.init(uuid: BluetoothUUID(0x1818), data: [0x00])])
        #expect(adv.data.name == nil)
        #expect(rsp.isScanResponse && !rsp.isConnectable)
        #expect(rsp.data.name == "Stages PM" && rsp.data.txPower == -4)

        var merged = adv.data
        merged.merge(rsp.data)
        #expect(merged.name == "Stages PM" && merged.flags == 0x06 && merged.txPower == -4)
        #expect(HCIBackend.profiles(advertising: merged) == ["ble:2a63", "ble:2a19"])
    }

    @Test func fitnessMachineServiceDataPicksBikeOrTreadmill() throws {
        let address: [UInt8] = [1, 2, 3, 4, 5, 6]
        let bike = try LEAdvertisingReport.parse(
            packet: Self.packet(
                address: address, data: [0x02, 0x01, 0x06, 0x06, 0x16, 0x26, 0x18, 0x01, 0x20, 0x00], rssi: -40))
        #expect(HCIBackend.profiles(advertising: bike[0].data) == ["ble:2ad2"])
        #expect(bike[0].data.offeredServices == [BluetoothUUID(0x1826)])
        let treadmill = try LEAdvertisingReport.parse(
            packet: Self.packet(address: address, data: [0x06, 0x16, 0x26, 0x18, 0x01, 0x01, 0x00], rssi: -40))
        #expect(HCIBackend.profiles(advertising: treadmill[0].data) == ["ble:2acd"])
        let unknown = try LEAdvertisingReport.parse(
            packet: Self.packet(address: address, data: [0x03, 0x03, 0x26, 0x18], rssi: -40))
        #expect(HCIBackend.profiles(advertising: unknown[0].data) == ["ble:2ad2", "ble:2acd"])
        let rower = try LEAdvertisingReport.parse(
            packet: Self.packet(address: address, data: [0x06, 0x16, 0x26, 0x18, 0x01, 0x10, 0x00], rssi: -40))
        #expect(HCIBackend.profiles(advertising: rower[0].data).isEmpty)
    }

    @Test func parses128BitListsShortNamesAndMissingRSSI() throws {
        let uart: [UInt8] = [
            0x9E, 0xCA, 0xDC, 0x24, 0x0E, 0xE5, 0xA9, 0xE0, 0x93, 0xF3, 0xA3, 0xB5, 0x01, 0x00, 0x40, 0x6E,
        ]
        let data = [0x11, 0x07] + uart + [0x04, 0x08, 0x4B, 0x69, 0x63]
        let r = try LEAdvertisingReport.parse(
            packet: Self.packet(eventType: 3, address: [6, 5, 4, 3, 2, 1], data: data, rssi: 127))
        #expect(r[0].rssi == nil && !r[0].isConnectable)
        #expect(r[0].data.serviceUUIDs.map(\.description) == ["6e400001-b5a3-f393-e0a9-e50e24dcca9e"])
        #expect(r[0].data.name == "Kic" && !r[0].data.nameIsComplete)
        #expect(HCIBackend.profiles(advertising: r[0].data).isEmpty)
    }

    @Test func adStructuresAreParsedLeniently() {
        let overrun = AdvertisingData(parsing: [0x02, 0x01, 0x06, 0x05, 0x09, 0x41, 0x42])
        #expect(overrun.flags == 0x06 && overrun.name == nil && overrun.truncated)
        let padded = AdvertisingData(parsing: [0x02, 0x01, 0x04, 0x00, 0x00, 0x00])
        #expect(padded.flags == 0x04 && !padded.truncated)
        let badName = AdvertisingData(parsing: [0x04, 0x09, 0x41, 0xFF, 0x42])
        #expect(badName.name == "A\u{FFFD}B")
        let oddList = AdvertisingData(parsing: [0x04, 0x03, 0x0D, 0x18, 0x0F])  // a stray byte is ignored
        #expect(oddList.serviceUUIDs == [BluetoothUUID(0x180D)])
        let thirtyTwo = AdvertisingData(parsing: [0x05, 0x05, 0x0D, 0x18, 0x00, 0x00])
        #expect(thirtyTwo.serviceUUIDs.isEmpty)
        let shortAfterComplete = AdvertisingData(parsing: [0x03, 0x09, 0x41, 0x42, 0x02, 0x08, 0x41])
        #expect(shortAfterComplete.name == "AB" && shortAfterComplete.nameIsComplete)
    }

    @Test func otherEventsGiveNothingAndTruncatedOnesAreRefused() throws {
        #expect(try LEAdvertisingReport.parse(packet: [0x04, 0x0E, 0x04, 0x01, 0x0C, 0x20, 0x00]).isEmpty)
        // LE Connection Complete, then ACL data: not advertising reports.
        #expect(try LEAdvertisingReport.parse(packet: [0x04, 0x3E, 0x02, 0x01, 0x00]).isEmpty)
        #expect(try LEAdvertisingReport.parse(packet: [0x02, 0x01, 0x00]).isEmpty)
        let full = BLE.bytes(Self.strapPacket)
        for length in 0..<full.count {
            #expect(throws: DecodeError.self, "prefix \(length)") {
                try LEAdvertisingReport.parse(packet: Array(full.prefix(length)))
            }
        }
        var tooLong = Self.packet(address: [1, 2, 3, 4, 5, 6], data: [UInt8](repeating: 0, count: 31), rssi: 0)
        tooLong[13] = 32
        #expect(throws: DecodeError.self) { try LEAdvertisingReport.parse(packet: tooLong) }
    }

    @Test func randomPacketsNeverCrash() {
        var rng = BLE.SeededGenerator(state: 0x4843_4953)
        var parsed = 0
        for _ in 0..<5000 {
            let length = Int.random(in: 0...60, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if bytes.count >= 4 {
                bytes[0] = 0x04
                bytes[1] = 0x3E
                bytes[3] = 0x02
            }
            if let reports = try? LEAdvertisingReport.parse(packet: bytes) { parsed += reports.count }
        }
        _ = parsed
    }

    @Test func addressesPrintMostSignificantFirst() {
        let a = LEAddress(bytes: [0xFF, 0xEE, 0xDD, 0xCC, 0xBB, 0xAA], type: .public)
        #expect(a.description == "AA:BB:CC:DD:EE:FF")
        #expect(LEAddress("aa:bb:cc:dd:ee:ff", type: .public) == a)
        #expect(LEAddress("AA:BB:CC:DD:EE", type: .public) == nil)
        #expect(LEAddress("AA:BB:CC:DD:EE:GG", type: .public) == nil)
    }

    @Test func backoffDoublesUpToItsCeiling() {
        let b = ReconnectBackoff(initial: .seconds(1), maximum: .seconds(60))
        #expect(b.delay(afterFailures: 0) == .zero)
        #expect(
            (1...8).map { b.delay(afterFailures: $0) } == [1, 2, 4, 8, 16, 32, 60, 60].map { Duration.seconds($0) })
        #expect(b.delay(afterFailures: 10_000) == .seconds(60))
    }
}

/// The backend on this machine and, with a stand-in radio, end to end over socketpairs.
@Suite struct HCIBackendTests {
    static let hasAdapter = FileManager.default.fileExists(atPath: "/sys/class/bluetooth/hci0")

    @Test(.enabled(if: !hasAdapter, "this host has hci0; the no-adapter path cannot be seen here"))
    func withoutAnAdapterScanAndRunSayWhy() async {
        let backend = HCIBackend(adapter: "hci0")
        #expect(backend.name == "hci")
        do throws(SensorBackendError) {
            let heard = try await backend.scan(seconds: 0.2)
            Issue.record("scanned without an adapter: \(heard)")
        } catch {
            #expect(error.backend == "hci")
            #expect(error.code == .notFound || error.code == .permission, "\(error)")
            #expect(!error.message.isEmpty)
        }
        do throws(SensorBackendError) {
            try await backend.run(wanted: { _ in true }, events: { _ in })
            Issue.record("ran without an adapter")
        } catch {
            #expect(error.code == .notFound || error.code == .permission, "\(error)")
        }
    }

    @Test func anAdapterThatDoesNotExistIsNotFound() async {
        do throws(SensorBackendError) {
            _ = try await HCIBackend(adapter: "hci97").scan(seconds: 0.1)
            Issue.record("scanned on hci97")
        } catch {
            #expect(error.code == .notFound, "\(error)")
        }
    }

    @Test(.enabled(if: !hasAdapter, "this host has hci0"))
    func connectingWithoutAnAdapterSaysWhy() async {
        let radio = LibBluetoothRadio(adapter: "hci0")
        do throws(SensorBackendError) {
            let fd = try await radio.connect(to: Self.strap, timeout: .seconds(1))
            Issue.record("connected without an adapter: fd \(fd)")
        } catch {
            #expect(error.code == .notFound || error.code == .permission, "\(error)")
        }
    }

    static let strap = LEAddress(bytes: [0x01, 0xAA, 0x26, 0x02, 0x68, 0xC0], type: .random)
    static let phone = LEAddress(bytes: [0x02, 0x00, 0x00, 0x00, 0x00, 0x40], type: .random)
    static let beacon = LEAddress(bytes: [0x03, 0x00, 0x00, 0x00, 0x00, 0x50], type: .public)

    static var airwaves: [LEAdvertisingReport] {
        [
            LEAdvertisingReport(
                eventType: 0x00, address: strap,
                data: AdvertisingData(parsing: [0x02, 0x01, 0x06, 0x03, 0x03, 0x0D, 0x18]),
                rssi: -50),
            LEAdvertisingReport(
                eventType: 0x04, address: strap, data: AdvertisingData(parsing: [0x06, 0x09] + Array("H10 A".utf8)),
                rssi: -51),
            LEAdvertisingReport(
                eventType: 0x00, address: phone, data: AdvertisingData(parsing: [0x02, 0x01, 0x1A]), rssi: -70),
            // Heart rate, but not connectable: heard, never dialled.
            LEAdvertisingReport(
                eventType: 0x03, address: beacon, data: AdvertisingData(parsing: [0x03, 0x03, 0x0D, 0x18]), rssi: -80),
        ]
    }

    @Test func scanMergesScanResponsesPerDevice() async throws {
        let radio = FakeRadio(reports: Self.airwaves)
        let backend = HCIBackend(adapter: "fake0", configuration: .init(), radio: radio)
        let heard = try await backend.scan(seconds: 0.3)
        #expect(heard.map(\.id.address) == ["C0:68:02:26:AA:01", "40:00:00:00:00:02", "50:00:00:00:00:03"])
        #expect(
            heard[0]
                == SensorAdvert(
                    id: SensorID(transport: .ble, address: "C0:68:02:26:AA:01"), name: "H10 A", rssi: -51,
                    profiles: ["ble:2a37"], backend: "hci"))
        #expect(heard[1].profiles.isEmpty && heard[2].profiles == ["ble:2a37"])
        #expect(radio.snapshot().scanning == false)
    }

    @Test func runConnectsTheWantedStreamsAndReconnectsAfterALoss() async throws {
        let radio = FakeRadio(reports: Self.airwaves)
        var configuration = HCIBackend.Configuration()
        configuration.backoff = ReconnectBackoff(initial: .milliseconds(150), maximum: .seconds(1))
        configuration.seenInterval = .milliseconds(100)
        let backend = HCIBackend(adapter: "fake0", configuration: configuration, radio: radio)
        let log = ATTClientTests.EventLog()
        let id = SensorID(transport: .ble, address: "C0:68:02:26:AA:01")
        let run = Task {
            try await backend.run(wanted: { $0.profiles.contains("ble:2a37") }, events: { log.append($0) })
        }

        let streaming = SensorEvent.streaming(id, profiles: ["ble:2a37", "ble:2a19", "ble:2a63"])
        #expect(await log.wait { $0.contains(streaming) })
        let first = try #require(radio.snapshot().peers.first)
        first.notify(ATTClientTests.hrValue, [0x00, 0x48])
        #expect(
            await log.wait {
                $0.contains { if case .payload(id, "ble:2a37", [0x00, 0x48], _) = $0 { true } else { false } }
            })
        first.close()
        let lostAt = ContinuousClock.now
        #expect(await log.wait { $0.contains(.lost(id, reason: "the peer closed the link")) })
        #expect(await log.wait { $0.count(where: { $0 == streaming }) == 2 })
        let state = radio.snapshot()
        #expect(state.connects.count == 2)
        #expect(state.connects.allSatisfy { $0 == Self.strap })
        #expect(state.connects[1].timestamp(in: state) - lostAt >= .milliseconds(100))
        #expect(state.pauses == 2 && state.resumes == 2)

        let seen = log.all.compactMap { if case .seen(let a) = $0 { a } else { nil } }
        #expect(Set(seen.map(\.id.address)) == ["C0:68:02:26:AA:01", "40:00:00:00:00:02", "50:00:00:00:00:03"])
        #expect(seen.contains { $0.name == "H10 A" })
        // Adverts come every 20 ms; `seen` is throttled per device.
        #expect(seen.filter { $0.id.address == "40:00:00:00:00:02" }.count < state.rounds / 2 + 2)

        run.cancel()
        try await run.value
        #expect(radio.snapshot().scanning == false)
        for peer in radio.snapshot().peers { peer.close() }
    }

    @Test func aFailedConnectIsReportedAndRetriedWithBackoff() async throws {
        let radio = FakeRadio(reports: Self.airwaves, refuseConnects: 2)
        var configuration = HCIBackend.Configuration()
        configuration.backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(1))
        let backend = HCIBackend(adapter: "fake0", configuration: configuration, radio: radio)
        let log = ATTClientTests.EventLog()
        let id = SensorID(transport: .ble, address: "C0:68:02:26:AA:01")
        let run = Task {
            try await backend.run(wanted: { $0.profiles.contains("ble:2a37") }, events: { log.append($0) })
        }
        #expect(await log.wait { $0.contains { if case .streaming(id, _) = $0 { true } else { false } } })
        let state = radio.snapshot()
        // Two refusals, then the link; a later reconnect (the scripted link may end under load) is fine.
        #expect(state.connects.count >= 3)
        let times = state.connectTimes
        #expect(times[1] - times[0] >= .milliseconds(90))  // 100 ms after the first failure
        #expect(times[2] - times[1] >= .milliseconds(190))  // 200 ms after the second
        #expect(
            log.all.filter { if case .lost(id, let r) = $0 { r.hasPrefix("connecting failed") } else { false } }.count
                == 2)
        run.cancel()
        try await run.value
        for peer in radio.snapshot().peers { peer.close() }
    }
}

extension LEAddress {
    fileprivate func timestamp(in state: FakeRadio.State) -> ContinuousClock.Instant {
        state.connectTimes[state.connects.lastIndex(of: self)!]
    }
}

/// A radio that repeats fixed reports every 20 ms and connects to the strap through a socketpair whose
/// far end is a ``ScriptedATTPeripheral``.
final class FakeRadio: HCIRadio {
    struct State {
        var connects: [LEAddress] = []
        var connectTimes: [ContinuousClock.Instant] = []
        var peers: [ScriptedATTPeripheral] = []
        var pauses = 0
        var resumes = 0
        var scanning = false
        var rounds = 0
        var refuseConnects: Int
    }

    let reports: [LEAdvertisingReport]
    let state: Mutex<State>

    init(reports: [LEAdvertisingReport], refuseConnects: Int = 0) {
        self.reports = reports
        state = Mutex(State(refuseConnects: refuseConnects))
    }

    func snapshot() -> State { state.withLock { $0 } }

    func startScan(active: Bool) async throws(SensorBackendError) -> any HCIScan {
        state.withLock { $0.scanning = true }
        return FakeScan(radio: self)
    }

    func connect(to address: LEAddress, timeout: Duration) async throws(SensorBackendError) -> Int32 {
        let refuse = state.withLock { s in
            s.connects.append(address)
            s.connectTimes.append(.now)
            guard s.refuseConnects > 0 else { return false }
            s.refuseConnects -= 1
            return true
        }
        if refuse { throw SensorBackendError(backend: "hci", .unavailable, "connecting to \(address) timed out") }
        let (fd, peer) = ScriptedATTPeripheral.pair()
        state.withLock { $0.peers.append(peer) }
        return fd
    }

    final class FakeScan: HCIScan {
        let reports: AsyncStream<LEAdvertisingReport>
        let radio: FakeRadio
        private let continuation: AsyncStream<LEAdvertisingReport>.Continuation
        private let stopped = Mutex(false)

        init(radio: FakeRadio) {
            self.radio = radio
            (reports, continuation) = AsyncStream.makeStream()
            Thread { [self] in
                while !stopped.withLock({ $0 }) {
                    radio.state.withLock { $0.rounds += 1 }
                    for r in radio.reports { continuation.yield(r) }
                    usleep(20_000)
                }
                continuation.finish()
            }.start()
        }

        func pause() async { radio.state.withLock { $0.pauses += 1 } }
        func resume() async { radio.state.withLock { $0.resumes += 1 } }

        func stop() async {
            stopped.withLock { $0 = true }
            radio.state.withLock { $0.scanning = false }
        }
    }
}

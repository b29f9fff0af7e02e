import PulseGateCore
import PulseGateSensors
import PulseGateTestSupport
import Synchronization
import Testing

/// The ANT+ USB backend against a simulated stick that speaks ANT messages at the transport layer
/// (Tests/PulseGateTestSupport/SimulatedANTStick.swift), plus what can be proven with the real libusb
/// on a machine without a stick.
@Suite struct ANTBackendTests {
    /// A made-up key: the real ANT+ key is licensed and never part of the repository.
    static let key = try! ANTNetworkKey(bytes: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08])

    /// Short timings so recovery and silence show within a second; the sensors keep their real periods.
    static let fast = ANTBackend.Configuration(
        silenceTimeout: .milliseconds(800), reopenInterval: .milliseconds(50), responseTimeout: .milliseconds(500),
        startupTimeout: .milliseconds(500), readTimeout: .milliseconds(50))

    static func stick(_ sensors: [SimulatedANTStick.Sensor], seed: UInt64 = 1) -> SimulatedANTStick {
        SimulatedANTStick(networkKey: key.bytes, sensors: sensors, seed: seed)
    }

    // MARK: setup sequence

    @Test func setupSequenceIsTheANTMessageProtocolByteForByte() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 12345, bpm: 60)])
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        try await running(backend) { _ in
            #expect(await eventually { stick.record.isScanning })
        }
        // Vectors from the ANT framing section of sensor-vectors.md (A9.2), copied here; the network
        // key frame is computed by hand for the made-up key (checksum A4^09^46^00^01^…^08 = E3).
        let expected = [
            "A4 01 4A 00 EF",  // Reset System
            "A4 09 46 00 01 02 03 04 05 06 07 08 E3",  // Set Network Key, network 0
            "A4 03 42 00 00 00 E5",  // Assign Channel 0, bidirectional receive, network 0
            "A4 05 51 00 00 00 00 00 F0",  // Set Channel ID: wildcard number, type, transmission type
            "A4 02 45 00 39 DA",  // RF frequency 57
            "A4 02 6E 00 80 48",  // Lib Config: channel ID in every data message
            "A4 02 5B 00 01 FC",  // Open Rx Scan Mode
        ].map { Hex.bytes($0)! }
        #expect(stick.record.writes == expected)
        #expect(backend.statistics.configurations == 1)
        #expect(!stick.record.isClaimed, "the stick is given back when the backend stops")
    }

    static let steps: [(id: UInt8, name: String)] = [
        (0x46, "Set Network Key"), (0x42, "Assign Channel"), (0x51, "Set Channel ID"),
        (0x45, "Set Channel RF Frequency"), (0x6E, "Lib Config"), (0x5B, "Open Rx Scan Mode"),
    ]

    @Test(arguments: steps.indices)
    func aRefusedStepIsAClearErrorNamingIt(_ index: Int) async throws {
        let step = Self.steps[index]
        let stick = Self.stick([.heartRate(deviceNumber: 1, bpm: 60)])
        stick.refuse(step.id, code: 21)
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let error = await #expect(throws: SensorBackendError.self) {
            try await backend.run(wanted: { _ in true }, events: { _ in })
        }
        #expect(error?.code == .unavailable)
        let message = error?.message ?? ""
        #expect(message.contains("refused \(step.name) (\(idText(step.id)))"), "\(message)")
        #expect(message.contains("code 21 (channel in wrong state)"), "\(message)")
        // Nothing after the refused step was sent.
        #expect(stick.record.received.last?.id == step.id)
        #expect(!stick.record.isClaimed)
    }

    @Test func anUnansweredStepIsAClearError() async throws {
        let stick = Self.stick([])
        stick.mute(0x51)
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let error = await #expect(throws: SensorBackendError.self) {
            _ = try await backend.scan(seconds: 1)
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("did not answer Set Channel ID (0x51)") == true, "\(String(describing: error))")
    }

    // MARK: reception

    @Test func oneStickHearsManySensorsInScanMode() async throws {
        let sensors: [SimulatedANTStick.Sensor] = [
            .heartRate(deviceNumber: 12345, bpm: 72), .heartRate(deviceNumber: 222, bpm: 150),
            .heartRate(deviceNumber: 3, bpm: 48), .power(deviceNumber: 4444, watts: 250),
            // 0x12345: bits 16–19 travel in the transmission type.
            .power(deviceNumber: 0x1_2345, watts: 120, cadence: 80),
        ]
        let stick = Self.stick(sensors, seed: 7)
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let ids = ["12345/120", "222/120", "3/120", "4444/11", "74565/11"].map {
            SensorID(transport: .ant, address: $0)
        }
        let log = try await running(backend) { log in
            #expect(await eventually { ids.allSatisfy { log.payloads(for: $0).count >= 3 } })
        }
        for (id, sensor) in zip(ids, sensors) {
            let events = log.events(for: id)
            let profile = sensor.deviceType == 120 ? "ant:hrm" : "ant:power"
            let advert = SensorAdvert(id: id, name: nil, rssi: nil, profiles: [profile], backend: "ant")
            #expect(events.first == .seen(advert), "\(id)")
            #expect(events.dropFirst().first == .streaming(id, profiles: [profile]), "\(id)")
            #expect(!events.contains { if case .lost = $0 { true } else { false } }, "\(id)")
            // The pages decode with the profile decoders to what the sensor sends.
            var decoder = try #require(ProfileDecoders.make(profile))
            var values: [Double] = []
            for (page, time) in log.payloads(for: id) {
                #expect(page.count == 8)
                for case .measurement(let metric, let value, _, _, _) in try decoder.decode(page, at: time)
                where metric.name == (profile == "ant:hrm" ? "heart_rate" : "power") {
                    values.append(value)
                }
            }
            switch sensor.pages {
            case .heartRate(let bpm): #expect(values.contains(Double(bpm)), "\(id) \(values)")
            case .power(let watts, _): #expect(values.contains(Double(watts)), "\(id) \(values)")
            case .fixed: break
            }
        }
        #expect(backend.statistics.broadcasts >= 15)
        #expect(backend.statistics.checksumErrors == 0 && backend.statistics.discardedBytes == 0)
    }

    @Test func unwantedDevicesAreSeenButNotStreamed() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 1, bpm: 60), .power(deviceNumber: 2, watts: 100)])
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let hrm = SensorID(transport: .ant, address: "1/120")
        let power = SensorID(transport: .ant, address: "2/11")
        let log = try await running(backend, wanted: { $0.profiles == ["ant:hrm"] }) { log in
            #expect(await eventually { log.payloads(for: hrm).count >= 3 })
        }
        #expect(log.events(for: power).count == 1, "only .seen: \(log.events(for: power))")
        if case .seen = log.events(for: power).first {} else { Issue.record("power meter not seen") }
    }

    @Test func scanListsEveryDeviceHeard() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 9, bpm: 60), .power(deviceNumber: 8, watts: 100)])
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let adverts = try await backend.scan(seconds: 1)
        #expect(
            adverts == [
                SensorAdvert(
                    id: SensorID(transport: .ant, address: "8/11"), name: nil, rssi: nil, profiles: ["ant:power"],
                    backend: "ant"),
                SensorAdvert(
                    id: SensorID(transport: .ant, address: "9/120"), name: nil, rssi: nil, profiles: ["ant:hrm"],
                    backend: "ant"),
            ])
        #expect(!stick.record.isClaimed)
    }

    @Test func aStickWithAnotherNetworkKeyHearsNothing() async throws {
        let stick = SimulatedANTStick(
            networkKey: [9, 9, 9, 9, 9, 9, 9, 9], sensors: [.heartRate(deviceNumber: 1, bpm: 60)])
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let adverts = try await backend.scan(seconds: 0.6)
        #expect(adverts.isEmpty)
        #expect(stick.record.broadcastsSent == 0)
    }

    /// The simulated stick's reads really do split and merge frames, so the tests above exercise the
    /// backend's reassembly and not one frame per read.
    @Test func theSimulatedStickSplitsAndMergesReadsLikeABulkEndpoint() async throws {
        let stick = Self.stick([
            .heartRate(deviceNumber: 1, bpm: 60), .heartRate(deviceNumber: 2, bpm: 70),
            .power(deviceNumber: 3, watts: 90),
        ])
        let transport = try await stick.open()
        let setup: [ANTMessage] = [
            ANTMessage(id: 0x4A, payload: [0]), ANTMessage(id: 0x46, payload: [0] + Self.key.bytes),
            ANTMessage(id: 0x42, payload: [0, 0, 0]), ANTMessage(id: 0x51, payload: [0, 0, 0, 0, 0]),
            ANTMessage(id: 0x45, payload: [0, 57]), ANTMessage(id: 0x6E, payload: [0, 0x80]),
            ANTMessage(id: 0x5B, payload: [0, 1]),
        ]
        // All commands in one write: the firmware must cut them apart too.
        try await transport.write(setup.flatMap { $0.encode() })
        try await Task.sleep(for: .milliseconds(700))
        var parser = ANTFrameParser()
        var messages: [ANTMessage] = []
        var splitReads = 0
        var mergedReads = 0
        for _ in 0..<200 where splitReads == 0 || mergedReads == 0 {
            let got = parser.append(try await transport.read(timeout: .milliseconds(50)))
            messages += got
            if parser.pendingByteCount > 0 { splitReads += 1 }
            if got.count >= 2 { mergedReads += 1 }
        }
        #expect(splitReads > 0 && mergedReads > 0)
        #expect(parser.checksumErrors == 0 && parser.discardedBytes == 0)
        // Startup, then one OK Channel Response per command, then broadcasts with channel IDs.
        #expect(messages.first == ANTMessage(id: 0x6F, payload: [0x20]))
        let responses = messages.dropFirst().prefix(6)
        #expect(responses.map(\.payload) == setup.dropFirst().map { [$0.payload[0], $0.id, 0] })
        #expect(messages.dropFirst(7).allSatisfy { ANTBroadcast($0)?.deviceType != nil })
        await transport.close()
    }

    // MARK: robustness

    @Test func corruptedFramesAreSkippedAndCountedWithoutLosingSync() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 1, bpm: 60)], seed: 3)
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let hrm = SensorID(transport: .ant, address: "1/120")
        let ghost = SensorID(transport: .ant, address: "999/120")
        let fresh = SensorID(transport: .ant, address: "4242/120")
        let page: [UInt8] = [0x04, 0xFF, 0x00, 0x10, 0x00, 0x14, 0x05, 0x48]
        func extended(_ number: UInt16) -> [UInt8] {
            ANTMessage(
                id: 0x4E, payload: [0] + page + [0x80, UInt8(number & 0xFF), UInt8(number >> 8), 120, 1]
            ).encode()
        }
        var badChecksum = extended(999)
        badChecksum[badChecksum.count - 1] ^= 0x5A
        // No channel ID: cannot be attributed in scan mode.
        let plain = ANTMessage(id: 0x4E, payload: [0] + page).encode()
        // A sync byte with a plausible length whose "frame" swallows the start of the next real one,
        // which must still be found; then an implausible length (over 64).
        let falseStart: [UInt8] = [0xA4, 0x05, 0x77]
        let garbage: [UInt8] = [0x00, 0x13, 0x37, 0xA4, 0xFF, 0x42]
        let log = try await running(backend) { log in
            #expect(await eventually { log.payloads(for: hrm).count >= 2 })
            stick.inject(garbage + badChecksum + plain + falseStart + extended(4242) + garbage)
            let before = log.payloads(for: hrm).count
            #expect(
                await eventually { log.payloads(for: fresh).count == 1 && log.payloads(for: hrm).count >= before + 3 })
        }
        #expect(log.events(for: ghost).isEmpty)
        let stats = backend.statistics
        #expect(stats.checksumErrors >= 2, "\(stats)")  // the bad checksum and the false start
        #expect(stats.discardedBytes >= 2 * garbage.count + 3, "\(stats)")
        #expect(stats.broadcastsWithoutChannelID == 1, "\(stats)")
        #expect(!log.events.contains { if case .lost = $0 { true } else { false } })
    }

    @Test func aSilentSensorIsLostAndSeenAgainWhenItComesBack() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 1, bpm: 60), .power(deviceNumber: 2, watts: 100)])
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let hrm = SensorID(transport: .ant, address: "1/120")
        let power = SensorID(transport: .ant, address: "2/11")
        let log = try await running(backend) { log in
            #expect(await eventually { log.payloads(for: hrm).count >= 2 && log.payloads(for: power).count >= 2 })
            stick.setSilent(deviceNumber: 1, true)
            #expect(
                await eventually { log.events(for: hrm).contains(.lost(hrm, reason: "no broadcast for 0.8 seconds")) })
            stick.setSilent(deviceNumber: 1, false)
            #expect(await eventually { log.seenCount(hrm) == 2 })
        }
        #expect(log.seenCount(power) == 1)
        #expect(!log.events(for: power).contains { if case .lost = $0 { true } else { false } })
    }

    @Test func unplugAndReplugAreRecoveredFrom() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 1, bpm: 60), .power(deviceNumber: 2, watts: 100)])
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let ids = [SensorID(transport: .ant, address: "1/120"), SensorID(transport: .ant, address: "2/11")]
        let log = try await running(backend) { log in
            #expect(await eventually { ids.allSatisfy { log.payloads(for: $0).count >= 2 } })
            stick.unplug()
            #expect(await eventually { ids.allSatisfy { id in log.lostReasons(id).count == 1 } })
            // While the stick is away, the backend keeps looking for it.
            let attempts = stick.record.openAttempts
            #expect(await eventually { stick.record.openAttempts >= attempts + 3 })
            #expect(stick.record.opens == 1)
            stick.replug()
            #expect(await eventually { ids.allSatisfy { log.seenCount($0) == 2 } })
            let count = log.payloads(for: ids[0]).count
            #expect(await eventually { log.payloads(for: ids[0]).count >= count + 2 })
        }
        for id in ids {
            let reason = log.lostReasons(id).first ?? ""
            #expect(reason.contains("LIBUSB_ERROR_NO_DEVICE"), "\(reason)")
        }
        // Configured from scratch after the replug: Reset System is sent twice, the whole sequence again.
        let resets = stick.record.received.filter { $0.id == ANTMessage.ID.resetSystem }
        #expect(resets.count == 2)
        #expect(stick.record.received.filter { $0.id == ANTMessage.ID.openRxScanMode }.count == 2)
        #expect(stick.record.opens == 2)
        let stats = backend.statistics
        #expect(stats.configurations == 2 && stats.stickFailures == 1, "\(stats)")
    }

    @Test func aChannelClosedByTheStickIsReconfigured() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 1, bpm: 60)])
        let backend = ANTBackend(networkKey: Self.key, configuration: Self.fast, opener: stick)
        let hrm = SensorID(transport: .ant, address: "1/120")
        let log = try await running(backend) { log in
            #expect(await eventually { log.payloads(for: hrm).count >= 2 })
            stick.closeChannelSpontaneously()
            #expect(await eventually { log.seenCount(hrm) == 2 })
        }
        #expect(log.lostReasons(hrm).first?.contains("closed its scan channel") == true)
        #expect(backend.statistics.configurations == 2)
    }

    // MARK: configuration

    @Test func aMissingNetworkKeyIsRefusedBeforeTouchingUSB() async throws {
        let stick = Self.stick([.heartRate(deviceNumber: 1, bpm: 60)])
        let backend = ANTBackend(networkKey: nil, configuration: Self.fast, opener: stick)
        let runError = await #expect(throws: SensorBackendError.self) {
            try await backend.run(wanted: { _ in true }, events: { _ in })
        }
        let scanError = await #expect(throws: SensorBackendError.self) {
            _ = try await backend.scan(seconds: 1)
        }
        for error in [runError, scanError] {
            #expect(error?.code == .notConfigured)
            #expect(error?.backend == "ant")
            #expect(error?.message.contains("no ANT+ network key is configured") == true)
        }
        #expect(stick.record.openAttempts == 0)
    }

    @Test func networkKeysAreReadAsConfigurationWritesThem() throws {
        let bytes: [UInt8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]
        for text in [
            "01 23 45 67 89 AB CD EF", "0123456789abcdef", "01:23:45:67:89:ab:cd:ef",
            "0x01,0x23,0x45,0x67,0x89,0xAB,0xCD,0xEF",
        ] {
            #expect(try ANTNetworkKey(hex: text).bytes == bytes, "\(text)")
        }
        for text in ["01 23 45 67 89 AB CD", "01 23 45 67 89 AB CD EF 00", "zz 23 45 67 89 AB CD EF", ""] {
            let error = #expect(throws: SensorBackendError.self, "\(text)") { try ANTNetworkKey(hex: text) }
            #expect(error?.code == .notConfigured)
            #expect(error?.message.contains("8 bytes written as 16 hex digits") == true)
            if !text.isEmpty { #expect(error?.message.contains(text) == false, "the key text is never echoed") }
        }
        let key = try ANTNetworkKey(bytes: bytes)
        #expect("\(key)" == "[redacted]" && String(reflecting: key) == "[redacted]")
    }

    // MARK: real libusb

    @Test func realLibUSBStartsAndReportsNoStickCleanly() async throws {
        // libusb_init and the device list work on this host; the tests are meaningful only without a stick.
        let sticks = try LibUSBStickOpener.sticks()
        guard sticks.isEmpty else {
            Issue.record("an ANT stick is plugged in (\(sticks)); the not-found path cannot be checked here")
            return
        }
        let openError = await #expect(throws: SensorBackendError.self) { _ = try await LibUSBStickOpener().open() }
        #expect(openError?.code == .notFound)
        #expect(openError?.message.hasPrefix("no ANT stick found") == true, "\(String(describing: openError))")

        let backend = ANTBackend(networkKey: Self.key)
        let runError = await #expect(throws: SensorBackendError.self) {
            try await backend.run(wanted: { _ in true }, events: { _ in })
        }
        #expect(runError?.code == .notFound)
        let scanError = await #expect(throws: SensorBackendError.self) { _ = try await backend.scan(seconds: 1) }
        #expect(scanError?.code == .notFound)
    }

    @Test func libusbStatusesMapToTransportErrors() {
        let gone = ANTTransportError.libusb(-4, "bulk IN transfer")
        #expect(gone == ANTTransportError(.noDevice, "bulk IN transfer: LIBUSB_ERROR_NO_DEVICE"))
        #expect(ANTTransportError.libusb(-7, "bulk OUT transfer").code == .timeout)
        #expect(ANTTransportError.libusb(-1, "bulk IN transfer").message == "bulk IN transfer: LIBUSB_ERROR_IO")
    }
}

// MARK: helpers

extension ANTBackendTests {
    /// `0x42`, as the backend names message ids.
    func idText(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return "0x" + String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }

    /// Everything a backend reported, collected from whatever thread reports it.
    final class EventLog: Sendable {
        private let state = Mutex<[SensorEvent]>([])

        func append(_ event: SensorEvent) { state.withLock { $0.append(event) } }

        var events: [SensorEvent] { state.withLock { $0 } }

        func events(for id: SensorID) -> [SensorEvent] {
            events.filter { event in
                switch event {
                case .seen(let advert): advert.id == id
                case .streaming(let sid, _), .payload(let sid, _, _, _), .info(let sid, _), .lost(let sid, _): sid == id
                }
            }
        }

        func payloads(for id: SensorID) -> [(page: [UInt8], at: Timestamp)] {
            events(for: id).compactMap { if case .payload(_, _, let bytes, let at) = $0 { (bytes, at) } else { nil } }
        }

        func seenCount(_ id: SensorID) -> Int {
            events(for: id).filter { if case .seen = $0 { true } else { false } }.count
        }

        func lostReasons(_ id: SensorID) -> [String] {
            events(for: id).compactMap { if case .lost(_, let reason) = $0 { reason } else { nil } }
        }
    }

    /// Runs `backend` while `body` looks at its events, then cancels it and waits for it to stop; the
    /// backend must stop without an error.
    @discardableResult
    func running(
        _ backend: ANTBackend, wanted: @escaping @Sendable (SensorAdvert) -> Bool = { _ in true },
        _ body: (EventLog) async throws -> Void
    ) async throws -> EventLog {
        let log = EventLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await backend.run(wanted: wanted, events: log.append) }
            try await body(log)
            group.cancelAll()
            try await group.waitForAll()
        }
        return log
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes.
    func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}

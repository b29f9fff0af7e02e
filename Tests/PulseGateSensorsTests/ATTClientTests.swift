import Foundation
import PulseGateCore
import PulseGateSensors
import Synchronization
import Testing

/// The ATT client against a scripted peripheral on a socketpair: the same descriptor semantics as an
/// L2CAP LE socket (one read, one PDU), with a real GATT table on the other end.
@Suite struct ATTClientTests {
    static let hrValue: UInt16 = 0x0012
    static let hrCCCD: UInt16 = 0x0013
    static let batteryValue: UInt16 = 0x0022
    static let batteryCCCD: UInt16 = 0x0023
    static let powerValue: UInt16 = 0x0042
    static let powerCCCD: UInt16 = 0x0043
    static let controlPointValue: UInt16 = 0x0049
    static let controlPointCCCD: UInt16 = 0x004A
    static let uartValue: UInt16 = 0x0052

    /// The next event within 5 s, or `nil`.
    static func next(_ events: AsyncStream<ATTClient.Event>) async -> ATTClient.Event? {
        await withTaskGroup(of: ATTClient.Event?.self) { group in
            group.addTask {
                var it = events.makeAsyncIterator()
                return await it.next()
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return nil
            }
            let event = await group.next() ?? nil
            group.cancelAll()
            return event
        }
    }

    /// Waits (bounded, 5 s) until `condition` holds.
    static func until(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<250 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    @Test func exchangesMTUAndTakesTheSmaller() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair(mtu: 185)
        let client = try ATTClient(fd: fd)
        #expect(client.mtu == 23)
        #expect(try await client.exchangeMTU() == 185)
        #expect(client.mtu == 185)
        #expect(peer.snapshot().requests.first == [0x02, 0x05, 0x02])  // we offer 517
        client.close()
    }

    @Test func discoversTheWholeTableAcrossSeveralPages() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair(mtu: 23)
        let client = try ATTClient(fd: fd)
        #expect(try await client.exchangeMTU() == 23)
        let database = try await client.discoverDatabase()

        let services = database.entries.map(\.service)
        #expect(
            services == [
                GATTService(uuid: BluetoothUUID(0x1800), start: 0x0001, end: 0x0005),
                GATTService(uuid: BluetoothUUID(0x180D), start: 0x0010, end: 0x0015),
                GATTService(uuid: BluetoothUUID(0x180F), start: 0x0020, end: 0x0023),
                GATTService(uuid: BluetoothUUID(0x180A), start: 0x0030, end: 0x0038),
                GATTService(uuid: BluetoothUUID(0x1818), start: 0x0040, end: 0x004A),
                GATTService(uuid: TestGATTTable.nordicUARTService, start: 0x0050, end: 0x0054),
            ])

        let hr = try #require(database.characteristic(BluetoothUUID(0x2A37)))
        #expect(hr.declarationHandle == 0x0011 && hr.valueHandle == Self.hrValue && hr.endHandle == 0x0013)
        #expect(hr.properties == .notify && hr.cccdHandle == Self.hrCCCD)
        let location = try #require(database.characteristic(BluetoothUUID(0x2A38)))
        #expect(location.endHandle == 0x0015 && location.cccdHandle == nil)
        #expect(database.characteristic(BluetoothUUID(0x2A19))?.cccdHandle == Self.batteryCCCD)
        #expect(database.characteristic(BluetoothUUID(0x2A63))?.cccdHandle == Self.powerCCCD)
        let controlPoint = try #require(database.characteristic(BluetoothUUID(0x2A66)))
        #expect(controlPoint.properties == [.write, .indicate] && controlPoint.cccdHandle == Self.controlPointCCCD)
        // 128-bit characteristic; its CCCD comes after a User Description descriptor.
        let uart = try #require(database.characteristic(TestGATTTable.nordicUARTTX))
        #expect(uart.valueHandle == Self.uartValue && uart.cccdHandle == 0x0054)
        #expect(uart.uuid.description == "6e400003-b5a3-f393-e0a9-e50e24dcca9e")
        #expect(database.characteristics.count == 14)

        // Several pages of each discovery, each loop ended by Attribute Not Found.
        let state = peer.snapshot()
        let groupRequests = state.requests.filter { $0[0] == 0x10 }
        #expect(groupRequests.count >= 4)
        #expect(groupRequests.map { Array($0[1...2]) }.first == [0x01, 0x00])
        #expect(state.errors.contains { $0 == (0x10, 0x0A) })
        #expect(state.requests.filter { $0[0] == 0x08 }.count > database.entries.count)
        #expect(state.errors.contains { $0 == (0x08, 0x0A) })
        #expect(state.requests.contains { $0[0] == 0x04 })
        #expect(client.statistics == ATTClient.Statistics())
        client.close()
    }

    @Test func readsShortAndLongValues() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair(mtu: 23)
        let client = try ATTClient(fd: fd)
        try await client.exchangeMTU()
        #expect(try await client.read(Self.batteryValue) == [0x5A])
        // Manufacturer Name (0x0032) is 35 bytes: Read gives 22, Read Blob the rest.
        let name = try await client.read(0x0032)
        #expect(String(decoding: name, as: UTF8.self) == TestGATTTable.longManufacturer)
        let blobs = peer.snapshot().requests.filter { $0[0] == 0x0C }
        #expect(blobs == [[0x0C, 0x32, 0x00, 22, 0x00]])
        client.close()
    }

    @Test func errorResponsesAreThrownAndTheLinkStaysUp() async throws {
        let (fd, _) = ScriptedATTPeripheral.pair()
        let client = try ATTClient(fd: fd)
        do throws(ATTError) {
            _ = try await client.read(0x0099)
            Issue.record("read of a missing handle succeeded")
        } catch {
            #expect(error.code == .errorResponse(0x01))
            #expect(error.request == 0x0A && error.handle == 0x0099)
        }
        #expect(try await client.read(0x0015) == [0x01])
        #expect(!client.isClosed)
        client.close()
    }

    @Test func writesCCCDsForNotificationsAndIndications() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair()
        let client = try ATTClient(fd: fd)
        let database = try await client.discoverDatabase()
        for uuid in [BluetoothUUID(0x2A37), BluetoothUUID(0x2A63), BluetoothUUID(0x2A66)] {
            try await client.enableNotifications(try #require(database.characteristic(uuid)))
        }
        let table = peer.snapshot().table
        #expect(table.attribute(Self.hrCCCD)?.value == [0x01, 0x00])
        #expect(table.attribute(Self.powerCCCD)?.value == [0x01, 0x00])
        #expect(table.attribute(Self.controlPointCCCD)?.value == [0x02, 0x00])  // indicate-only
        #expect(table.attribute(Self.batteryCCCD)?.value == [0x00, 0x00])
        await #expect(throws: ATTError.self) {
            try await client.enableNotifications(try #require(database.characteristic(BluetoothUUID(0x2A38))))
        }
        client.close()
    }

    /// The whole life of a link: subscribe, notifications, an indication (confirmed), requests from the
    /// peer (answered), garbage (counted), then the peer goes away and the client says so.
    @Test func streamsConfirmsAnswersSurvivesGarbageAndReportsTheLoss() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair(mtu: 64)
        let client = try ATTClient(fd: fd)
        #expect(try await client.exchangeMTU() == 64)
        let database = try await client.discoverDatabase()
        try await client.enableNotifications(try #require(database.characteristic(BluetoothUUID(0x2A37))))
        try await client.enableNotifications(try #require(database.characteristic(BluetoothUUID(0x2A63))))
        let events = client.events

        peer.notify(Self.hrValue, [0x16, 0x48, 0x00, 0x04])
        guard case .notification(Self.hrValue, [0x16, 0x48, 0x00, 0x04], _) = await Self.next(events) else {
            Issue.record("no heart-rate notification")
            return
        }
        peer.notify(Self.powerValue, [0x20, 0x00, 0xFA, 0x00, 0x0A, 0x00, 0x00, 0x04])
        #expect(
            await Self.next(events).map(Self.strip)
                == .notification(
                    handle: Self.powerValue, value: [0x20, 0x00, 0xFA, 0x00, 0x0A, 0x00, 0x00, 0x04], at: Self.zero))

        peer.indicate(Self.controlPointValue, [0x20, 0x01, 0x01])
        #expect(
            await Self.next(events).map(Self.strip)
                == .indication(handle: Self.controlPointValue, value: [0x20, 0x01, 0x01], at: Self.zero))
        #expect(await peer.nextReply() == [0x1E])

        // The peer as a GATT client: its Read is refused, its MTU exchange answered, its command ignored.
        peer.send([0x0A, 0x01, 0x00])
        #expect(await peer.nextReply() == [0x01, 0x0A, 0x00, 0x00, 0x06])
        peer.send([0x10, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28])
        #expect(await peer.nextReply() == [0x01, 0x10, 0x00, 0x00, 0x06])
        peer.send([0x02, 0xF7, 0x00])
        #expect(await peer.nextReply() == [0x03, 0x05, 0x02])
        #expect(client.mtu == 247)  // the peer's own exchange: the smaller of its 247 and our 517
        peer.send([0x52, 0x12, 0x00, 0x01])

        // Garbage: truncated notification and indication, an empty PDU, answers nobody asked for.
        peer.send([0x1B, 0x12])
        peer.send([0x1D])
        #expect(await peer.nextReply() == [0x1E])  // confirmed anyway, or the peer's queue stalls
        peer.send([])
        peer.send([0x13])
        peer.send([0x0B, 0x01, 0x02])
        peer.send([0x1E])

        // Still a working link: a request gets its own answer, and the next notification arrives. (A
        // stray response that arrives while a request is out is indistinguishable from its answer, so
        // the request waits until the garbage has been taken in.)
        #expect(await Self.until { client.statistics.unexpected == 3 })
        #expect(try await client.read(Self.batteryValue) == [0x5A])
        peer.notify(Self.hrValue, [0x00, 0x4B])
        #expect(
            await Self.next(events).map(Self.strip)
                == .notification(handle: Self.hrValue, value: [0x00, 0x4B], at: Self.zero))

        let stats = client.statistics
        #expect(stats.notifications == 3 && stats.indications == 1)
        #expect(stats.peerRequests == 3 && stats.ignoredCommands == 1)
        #expect(stats.malformed == 3)
        #expect(stats.unexpected == 3)

        peer.close()
        #expect(await Self.next(events) == .closed(reason: "the peer closed the link"))
        #expect(await Self.next(events) == nil)
        #expect(client.isClosed)
        do throws(ATTError) {
            _ = try await client.read(Self.batteryValue)
            Issue.record("a request on a lost link succeeded")
        } catch {
            #expect(error.code == .linkLost)
        }
    }

    /// MTU as the peer set it when it started the exchange itself (then ours is not needed).
    @Test func answersThePeersMTUExchange() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair(mtu: 247)
        let client = try ATTClient(fd: fd, receiveMTU: 100)
        peer.send([0x02, 0xF7, 0x00])
        #expect(await peer.nextReply() == [0x03, 0x64, 0x00])
        #expect(client.mtu == 100)
        client.close()
    }

    @Test func aSilentPeerTimesOutAndTheLinkIsClosed() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair()
        peer.configure { $0.silent = true }
        let client = try ATTClient(fd: fd, transactionTimeout: .milliseconds(300))
        let events = client.events
        let started = ContinuousClock.now
        do throws(ATTError) {
            _ = try await client.read(Self.batteryValue)
            Issue.record("a silent peer answered")
        } catch {
            #expect(error.code == .timeout)
        }
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(300) && waited < .seconds(3))
        guard case .closed(let reason) = await Self.next(events) else {
            Issue.record("no close after the timeout")
            return
        }
        #expect(reason.contains("transaction timeout"))
        do throws(ATTError) {
            _ = try await client.read(Self.batteryValue)
            Issue.record("a request after a timeout went out")
        } catch {
            #expect(error.code == .linkLost)
        }
        peer.close()
    }

    @Test func concurrentRequestsGoOutOneAtATime() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair()
        peer.configure { $0.holdMillis = 40 }
        let client = try ATTClient(fd: fd)
        let handles: [UInt16] = [0x0003, 0x0005, 0x0015, 0x0022, 0x0034, 0x0036]
        let values = try await withThrowingTaskGroup(of: (UInt16, [UInt8]).self) { group in
            for h in handles { group.addTask { (h, try await client.read(h)) } }
            var out: [UInt16: [UInt8]] = [:]
            for try await (h, v) in group { out[h] = v }
            return out
        }
        #expect(values[0x0003] == Array("PG Strap".utf8))
        #expect(values[0x0015] == [0x01])
        #expect(values[0x0022] == [0x5A])
        #expect(values[0x0034] == Array("H10".utf8))
        #expect(peer.snapshot().overlapping == 0)
        #expect(peer.snapshot().requests.count == handles.count)
        client.close()
    }

    @Test func aCancelledWaiterLeavesTheLinkInStep() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair()
        peer.configure { $0.holdMillis = 200 }
        let client = try ATTClient(fd: fd)
        let first = Task { try await client.read(0x0003) }
        try await Task.sleep(for: .milliseconds(50))
        first.cancel()
        do {
            _ = try await first.value
            Issue.record("the cancelled read returned")
        } catch let error as ATTError {
            #expect(error.code == .cancelled)
        }
        peer.configure { $0.holdMillis = 0 }
        // The late answer to the cancelled read must not be taken for this one.
        #expect(try await client.read(Self.batteryValue) == [0x5A])
        #expect(peer.snapshot().overlapping == 0)
        client.close()
    }

    @Test func closeFailsWaitersAndEndsTheEvents() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair()
        peer.configure { $0.silent = true }
        let client = try ATTClient(fd: fd)
        let pending = Task { try await client.read(Self.batteryValue) }
        try await Task.sleep(for: .milliseconds(50))
        client.close(reason: "station shutting down")
        do {
            _ = try await pending.value
            Issue.record("a pending read survived close")
        } catch let error as ATTError {
            #expect(error.code == .linkLost && error.message == "station shutting down")
        }
        let events = client.events
        #expect(await Self.next(events) == .closed(reason: "station shutting down"))
        peer.close()
    }

    @Test func uuidForms() throws {
        let short = BluetoothUUID(0x2A37)
        #expect(short.description == "2a37" && short.short == 0x2A37)
        #expect(BluetoothUUID(string: "00002a37-0000-1000-8000-00805f9b34fb") == short)
        #expect(BluetoothUUID(string: "0x2A37") == short)
        #expect(BluetoothUUID(littleEndian: [0x37, 0x2A]) == short)
        #expect(BluetoothUUID(littleEndian: short.bytes.reversed()) == short)
        let long = try #require(BluetoothUUID(string: "6E400003-B5A3-F393-E0A9-E50E24DCCA9E"))
        #expect(long.short == nil && long.littleEndian.count == 16 && long.littleEndian.first == 0x9E)
        #expect(BluetoothUUID(littleEndian: [1, 2, 3]) == nil)
        #expect(BluetoothUUID(string: "xyz") == nil)
    }

    // MARK: the backend's per-link session on the same scripted peripheral

    /// A thread-safe event log for the sessions' callbacks.
    final class EventLog: Sendable {
        private let events = Mutex<[SensorEvent]>([])
        func append(_ e: SensorEvent) { events.withLock { $0.append(e) } }
        var all: [SensorEvent] { events.withLock { $0 } }

        /// Waits (bounded) until `predicate` holds for the log.
        func wait(_ predicate: ([SensorEvent]) -> Bool) async -> Bool {
            for _ in 0..<250 {
                if predicate(all) { return true }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return predicate(all)
        }
    }

    @Test func sessionSubscribesReadsInfoAndForwardsPayloads() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair(mtu: 23)
        let client = try ATTClient(fd: fd)
        let id = SensorID(transport: .ble, address: "C0:68:02:26:AA:01")
        let log = EventLog()
        let session = Task { await HCIBackend.session(client: client, id: id, events: { log.append($0) }) }

        #expect(await log.wait { $0.contains(.streaming(id, profiles: ["ble:2a37", "ble:2a19", "ble:2a63"])) })
        peer.notify(Self.hrValue, [0x16, 0x48, 0x00, 0x04])
        peer.notify(Self.uartValue, [0x41])  // not a profile: not forwarded
        peer.notify(Self.powerValue, [0x00, 0x00, 0x64, 0x00])
        peer.notify(Self.batteryValue, [0x59])
        #expect(await log.wait { $0.count >= 6 })
        peer.close()
        let end = await session.value
        #expect(end == HCIBackend.SessionEnd(reason: "the peer closed the link", streamed: true))

        let events = log.all.map(Self.strip)
        #expect(
            events == [
                .streaming(id, profiles: ["ble:2a37", "ble:2a19", "ble:2a63"]),
                .info(
                    id,
                    SourceRef.Device(
                        manufacturer: TestGATTTable.longManufacturer, model: "H10", serial: "C0680226",
                        address: "C0:68:02:26:AA:01", firmware: "3.2.0")),
                .payload(id, profile: "ble:2a19", bytes: [0x5A], at: Self.zero),
                .payload(id, profile: "ble:2a37", bytes: [0x16, 0x48, 0x00, 0x04], at: Self.zero),
                .payload(id, profile: "ble:2a63", bytes: [0x00, 0x00, 0x64, 0x00], at: Self.zero),
                .payload(id, profile: "ble:2a19", bytes: [0x59], at: Self.zero),
            ])
        let table = peer.snapshot().table
        #expect(table.attribute(Self.hrCCCD)?.value == [0x01, 0x00])
        #expect(table.attribute(Self.batteryCCCD)?.value == [0x01, 0x00])
        #expect(table.attribute(Self.controlPointCCCD)?.value == [0x00, 0x00])  // not a streamed profile
    }

    @Test func sessionSkipsARefusedCCCDAndEndsWithoutProfiles() async throws {
        let (fd, peer) = ScriptedATTPeripheral.pair()
        peer.configure { $0.refusedWrites = [Self.powerCCCD, Self.batteryCCCD] }
        let client = try ATTClient(fd: fd)
        let id = SensorID(transport: .ble, address: "C0:68:02:26:AA:02")
        let log = EventLog()
        let session = Task { await HCIBackend.session(client: client, id: id, events: { log.append($0) }) }
        #expect(await log.wait { $0.contains(.streaming(id, profiles: ["ble:2a37"])) })
        session.cancel()
        let end = await session.value
        #expect(end.streamed && end.reason == "cancelled")
        peer.close()

        // A peripheral with nothing to stream is let go at once.
        var bare = TestGATTTable()
        bare.service(BluetoothUUID(0x1800), at: 1)
        bare.characteristic(BluetoothUUID(0x2A00), properties: 0x02, value: Array("Phone".utf8))
        let (fd2, peer2) = ScriptedATTPeripheral.pair(table: bare)
        let end2 = await HCIBackend.session(client: try ATTClient(fd: fd2), id: id, events: { log.append($0) })
        #expect(!end2.streamed && end2.reason.hasPrefix("no characteristic to stream"))
        peer2.close()
    }

    static let zero = Timestamp(millisecondsSinceEpoch: 0)

    /// Arrival times are real; comparisons ignore them.
    static func strip(_ e: ATTClient.Event) -> ATTClient.Event {
        switch e {
        case .notification(let h, let v, _): return .notification(handle: h, value: v, at: zero)
        case .indication(let h, let v, _): return .indication(handle: h, value: v, at: zero)
        case .closed: return e
        }
    }

    static func strip(_ e: SensorEvent) -> SensorEvent {
        if case .payload(let id, let profile, let bytes, _) = e {
            return .payload(id, profile: profile, bytes: bytes, at: zero)
        }
        return e
    }
}

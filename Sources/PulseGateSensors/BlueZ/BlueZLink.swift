import PulseGateCore

/// One wanted sensor's connection, kept up until the run is cancelled: connect, wait for
/// ServicesResolved, read battery and Device Information, StartNotify the fitness characteristics,
/// then wait for the link to drop and try again after a growing delay.
struct BlueZLink: Sendable {
    let session: BlueZSession
    let devicePath: String
    let sensor: SensorID
    let reconnect: BlueZBackend.Reconnect

    /// How long bluetoothd gets to answer Connect (its own LE connect timeout is shorter) and to
    /// resolve services after it.
    static let connectTimeout: Duration = .seconds(40)
    static let resolveTimeout: Duration = .seconds(30)
    /// Clean-up calls made while cancelled must not hold up shutdown for long.
    static let cleanupTimeout: Duration = .seconds(2)

    private enum Attempt {
        /// Notifications were enabled and later the link went down.
        case streamed(lost: String)
        /// The attempt failed before streaming.
        case failed(String)
        case cancelled
    }

    /// The link's state that clean-up needs.
    private struct Held {
        var connectedByUs = false
        var subscribed: [String] = []
    }

    func run() async {
        var failures = 0
        while !Task.isCancelled {
            // bluetoothd forgets unpaired devices that went away; wait for discovery to find it again.
            let path = devicePath
            guard await session.conditions.wait({ $0.device(path) }) != nil else { return }
            switch await attempt() {
            case .cancelled:
                return
            case .streamed(let reason):
                failures = 0
                await session.report(.lost(sensor, reason: reason))
            case .failed(let reason):
                failures += 1
                await session.report(.lost(sensor, reason: reason))
            }
            do {
                try await Task.sleep(for: reconnect.delay(after: failures))
            } catch {
                return
            }
        }
    }

    private func attempt() async -> Attempt {
        var held = Held()
        let outcome = await connectAndStream(&held)
        switch outcome {
        case .cancelled: await cleanUp(held, disconnecting: held.connectedByUs)
        case .failed: await cleanUp(held, disconnecting: false)  // a failure disconnects where it must
        case .streamed: await session.removeStreams(held.subscribed)  // the objects are gone with the link
        }
        return outcome
    }

    private func connectAndStream(_ held: inout Held) async -> Attempt {
        let path = devicePath
        guard let device = session.conditions.objects.device(path) else { return .failed("device removed") }
        // The signals bluetoothd sent before Connect's reply (Connected=true among them) must be applied
        // before the device's state is judged, or a stale "not connected" would fail the attempt.
        var signalsBefore: UInt64 = 0
        if !device.connected {
            do {
                signalsBefore = try await session.bus.call(deviceCall("Connect"), timeout: Self.connectTimeout)
                    .signalsBefore
                held.connectedByUs = true
            } catch {
                switch error.name {
                case DBusError.cancelled.name:
                    held.connectedByUs = true  // Disconnect aborts the connection bluetoothd is still making
                    return .cancelled
                case "org.bluez.Error.AlreadyConnected", "org.bluez.Error.InProgress":
                    break
                default:
                    return .failed("connect failed: \(error)")
                }
            }
        }

        let resolved = await session.conditions.wait(Self.resolveTimeout, after: signalsBefore) { objects -> Bool? in
            guard let device = objects.device(path) else { return false }
            if !device.connected { return false }
            return device.servicesResolved ? true : nil
        }
        if Task.isCancelled { return .cancelled }
        guard resolved == true else {
            if held.connectedByUs { await disconnect() }
            return .failed(resolved == nil ? "services not resolved in time" : "disconnected while resolving services")
        }

        let characteristics = session.conditions.objects.characteristics(of: path)
        let battery = await readBattery(characteristics)
        if Task.isCancelled { return .cancelled }
        await readDeviceInformation(characteristics)
        if Task.isCancelled { return .cancelled }

        var profiles = [String]()
        for short in BlueZFitness.streamed {
            guard let characteristic = characteristics.first(where: { $0.shortUUID == short && $0.canNotify })
            else { continue }
            let profile = "ble:\(short)"
            // Registered before StartNotify so the first notification, which may beat the reply, is kept.
            await session.addStream(
                characteristic.path, sensor: sensor, profile: profile,
                lastValue: profile == BlueZFitness.batteryProfile ? battery : nil)
            held.subscribed.append(characteristic.path)
            do {
                try await session.bus.call(characteristicCall(characteristic.path, "StartNotify"))
                profiles.append(profile)
            } catch {
                if error == .cancelled { return .cancelled }
                await session.removeStreams([characteristic.path])
                held.subscribed.removeAll { $0 == characteristic.path }
            }
        }
        guard profiles.contains(where: { $0 != BlueZFitness.batteryProfile }) else {
            if held.connectedByUs { await disconnect() }
            return .failed("no fitness characteristic would notify")
        }
        await session.report(.streaming(sensor, profiles: profiles))
        return await waitForLoss()
    }

    /// Waits until the device disconnects, disappears or loses its services.
    private func waitForLoss() async -> Attempt {
        let path = devicePath
        let first = await session.conditions.wait { objects -> String? in
            guard let device = objects.device(path) else { return "device removed by bluetoothd" }
            if !device.connected { return "disconnected" }
            return device.servicesResolved ? nil : "services unresolved"
        }
        guard let first else { return .cancelled }
        guard first == "services unresolved" else { return .streamed(lost: first) }
        // BlueZ drops ServicesResolved just before Connected on a disconnect, and alone when the
        // device's services changed; give the disconnect a moment to show which it is.
        let next = await session.conditions.wait(.seconds(5)) { objects -> String? in
            guard let device = objects.device(path) else { return "device removed by bluetoothd" }
            if !device.connected { return "disconnected" }
            return device.servicesResolved ? "services changed" : nil
        }
        if Task.isCancelled { return .cancelled }
        return .streamed(lost: next ?? "services unresolved")
    }

    /// Reads Battery Level and reports it as a payload; returns the value read.
    private func readBattery(_ characteristics: [BlueZCharacteristic]) async -> [UInt8]? {
        guard let battery = characteristics.first(where: { $0.shortUUID == "2a19" && $0.canRead }),
            let value = await read(battery)
        else { return nil }
        await session.report(.payload(sensor, profile: BlueZFitness.batteryProfile, bytes: value, at: .now))
        return value
    }

    /// Reads the Device Information strings there are and reports them together.
    private func readDeviceInformation(_ characteristics: [BlueZCharacteristic]) async {
        var info = SourceRef.Device(address: sensor.address)
        var found = false
        for short in BlueZFitness.deviceInformation {
            guard let characteristic = characteristics.first(where: { $0.shortUUID == short && $0.canRead }),
                let value = await read(characteristic), let text = BlueZFitness.text(value)
            else { continue }
            BlueZFitness.record(text, of: short, in: &info)
            found = true
        }
        if found { await session.report(.info(sensor, info)) }
    }

    private func read(_ characteristic: BlueZCharacteristic) async -> [UInt8]? {
        let reply = try? await session.bus.call(
            characteristicCall(characteristic.path, "ReadValue", [.options([])]), timeout: .seconds(10))
        return reply?.values.first?.bytes
    }

    /// StopNotify and Disconnect without waiting on a task that is already cancelled.
    private func cleanUp(_ held: Held, disconnecting: Bool) async {
        for path in held.subscribed {
            _ = try? await session.bus.call(
                characteristicCall(path, "StopNotify"), timeout: Self.cleanupTimeout, cancellable: false)
        }
        await session.removeStreams(held.subscribed)
        if disconnecting { await disconnect() }
    }

    private func disconnect() async {
        _ = try? await session.bus.call(deviceCall("Disconnect"), timeout: Self.cleanupTimeout, cancellable: false)
    }

    private func deviceCall(_ member: String) -> DBusMethodCall {
        DBusMethodCall(
            destination: BlueZSession.service, path: devicePath, interface: BlueZObjects.deviceInterface,
            member: member)
    }

    private func characteristicCall(_ path: String, _ member: String, _ arguments: [DBusValue] = []) -> DBusMethodCall {
        DBusMethodCall(
            destination: BlueZSession.service, path: path, interface: BlueZObjects.characteristicInterface,
            member: member, arguments: arguments)
    }
}

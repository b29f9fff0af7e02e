import Foundation
import PulseGateCore

extension HCIBackend {
    /// How a link ended: the reason for ``SensorEvent/lost(_:reason:)`` and whether it got as far as
    /// streaming (which decides the backoff).
    package struct SessionEnd: Sendable, Equatable {
        package var reason: String
        package var streamed: Bool

        package init(reason: String, streamed: Bool) {
            self.reason = reason
            self.streamed = streamed
        }
    }

    /// Device Information characteristics read once per link.
    static var deviceInformation: [(UInt16, WritableKeyPath<SourceRef.Device, String?>)] {
        [(0x2A29, \.manufacturer), (0x2A24, \.model), (0x2A25, \.serial), (0x2A26, \.firmware)]
    }

    /// Everything one connected link does, on any ATT descriptor: exchange MTU, discover the table,
    /// read Device Information, enable notifications for every characteristic a decoder exists for,
    /// report `streaming`, read the battery, then forward notifications and indications as `payload`s
    /// until the link ends. Returns instead of emitting `lost`, so the caller decides about backoff.
    ///
    /// A characteristic that refuses its CCCD write or read (an ATT error) is skipped; a timeout or a
    /// lost link ends the session. Cancelling the task closes the link.
    package static func session(
        client: ATTClient, id: SensorID, events: @Sendable (SensorEvent) -> Void
    ) async -> SessionEnd {
        await withTaskCancellationHandler {
            do throws(ATTError) {
                return try await stream(client: client, id: id, events: events)
            } catch {
                client.close(reason: error.message)
                return SessionEnd(reason: error.message, streamed: false)
            }
        } onCancel: {
            client.close(reason: "cancelled")
        }
    }

    private static func stream(
        client: ATTClient, id: SensorID, events: @Sendable (SensorEvent) -> Void
    ) async throws(ATTError) -> SessionEnd {
        try await client.exchangeMTU()
        let database = try await client.discoverDatabase()

        var device = SourceRef.Device(address: id.address)
        for (uuid, field) in deviceInformation {
            guard let c = database.characteristic(BluetoothUUID(uuid)), c.properties.contains(.read),
                let value = try await skippingRefusal({ () async throws(ATTError) in
                    try await client.read(c.valueHandle)
                })
            else { continue }
            device[keyPath: field] = text(value)
        }

        var profiles: [String] = []
        var byHandle: [UInt16: String] = [:]
        for c in database.characteristics {
            guard let profile = profile(characteristic: c.uuid), c.cccdHandle != nil, byHandle[c.valueHandle] == nil,
                try await skippingRefusal({ () async throws(ATTError) in try await client.enableNotifications(c) })
                    != nil
            else { continue }
            byHandle[c.valueHandle] = profile
            if !profiles.contains(profile) { profiles.append(profile) }
        }
        guard !profiles.isEmpty else {
            let reason = "no characteristic to stream (none of \(ProfileDecoders.bleNames.joined(separator: ", ")))"
            client.close(reason: reason)
            return SessionEnd(reason: reason, streamed: false)
        }

        events(.streaming(id, profiles: profiles))
        if device != SourceRef.Device(address: id.address) { events(.info(id, device)) }
        // From here on the session has streamed, whatever ends it (a cancel during the battery read too).
        do throws(ATTError) {
            if let battery = database.characteristic(BluetoothUUID(0x2A19)), battery.properties.contains(.read),
                let level = try await skippingRefusal({ () async throws(ATTError) in
                    try await client.read(battery.valueHandle)
                })
            {
                events(.payload(id, profile: "ble:2a19", bytes: level, at: .now))
            }
        } catch {
            client.close(reason: error.message)
            return SessionEnd(reason: Task.isCancelled ? "cancelled" : error.message, streamed: true)
        }

        for await event in client.events {
            switch event {
            case .notification(let handle, let value, let at), .indication(let handle, let value, let at):
                if let profile = byHandle[handle] { events(.payload(id, profile: profile, bytes: value, at: at)) }
            case .closed(let reason):
                return SessionEnd(reason: reason, streamed: true)
            }
        }
        // The stream ends early only when the waiting task is cancelled (the handler closes the link).
        client.close(reason: "cancelled")
        return SessionEnd(reason: Task.isCancelled ? "cancelled" : "the link ended", streamed: true)
    }

    /// Runs `operation`; an ATT error answer or a malformed answer gives `nil` (skip this one), while
    /// timeouts and link loss propagate and end the session.
    private static func skippingRefusal<T>(_ operation: () async throws(ATTError) -> T) async throws(ATTError) -> T? {
        do throws(ATTError) {
            return try await operation()
        } catch {
            switch error.code {
            case .errorResponse, .malformed: return nil
            case .timeout, .linkLost, .cancelled: throw error
            }
        }
    }

    /// A Device Information string: UTF-8, without the NUL padding and spaces some firmware sends.
    static func text(_ bytes: [UInt8]) -> String? {
        var raw = bytes
        while raw.last == 0 { raw.removeLast() }
        let s = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return s.isEmpty ? nil : s
    }
}

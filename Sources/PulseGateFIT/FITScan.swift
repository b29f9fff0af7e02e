import PulseGateCore

/// The first pass over a stream: walks every message once without mapping values, so that before the
/// first sample is made pulsegate knows
/// - whether and where the stream is damaged (CRCs, truncation, undefined local messages) and whether
///   any timestamp is implausible: strict readers then fail before returning anything;
/// - what has to be known up front but may come late in the file: the recording device and its sensors
///   (FR70 writes `device_info` last), the `timestamp_correlation` anchor, and the strap's `hr`
///   messages to merge into records.
///
/// Costs one framing pass and the CRC; values are read only for the few message types above.
struct FITScan {
    /// The first structural damage, if any: everything before its offset decoded.
    var damage: FITError?
    /// The first implausible time before the damage: later than `now` plus the schema's tolerance, or
    /// device-relative without an anchor.
    var implausible: FITError?
    /// Unix milliseconds of device-relative second 0, from `timestamp_correlation`.
    var anchor: Int64?
    var device: SourceRef.Device?
    var sensors: [FITSensor] = []
    var heartRates = FITHeartRateTrack()
    var messages = 0
    /// Offset of the first data message; damage at or before it leaves nothing to salvage.
    var firstMessage: Int?

    /// - Parameter now: the clock for the future check; `nil` skips the plausibility checks.
    init(bytes: [UInt8], now: Timestamp?) {
        var decoder = FITDecoder(bytes: bytes)
        let latest = now.map { $0.millisecondsSinceEpoch + Sample.futureTolerance } ?? .max
        var firstRelative: (offset: Int, seconds: UInt32)?
        var sawFileID = false
        var firmware: String?
        do {
            while let m = try decoder.next() {
                messages += 1
                if firstMessage == nil { firstMessage = m.offset }
                if let t = m.timestamp {
                    if t < FITTime.relativeLimit {
                        if firstRelative == nil { firstRelative = (m.offset, t) }
                    } else if implausible == nil, let ms = FITTime.unixMillis(t, anchor: nil), ms > latest {
                        implausible = FITError(
                            .implausibleTimestamp, at: m.offset,
                            "timestamp \(Timestamp(millisecondsSinceEpoch: ms)) is in the future (now is \(now!))")
                    }
                }
                switch m.global {
                case FITProfile.FileID.messageNumber where !sawFileID:
                    sawFileID = true
                    device = Self.device(fromFileID: m)
                case FITProfile.DeviceInfo.messageNumber:
                    addDeviceInfo(m, firmware: &firmware)
                case FITProfile.HR.messageNumber:
                    heartRates.add(m)
                case FITProfile.TimestampCorrelation.messageNumber where anchor == nil:
                    anchor = FITTime.anchor(from: m)
                default:
                    break
                }
            }
        } catch {
            damage = error
        }
        if damage == nil, messages == 0 {
            damage = FITError(.empty, at: 0, "the file holds no data messages")
        }
        if let firmware, device != nil { device?.firmware = firmware }
        if let firstRelative, anchor == nil, now != nil {
            let relative = FITError(
                .implausibleTimestamp, at: firstRelative.offset,
                "timestamp \(firstRelative.seconds) is device-relative (seconds since power-on) and the file has no timestamp_correlation message to place it in UTC"
            )
            if implausible == nil || relative.offset < implausible!.offset { implausible = relative }
        }
    }

    static func device(fromFileID m: FITMessage) -> SourceRef.Device? {
        typealias F = FITProfile.FileID
        let manufacturerID = m.raw(F.manufacturer.number).map { UInt16(truncatingIfNeeded: $0) }
        var device = SourceRef.Device()
        device.manufacturer = manufacturerID.map(FITNames.manufacturer)
        if let name = m.string(F.productName.number) {
            device.model = name
        } else if let product = m.raw(F.product.number) {
            device.model = FITNames.product(UInt16(truncatingIfNeeded: product), manufacturer: manufacturerID)
        }
        device.serial = m.raw(F.serialNumber.number).map { String($0) }
        return device.manufacturer == nil && device.model == nil && device.serial == nil ? nil : device
    }

    mutating func addDeviceInfo(_ m: FITMessage, firmware: inout String?) {
        typealias D = FITProfile.DeviceInfo
        let index = m.raw(D.deviceIndex.number).map { UInt8(truncatingIfNeeded: $0) }
        if index == 0 {
            if firmware == nil, let v = m.value(D.softwareVersion) { firmware = FITNames.version(v) }
            return
        }
        if m.raw(D.sourceType.number) == 5 { return }
        let serial = m.raw(D.serialNumber.number).map { String($0) }
        let antNumber = m.raw(D.antDeviceNumber.number).map { UInt16(truncatingIfNeeded: $0) }
        let known = sensors.firstIndex {
            $0.deviceIndex == index
                && (serial == nil || $0.serial == nil || $0.serial == serial)
                && (antNumber == nil || $0.antDeviceNumber == nil || $0.antDeviceNumber == antNumber)
        }
        if let known {
            sensors[known].update(from: m)
        } else {
            var sensor = FITSensor(deviceIndex: index)
            sensor.update(from: m)
            guard
                sensor.manufacturer != nil || sensor.serial != nil || sensor.antDeviceNumber != nil
                    || sensor.product != nil
            else { return }
            sensors.append(sensor)
        }
    }
}

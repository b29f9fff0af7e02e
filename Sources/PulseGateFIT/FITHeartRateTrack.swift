/// The heart rate a strap stored apart from the records (HRM-Pro, HRM-Swim, HRM-Run during swims or
/// watch-less runs): `hr` messages, each an anchor (`timestamp` + `fractional_timestamp` + one
/// `event_timestamp`) or a batch of beats (`filtered_bpm` with `event_timestamp` or the packed 12-bit
/// `event_timestamp_12`), expanded into a time series.
///
/// This follows the Garmin FIT SDK's `hr_mesg_utils` step by step (including its carry-forward of the
/// last value across gaps, in 250 ms steps for up to 5 s) so merged values equal what Garmin's own
/// decoder puts into records. Messages the SDK would fail on (a batch before any anchor, mismatched
/// array lengths, a timestamp running backwards) are skipped instead of failing the file.
///
/// Memory grows with the strap's data (about 9 bytes per expanded point, a few hundred kB for an hour),
/// not with the rest of the file: the track is built in the first pass because devices write the `hr`
/// messages after the records they belong to.
struct FITHeartRateTrack {
    /// FIT seconds (fractional), in message order.
    var times: [Double] = []
    var bpm: [UInt8] = []

    var anchorTime: Double?
    var anchorEvent: Double?
    var eventTimestamp = FITAccumulator()
    /// The current message's event times, reused across messages.
    var events: [Double] = []

    var isEmpty: Bool { times.isEmpty }

    static let gapStep = 0.25
    static let gapMaxSteps = 20

    mutating func add(_ m: FITMessage) {
        typealias H = FITProfile.HR
        let eventField = H.eventTimestamp
        events.removeAll(keepingCapacity: true)
        let eventCount = m.count(eventField.number)
        for i in 0..<eventCount {
            guard let raw = m.raw(eventField.number, at: i) else { continue }
            eventTimestamp.set(raw)
            events.append(Double(raw) / eventField.scale - eventField.offset)
        }
        if let packed = m.bytes(H.eventTimestamp12.number), packed.contains(where: { $0 != 0xFF }) {
            events.removeAll(keepingCapacity: true)
            var bits = FITBitReader(packed)
            for component in H.eventTimestamp12.components {
                guard let v = bits.read(component.bits) else { break }
                let total = eventTimestamp.add(v, bits: component.bits)
                events.append(Double(total) / component.scale - component.offset)
                if bits.available == 0 { break }
            }
        }
        if let t = m.raw(253) {
            guard events.count == 1 else { return }
            anchorTime = Double(t) + (m.value(H.fractionalTimestamp) ?? 0)
            anchorEvent = events[0]
        }
        guard let anchorTime, let anchorEvent else { return }
        let bpmCount = m.count(H.filteredBpm.number)
        guard bpmCount == events.count else { return }
        for i in 0..<events.count {
            guard let raw = m.raw(H.filteredBpm.number, at: i) else { continue }
            var event = events[i]
            if event < anchorEvent {
                guard anchorEvent - event > Double(0x40_0000) else { continue }
                event += Double(0x40_0000)
            }
            var time = anchorTime
            time += event - anchorEvent
            if let previous = times.last {
                var gap = abs(time - previous) * 1000
                var step = 1
                let carried = bpm[bpm.count - 1]
                while gap > Self.gapStep * 1000, step <= Self.gapMaxSteps {
                    times.append(previous + Self.gapStep * Double(step))
                    bpm.append(carried)
                    gap -= Self.gapStep * 1000
                    step += 1
                }
            }
            times.append(time)
            bpm.append(UInt8(truncatingIfNeeded: raw))
        }
    }
}

/// Walks a ``FITHeartRateTrack`` alongside the records, in record order, giving each record the
/// rounded mean of the points in (previous record's time, this record's time] — the SDK's
/// `merge_heart_rates`, state for state.
struct FITHeartRateMerge {
    let track: FITHeartRateTrack
    var index = 0
    var rangeStart: Double?

    init(track: FITHeartRateTrack) { self.track = track }

    mutating func heartRate(forRecordAt end: Double) -> Double? {
        guard !track.isEmpty else { return nil }
        var sum = 0
        var count = 0
        var start = rangeStart ?? end
        if start == end {
            start -= 1
            index = index >= 1 ? index - 1 : 0
        }
        rangeStart = start
        while index < track.times.count {
            let t = track.times[index]
            if t > start, t <= end {
                sum += Int(track.bpm[index])
                count += 1
            } else if t > end {
                rangeStart = end
                return count > 0 ? (Double(sum) / Double(count) + 0.5).rounded(.down) : nil
            }
            index += 1
        }
        return nil
    }
}

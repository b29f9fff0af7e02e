import PulseGateCore

/// Streams canonical samples out of a FIT file, a batch at a time (memory bounded by `max`, not file length).
///
/// What becomes a sample:
/// - each `record`: `heart_rate`, `power`, `cadence` (with `fractional_cadence`), `speed`
///   (`enhanced_speed` preferred, compressed speed expanded), `distance`, `altitude` (enhanced
///   preferred), `latitude`/`longitude` (semicircles → degrees) and `ambient_temperature`. `distance`
///   is an interval metric: each record with a distance gives the difference (zero when standing
///   still) since the previous record with a distance, over [previous time, this time]; a counter that
///   goes backwards (a new session) starts a new baseline instead of giving a negative distance, and a
///   record at the same time as the baseline waits for the next one.
///   Heart rate stored apart by a strap (`hr` messages) is merged into the records the way Garmin's SDK
///   does it and such samples carry ``Quality/derived``.
/// - each `hrv` interval: an `rr_interval` sample in ms, placed by adding the intervals up after the
///   last timestamp in the stream (the preceding record's, normally); the running beat clock never
///   goes backwards, so two beats never share a time (and an id).
/// - `monitoring.heart_rate` (daily monitoring files).
///
/// Samples carry the caller's `source` with `device` set from `file_id` (manufacturer and product names
/// from the FIT profile, serial number, the creator's firmware). A value the schema refuses (heart rate
/// 0 with no strap, an out-of-range speed) or that has no usable time (a record without timestamp) is
/// counted in ``skipped``; only the base type's invalid value means "absent", zero is a value.
///
/// The first call to ``next(max:)`` scans the whole stream once (CRCs, structure, timestamps, device,
/// sensors, strap heart rate). A strict reader (`salvage: false`) therefore throws before returning any
/// sample when the file is damaged, naming the first structural damage (or, in an intact file, the first
/// implausible timestamp): a file is imported whole or not at all. A salvaging reader returns the
/// samples before the first damage or implausible timestamp and reports it in ``stoppedAt``; it throws
/// too when nothing comes before the damage (an empty file, a header only, not a FIT file).
/// Device-relative timestamps (below 0x10000000) are placed with the file's `timestamp_correlation`;
/// without one they are implausible (see ``FITTime``).
///
/// Memory: the caller's bytes (read in place, not copied), at most `max` pending samples plus one
/// message's worth, and what the first pass keeps: the sensor list and the strap's `hr` track (see
/// `FITHeartRateTrack`; empty in files without `hr` messages).
public struct FITSampleReader {
    let bytes: [UInt8]
    let subject: String
    var source: SourceRef
    let now: Timestamp
    let salvage: Bool

    var scan: FITScan?
    var decoder: FITDecoder
    var mapper = FITRecordMapper(heartRates: FITHeartRateTrack())
    var pending: [Sample] = []
    var finished = false
    /// Set when the file was rejected: every later call throws it again.
    var rejection: FITError?
    /// Time and cumulative distance of the last record that had a distance.
    var distanceBase: (millis: Int64, meters: Double)?
    /// Unix milliseconds of the last RR beat placed.
    var beatClock: Int64 = .min

    public init(bytes: [UInt8], subject: String, source: SourceRef, now: Timestamp, salvage: Bool = false) {
        self.bytes = bytes
        self.subject = subject
        self.source = source
        self.now = now
        self.salvage = salvage
        self.decoder = FITDecoder(bytes: bytes, verifyCRC: false)
    }

    /// Up to `max` next samples; an empty array means the file is done.
    public mutating func next(max: Int) throws(FITError) -> [Sample] {
        if let rejection { throw rejection }
        if scan == nil { try start() }
        let limit = Swift.max(1, max)
        while pending.count < limit, !finished {
            try decodeMore()
        }
        let end = Swift.min(pending.count, limit)
        let batch = Array(pending[0..<end])
        // Keep only what is left over (a message's worth at most), so the buffer stays bounded by `max`.
        pending.removeSubrange(0..<end)
        return batch
    }

    /// The recording device from file_id (filled once decoding has passed it).
    public private(set) var device: SourceRef.Device?
    /// In salvage mode: the damage that ended decoding early, if any.
    public private(set) var stoppedAt: FITError?
    /// Values the schema refused (count) — e.g. heart_rate 0.
    public private(set) var skipped: Int = 0
    /// Sensors paired with the recording device (`device_info`), once the first batch was asked for.
    public private(set) var sensors: [FITSensor] = []
    /// `record` messages read so far.
    public private(set) var recordCount = 0

    mutating func start() throws(FITError) {
        let scan = FITScan(bytes: bytes, now: now)
        self.scan = scan
        device = scan.device
        sensors = scan.sensors
        if let device { source.device = device }
        mapper = FITRecordMapper(heartRates: scan.heartRates)
        var stop: FITError? = scan.damage
        if let implausible = scan.implausible {
            if salvage, let damage = scan.damage, damage.offset > implausible.offset {
                var first = implausible
                first.detail += "; the stream is also damaged at byte \(damage.offset): \(damage.reason.rawValue)"
                stop = first
            } else if stop == nil {
                stop = implausible
            }
        }
        guard let stop else { return }
        // Salvage needs something before the damage; a file damaged from its first message on (or not a
        // FIT file at all) is rejected in either mode.
        guard salvage, let first = scan.firstMessage, first < stop.offset else {
            rejection = stop
            throw stop
        }
        stoppedAt = stop
        decoder.limit = stop.offset
    }

    mutating func decodeMore() throws(FITError) {
        guard let m = try decoder.next() else {
            finished = true
            return
        }
        switch m.global {
        case FITProfile.Record.messageNumber:
            recordCount += 1
            emit(mapper.record(m))
        case FITProfile.HRV.messageNumber:
            emitRR(m)
        case FITProfile.Monitoring.messageNumber:
            if let bpm = m.value(FITProfile.Monitoring.heartRate) {
                if let t = m.timestamp, let ms = millis(t) {
                    add(.heartRate, bpm, "/min", ms)
                } else {
                    skipped += 1
                }
            }
        default:
            break
        }
    }

    func millis(_ seconds: UInt32) -> Int64? { FITTime.unixMillis(seconds, anchor: scan?.anchor) }

    mutating func emit(_ r: FITRecord) {
        guard let t = r.timestamp, let ms = millis(t) else {
            let values: [Double?] = [
                r.heartRate, r.power, r.cadence, r.speed, r.altitude, r.latitude, r.longitude, r.temperature,
            ]
            skipped += values.count { $0 != nil }
            return
        }
        if let v = r.heartRate { add(.heartRate, v, "/min", ms, quality: r.heartRateMerged ? .derived : []) }
        if let v = r.power { add(.power, v, "W", ms) }
        if let v = r.cadence { add(.cadence, v, "/min", ms) }
        if let v = r.speed { add(.speed, v, "m/s", ms) }
        if let meters = r.distance { addDistance(meters, ms) }
        if let v = r.altitude { add(.altitude, v, "m", ms) }
        if let v = r.latitude { add(.latitude, v, "deg", ms) }
        if let v = r.longitude { add(.longitude, v, "deg", ms) }
        if let v = r.temperature { add(.ambientTemperature, v, "Cel", ms) }
    }

    mutating func addDistance(_ meters: Double, _ ms: Int64) {
        guard let base = distanceBase, ms >= base.millis else {
            distanceBase = (ms, meters)
            return
        }
        guard ms > base.millis else { return }
        let delta = meters - base.meters
        if delta >= 0 {
            add(.distance, (delta * 1000).rounded() / 1000, "m", base.millis, end: ms)
        }
        distanceBase = (ms, meters)
    }

    mutating func emitRR(_ m: FITMessage) {
        let field = FITProfile.HRV.time
        var intervals: [Double] = []
        for i in 0..<m.count(field.number) {
            if let seconds = m.value(field, at: i) { intervals.append((seconds * 1000).rounded()) }
        }
        guard let t = decoder.lastTimestamp, let base = millis(t) else {
            skipped += intervals.count
            return
        }
        if beatClock < base { beatClock = base }
        for rr in intervals {
            beatClock += Int64(rr)
            add(.rrInterval, rr, "ms", beatClock)
        }
    }

    mutating func add(
        _ metric: Metric, _ value: Double, _ unit: String, _ start: Int64, end: Int64? = nil, quality: Quality = []
    ) {
        do {
            let sample = try Sample(
                subject: subject, metric: metric, value: .number(value), unit: unit,
                start: Timestamp(millisecondsSinceEpoch: start), end: end.map(Timestamp.init(millisecondsSinceEpoch:)),
                source: source, quality: quality, now: now)
            pending.append(sample)
        } catch {
            skipped += 1
        }
    }
}

import Foundation
import PulseGateCore
import PulseGateFIT
import PulseGateVendorKit

/// Suunto records → canonical samples. Pure: everything a record needs is in its bytes, so
/// `pulsegate replay` maps a kept record exactly as the first time.
///
/// Two kinds of record are kept:
/// - `workout:<workoutKey>`: the workout's FIT file as `GET /v3/workouts/{key}/fit` answered it,
///   decoded by PulseGateFIT (times in FIT are UTC; the device comes from the file's `file_id`).
/// - `activity247:…` / `sleep247:…`: 24/7 samples, either a whole `SUUNTO_247_*_CREATED` notification
///   (`{"type", "username", "samples": [...]}`) or a `GET /247samples/{activity|sleep}` answer (the
///   bare array). Each sample is `{"timestamp": ISO 8601 with offset, "entryData": {...}}`.
///
/// 24/7 samples carry no record id (``SourceRef/recordID`` stays empty), so the same reading pushed
/// once and fetched again by a reconcile gets the same sample id and dedupes downstream.
enum SuuntoMapping {
    /// What a kept record holds, read from its key.
    enum Record: Equatable {
        case workout(key: String)
        case activity
        case sleep
    }

    static func record(_ key: String) -> Record? {
        if key.hasPrefix("workout:") {
            let workoutKey = String(key.dropFirst("workout:".count))
            return workoutKey.isEmpty ? nil : .workout(key: workoutKey)
        }
        if key.hasPrefix("activity247:") { return .activity }
        if key.hasPrefix("sleep247:") { return .sleep }
        return nil
    }

    // MARK: FIT

    /// Whether `bytes` start like a FIT file: a header of 12 or 14 bytes with ".FIT" at bytes 8–11
    /// (FIT protocol, file header). Suunto answers 200 with a JSON or text body while a fresh workout
    /// is still being processed; such an answer is not a FIT file and is fetched again later.
    static func looksLikeFIT(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 14 && (bytes[0] == 12 || bytes[0] == 14) && bytes[8] == UInt8(ascii: ".")
            && bytes[9] == UInt8(ascii: "F") && bytes[10] == UInt8(ascii: "I") && bytes[11] == UInt8(ascii: "T")
    }

    // MARK: 24/7 samples

    /// The byte range of the samples array: the whole body when it is an array (a fetch), else the
    /// `samples` member of the notification object.
    static func samplesRange(_ body: [UInt8]) throws(VendorError) -> Range<Int> {
        guard let first = body.firstIndex(where: { !isJSONWhitespace($0) }) else {
            throw .malformed("24/7 record is empty")
        }
        if body[first] == UInt8(ascii: "[") { return body.indices }
        do {
            guard let range = try JSONValue.memberRange("samples", in: body) else {
                throw VendorError.malformed("24/7 record has no samples array")
            }
            return range
        } catch let error as VendorError {
            throw error
        } catch {
            throw .malformed("24/7 record: \(error)")
        }
    }

    static func isJSONWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// One 24/7 activity sample: heart rate, SpO2, HRV and altitude, each a reading at the sample's
    /// time. Returns `false` when the sample has no readable time (then nothing of it is placed).
    ///
    /// Not mapped, because the schema has no honest place for them:
    /// - `StepCount` and `EnergyConsumption`: interval quantities, and Suunto does not document which
    ///   interval a sample's count covers (the one ending at its timestamp, or the one starting there);
    ///   energy is also not documented as active-only, and the schema's `active_energy` must not carry
    ///   basal energy.
    /// - `HRExt.Min`/`HRExt.Max`: a minimum and maximum at the same instant as `HR` would collide with
    ///   it on one sample id.
    static func addActivity(_ sample: JSONValue, to batch: inout SampleBatch) -> Bool {
        guard let at = time(sample["timestamp"]), let data = sample["entryData"], data.object != nil else {
            return false
        }
        batch.add(.heartRate, data["HR"]?.double, unit: "/min", at: at)
        // Suunto reports SpO2 as a ratio (0.97); a value above 1 can only be a percentage already.
        if let spo2 = positive(data["SpO2"]) { batch.add(.spo2, spo2 <= 1 ? spo2 * 100 : spo2, unit: "%", at: at) }
        // HRV is RMSSD in ms; 0 means "not measured", not an RMSSD of zero.
        batch.add(.hrvRMSSD, positive(data["HRV"]), unit: "ms", at: at)
        batch.add(.altitude, data["Altitude"]?.double, unit: "m", at: at)
        return true
    }

    /// One 24/7 sleep entry: the time in bed as one `in_bed` interval (`BedtimeStart`..`BedtimeEnd`;
    /// Suunto's `Duration` includes the time awake), and the night's lowest heart rate (`HRMin`) as
    /// the resting heart rate at `BedtimeEnd` — as for Oura's lowest sleeping heart rate, and not for
    /// naps (`IsNap`), whose lowest heart rate says nothing about the day's rest.
    ///
    /// Not mapped: the deep/light/REM totals (durations without a position in the night cannot become
    /// stage intervals), `AvgHRV` and `MaxSpo2` (a night's average or maximum is not a reading at an
    /// instant), `SleepQualityScore` (no metric).
    static func addSleep(_ sample: JSONValue, to batch: inout SampleBatch) -> Bool {
        guard let data = sample["entryData"], let start = time(data["BedtimeStart"]),
            let end = time(data["BedtimeEnd"])
        else { return false }
        if end > start {
            batch.add(.sleepStage, .category("in_bed"), unit: "{stage}", at: start, end: end, quality: .vendorComputed)
        }
        if data["IsNap"]?.bool != true {
            batch.add(.restingHeartRate, positive(data["HRMin"]), unit: "/min", at: end, quality: .vendorComputed)
        }
        return true
    }

    static func positive(_ value: JSONValue?) -> Double? {
        guard let number = value?.double, number > 0 else { return nil }
        return number
    }

    /// An ISO 8601 time with its offset (`2026-08-27T00:10:00.000+03:00`, `…+0300` or `…Z`). A time
    /// without an offset is refused: Suunto's 24/7 times are local wall clock, and guessing the zone
    /// would put a reading up to 14 hours off.
    static func time(_ value: JSONValue?) -> Timestamp? {
        guard var text = value?.string?.trimmingCharacters(in: .whitespaces), text.utf8.count <= 64 else {
            return nil
        }
        let tail = Array(text.utf8.suffix(5))
        if tail.count == 5, tail[0] == UInt8(ascii: "+") || tail[0] == UInt8(ascii: "-"),
            tail[1...].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            text.utf8.count > 19
        {
            text.insert(":", at: text.index(text.endIndex, offsetBy: -2))
        }
        return Timestamp(rfc3339: text)
    }
}

/// A workout's FIT file, decoded a batch at a time (memory follows the batch, not the file).
struct SuuntoWorkoutSource: SampleSource {
    var reader: FITSampleReader
    let workoutKey: String

    mutating func next(max: Int) throws(VendorError) -> [Sample] {
        do {
            return try reader.next(max: Swift.max(1, max))
        } catch {
            // Kept as a raw payload and not retried: the same bytes would fail the same way.
            throw .malformed(
                "workout \(workoutKey): FIT file refused: \(error.reason.rawValue) at byte \(error.offset): \(error.detail)"
            )
        }
    }
}

/// A 24/7 record's samples, walked one array element at a time: a push of several days of 10-minute
/// samples is read with memory bounded by the batch.
struct Suunto247Source: SampleSource {
    enum Kind { case activity, sleep }

    let kind: Kind
    let subject: String
    let vendor: String
    let now: Timestamp
    private let bytes: [UInt8]
    private var cursor: JSONArrayCursor
    private var pending: ArraySlice<Sample> = []
    private var placed = 0
    private var unreadable = 0

    init(kind: Kind, body: [UInt8], subject: String, vendor: String, now: Timestamp) throws(VendorError) {
        self.kind = kind
        self.subject = subject
        self.vendor = vendor
        self.now = now
        self.bytes = body
        let range = try SuuntoMapping.samplesRange(body)
        do {
            cursor = try JSONArrayCursor(body, range: range)
        } catch {
            throw .malformed("24/7 samples: \(error)")
        }
    }

    mutating func next(max: Int) throws(VendorError) -> [Sample] {
        let limit = Swift.max(1, max)
        while pending.count < limit {
            let element: Range<Int>?
            do {
                element = try cursor.next()
            } catch {
                throw .malformed("24/7 samples: \(error)")
            }
            guard let element else { break }
            var batch = SampleBatch(subject: subject, vendor: vendor, recordID: nil, now: now)
            let sample = try? JSONValue.parse(bytes, range: element)
            let readable =
                sample.map {
                    kind == .activity
                        ? SuuntoMapping.addActivity($0, to: &batch) : SuuntoMapping.addSleep($0, to: &batch)
                } ?? false
            if readable { placed += 1 } else { unreadable += 1 }
            pending += batch.samples
        }
        if pending.isEmpty, placed == 0, unreadable > 0 {
            throw .malformed("24/7 samples: none of \(unreadable) has a readable time with an offset")
        }
        let out = pending.prefix(limit)
        pending = pending.dropFirst(out.count)
        return Array(out)
    }
}

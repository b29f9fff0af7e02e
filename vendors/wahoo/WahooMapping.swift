import Foundation
import PulseGateCore
import PulseGateFIT
import PulseGateVendorKit

/// Wahoo records → canonical samples. Pure: everything a record needs is in its bytes and its key, so
/// `pulsegate replay` maps a kept record exactly as the first time.
///
/// Two kinds of record are kept. `workout:<workout id>` is the workout's FIT file exactly as Wahoo's CDN
/// served it: every measurement comes from there, decoded by PulseGateFIT a batch at a time. A workout
/// without a file (entered by hand, or from an app that uploaded none) is kept as
/// `summary:<workout id>`, the summary Wahoo computed, which has no time series at all.
enum WahooMapping {
    static let fitPrefix = "workout:"
    static let summaryPrefix = "summary:"

    // MARK: FIT

    /// The samples of a workout's FIT file, decoded as the engine asks for them.
    static func fitSamples(_ record: RawRecord, subject: String, vendor: String, now: Timestamp) -> WahooFITSamples {
        let workoutID = String(record.key.dropFirst(fitPrefix.count))
        return WahooFITSamples(
            reader: FITSampleReader(
                bytes: record.body, subject: subject,
                source: SourceRef(kind: .cloud, vendor: vendor, recordID: workoutID), now: now),
            workoutID: workoutID)
    }

    // MARK: summary-only workouts

    /// `{"workout": {...}, "workout_summary": {...}}` as the adapter keeps it.
    ///
    /// A summary holds totals and averages, nothing measured at a moment. Only the totals have an honest
    /// place in the schema: the distance covered and the energy spent over the workout's span
    /// (`starts` plus `duration_total_accum`), both flagged vendor-computed. Averages (heart rate,
    /// power, cadence, speed) are not mapped: placing an average at some instant would invent a
    /// measurement. Ascent, work, TSS and NP have no metric. Wahoo writes `"0.0"` for what a recording
    /// did not measure, so a zero total is read as "not measured" and left out.
    static func summary(_ json: JSONValue, key: String, subject: String, vendor: String, now: Timestamp)
        throws(VendorError) -> [Sample]
    {
        let workoutID = String(key.dropFirst(summaryPrefix.count))
        guard let summary = json["workout_summary"], summary.object != nil else {
            throw .malformed("summary record of workout \(workoutID) has no workout_summary")
        }
        let workout = json["workout"]
        let startText = workout?["starts"]?.string ?? summary["started_at"]?.string
        guard let startText, let start = Timestamp(rfc3339: startText) else {
            throw .malformed("summary of workout \(workoutID) has no usable start time (workout.starts)")
        }
        let seconds = number(summary["duration_total_accum"]) ?? number(workout?["minutes"]).map { $0 * 60 }
        guard let seconds, seconds > 0 else { return [] }
        let end = start.adding(milliseconds: Int64((seconds * 1000).rounded()))
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: workoutID, now: now)
        if let meters = number(summary["distance_accum"]), meters > 0 {
            batch.add(.distance, meters, unit: "m", at: start, end: end, quality: .vendorComputed)
        }
        if let kcal = number(summary["calories_accum"]), kcal > 0 {
            batch.add(.activeEnergy, kcal, unit: "kcal", at: start, end: end, quality: .vendorComputed)
        }
        return batch.samples
    }

    /// Wahoo's documented examples send numbers (`94.59`); delivered webhooks send the same fields as
    /// strings (`"94.59"`). Both are read; `null`, empty and non-numeric text are "absent".
    static func number(_ value: JSONValue?) -> Double? {
        guard let value else { return nil }
        if let d = value.double { return d.isFinite ? d : nil }
        guard let text = value.string?.trimmingCharacters(in: .whitespaces), !text.isEmpty,
            text.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == 0x2E || $0 == 0x2D || $0 == 0x2B }),
            let d = Double(text), d.isFinite
        else { return nil }
        return d
    }
}

/// A FIT file's samples as a stream: memory follows the batch, not the ride's length. A file the
/// decoder refuses is a ``VendorError/malformed(_:)`` naming the reason and the byte offset.
struct WahooFITSamples: SampleSource {
    var reader: FITSampleReader
    let workoutID: String

    mutating func next(max: Int) throws(VendorError) -> [Sample] {
        do {
            return try reader.next(max: max)
        } catch {
            throw .malformed("FIT file of workout \(workoutID): \(error)")
        }
    }
}

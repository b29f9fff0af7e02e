import Foundation
import PulseGateCore
import PulseGateVendorKit

/// Oura records → canonical samples.
///
/// Oura writes local times with their offset (`2026-11-20T04:00:00+01:00`); they are read as the
/// instants they name, so every sample is in UTC without guessing a time zone.
extension OuraAdapter {
    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        let json = try JSONValue.vendorPayload(record.body)
        switch json["data_type"]?.string {
        case "heartrate":
            return Self.mapHeartrate(
                json["data"]?.array ?? [], subject: connection.subject, vendor: manifest.id, now: now)
        case "sleep":
            return try Self.mapSleep(
                try Self.document(json), subject: connection.subject, vendor: manifest.id, now: now)
        case "daily_activity":
            let fetchedAt = json["fetched_at"]?.string.flatMap { Timestamp(rfc3339: $0) } ?? now
            return try Self.mapDailyActivity(
                try Self.document(json), fetchedAt: fetchedAt, subject: connection.subject, vendor: manifest.id,
                now: now)
        case "workout":
            return try Self.mapWorkout(
                try Self.document(json), subject: connection.subject, vendor: manifest.id, now: now)
        default:
            throw .malformed("record \(record.key) has no known data_type")
        }
    }

    static func document(_ json: JSONValue) throws(VendorError) -> JSONValue {
        guard let document = json["document"], document.object != nil else {
            throw .malformed("record has no document object")
        }
        return document
    }

    static func time(_ document: JSONValue, _ key: String) throws(VendorError) -> Timestamp {
        guard let text = document[key]?.string else { throw .malformed("\(key) is missing") }
        guard let time = Timestamp(rfc3339: text) else {
            throw .malformed("\(key) '\(text.prefix(40))' is not RFC 3339")
        }
        return time
    }

    // MARK: heart rate

    /// One sample per row. Rows from `source: "sleep"` are dropped: the same night comes, with its
    /// sleep record's id, from the sleep document's own 5-minute series, and mapping both would give
    /// consumers two heart rates for every sleeping minute. The other sources (`awake`, `rest`,
    /// `workout`, `session`, `live`) describe the wearer's activity, not the measurement, and are not
    /// kept. No record id: overlapping range fetches then give each row the same sample id.
    static func mapHeartrate(_ rows: [JSONValue], subject: String, vendor: String, now: Timestamp) -> [Sample] {
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: nil, now: now)
        for row in rows where row["source"]?.string != "sleep" {
            let at =
                row["timestamp"]?.string.flatMap { Timestamp(rfc3339: $0) }
                ?? row["timestamp_unix"]?.int.map { Timestamp(millisecondsSinceEpoch: $0) }
            guard let at else { continue }
            batch.add(.heartRate, row["bpm"]?.double, unit: "/min", at: at)
        }
        return batch.samples
    }

    // MARK: sleep

    /// `sleep_phase_5_min` digits, one per 5 minutes from `bedtime_start`.
    static let sleepStages: [Character: String] = ["1": "deep", "2": "light", "3": "rem", "4": "awake"]

    /// A sleep period: its stages (runs of equal 5-minute phases, the last cut at `bedtime_end`), its
    /// heart-rate and RMSSD series, and the night's lowest heart rate as the resting heart rate.
    ///
    /// `type` decides what is real: `deleted` maps to nothing; `rest` (a sleep the user rejected) keeps
    /// the measured heart rate and HRV but no stages; the resting heart rate comes only from a
    /// `long_sleep` (the main sleep of a night, the one Oura bases readiness on), at `bedtime_end`.
    static func mapSleep(_ document: JSONValue, subject: String, vendor: String, now: Timestamp) throws(VendorError)
        -> [Sample]
    {
        let type = document["type"]?.string
        if type == "deleted" { return [] }
        let id = document["id"]?.idString
        let start = try time(document, "bedtime_start")
        let end = try time(document, "bedtime_end")
        guard end > start else { throw .malformed("sleep \(id ?? "?"): bedtime_end is not after bedtime_start") }
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: id, now: now)
        if type != "rest", let phases = document["sleep_phase_5_min"]?.string {
            addStages(Array(phases), from: start, until: end, to: &batch)
        }
        addSeries(document["heart_rate"], .heartRate, unit: "/min", to: &batch)
        // HRV items of 0 are gaps in older data, not an RMSSD of 0 ms.
        addSeries(document["hrv"], .hrvRMSSD, unit: "ms", positiveOnly: true, to: &batch)
        if type == nil || type == "long_sleep" {
            batch.add(
                .restingHeartRate, document["lowest_heart_rate"]?.double, unit: "/min", at: end,
                quality: .vendorComputed)
        }
        return batch.samples
    }

    static func addStages(
        _ phases: [Character], from start: Timestamp, until end: Timestamp, to batch: inout SampleBatch
    ) {
        guard !phases.isEmpty else { return }
        let step: Int64 = 300_000
        var runStart = 0
        for i in 1...phases.count where i == phases.count || phases[i] != phases[runStart] {
            defer { runStart = i }
            guard let stage = sleepStages[phases[runStart]] else { continue }
            let from = start.adding(milliseconds: Int64(runStart) * step)
            let to = min(start.adding(milliseconds: Int64(i) * step), end)
            guard to > from else { continue }
            batch.add(.sleepStage, .category(stage), unit: "{stage}", at: from, end: to, quality: .vendorComputed)
        }
    }

    /// An Oura sample object: `items[i]` at `timestamp + i × interval` seconds; `null` items are gaps.
    static func addSeries(
        _ sample: JSONValue?, _ metric: Metric, unit: String, positiveOnly: Bool = false, to batch: inout SampleBatch
    ) {
        guard let sample, let interval = sample["interval"]?.double, interval > 0,
            let items = sample["items"]?.array,
            let first = sample["timestamp"]?.string.flatMap({ Timestamp(rfc3339: $0) })
        else { return }
        for (i, item) in items.enumerated() {
            guard let value = item.double, !positiveOnly || value > 0 else { continue }
            batch.add(
                metric, value, unit: unit,
                at: first.adding(milliseconds: Int64((Double(i) * interval * 1000).rounded())))
        }
    }

    // MARK: daily activity

    /// Oura's activity day is the 24 hours from 4 a.m. local time; `timestamp` is that start with the
    /// user's offset (`2026-11-20T04:00:00+01:00`), else `met.timestamp` is.
    static func activityInterval(_ document: JSONValue) -> (start: Timestamp, end: Timestamp)? {
        let text = document["timestamp"]?.string ?? document["met"]?["timestamp"]?.string
        guard let start = text.flatMap({ Timestamp(rfc3339: $0) }) else { return nil }
        return (start, start.adding(milliseconds: dayMillis))
    }

    /// Steps and active calories over the activity day. A day still running when the document was read
    /// maps to nothing: its totals are partial, and a sample over the whole day would claim otherwise
    /// (and keep its id when the final totals arrive). The first read after the day is over maps it.
    static func mapDailyActivity(
        _ document: JSONValue, fetchedAt: Timestamp, subject: String, vendor: String, now: Timestamp
    ) throws(VendorError) -> [Sample] {
        let id = document["id"]?.idString
        guard let interval = activityInterval(document) else {
            throw .malformed("daily_activity \(id ?? "?"): no timestamp")
        }
        guard fetchedAt >= interval.end else { return [] }
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: id, now: now)
        batch.add(
            .stepCount, document["steps"]?.double, unit: "{steps}", at: interval.start, end: interval.end,
            quality: .vendorComputed)
        batch.add(
            .activeEnergy, document["active_calories"]?.double, unit: "kcal", at: interval.start, end: interval.end,
            quality: .vendorComputed)
        return batch.samples
    }

    // MARK: workout

    /// A workout's distance over its span. Its calories are not mapped: they are part of the day's
    /// `active_calories` already, and consumers summing active energy would count them twice.
    static func mapWorkout(_ document: JSONValue, subject: String, vendor: String, now: Timestamp) throws(VendorError)
        -> [Sample]
    {
        let start = try time(document, "start_datetime")
        let end = try time(document, "end_datetime")
        guard let distance = document["distance"]?.double, distance > 0, end > start else { return [] }
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: document["id"]?.idString, now: now)
        batch.add(.distance, distance, unit: "m", at: start, end: end, quality: .vendorComputed)
        return batch.samples
    }
}

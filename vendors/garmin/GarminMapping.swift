import Foundation
import PulseGateCore
import PulseGateVendorKit

/// Garmin summaries → canonical samples (pure; ``GarminAdapter/mappingVersion`` changes with the output).
///
/// Every Garmin time is Unix seconds (UTC) with the user's local offset in a separate
/// `…OffsetInSeconds` field, which an instant does not need. The `timeOffset…` maps hold values keyed by
/// seconds after the summary's `startTimeInSeconds` (as strings). Only what the schema holds honestly is
/// emitted; README.md lists what is left out and why.
public enum GarminMapping {
    /// Key prefix of a FIT file fetched from an `activityFiles` callback (the rest is the activity id).
    public static let activityFilePrefix = "activityFile:"

    /// The samples of one kept record: `<summary type>:<summaryId>` (a pushed or pinged summary, its
    /// exact bytes) or `activityFile:<activityId>` (FIT bytes).
    public static func samples(of record: RawRecord, subject: String, vendor: String, now: Timestamp)
        throws(VendorError) -> any SampleSource
    {
        if record.key.hasPrefix(activityFilePrefix) {
            let id = String(record.key.dropFirst(activityFilePrefix.count))
            return GarminFITSource(bytes: record.body, activityID: id, subject: subject, vendor: vendor, now: now)
        }
        guard let colon = record.key.firstIndex(of: ":") else {
            throw .malformed("record key \(record.key) has no type")
        }
        let type = String(record.key[..<colon])
        if type == "activityDetails" {
            return try GarminActivityDetailsSource(bytes: record.body, subject: subject, vendor: vendor, now: now)
        }
        let json = try JSONValue.vendorPayload(record.body)
        return ArraySampleSource(try summary(type: type, json, subject: subject, vendor: vendor, now: now))
    }

    /// A summary of bounded size (a day, a night, a 15-minute epoch, a measurement).
    static func summary(type: String, _ json: JSONValue, subject: String, vendor: String, now: Timestamp)
        throws(VendorError) -> [Sample]
    {
        guard json.object != nil else { throw .malformed("\(type) summary is not an object") }
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: json["summaryId"]?.idString, now: now)
        switch type {
        case "dailies": try dailies(json, into: &batch)
        case "epochs": try epochs(json, into: &batch)
        case "sleeps": sleeps(json, into: &batch)
        case "hrv": try series(json, "hrvValues", .hrvRMSSD, unit: "ms", into: &batch)
        case "pulseox": try series(json, "timeOffsetSpo2Values", .spo2, unit: "%", into: &batch)
        case "allDayRespiration":
            try series(json, "timeOffsetEpochToBreaths", .respiratoryRate, unit: "/min", into: &batch)
        case "bodyComps":
            let at = try time(json, "measurementTimeInSeconds")
            batch.add(.bodyWeight, json["weightInGrams"]?.double, unit: "g", at: at)
            batch.add(.bodyFat, json["bodyFatInPercent"]?.double, unit: "%", at: at)
        case "bloodPressures":
            let at = try time(json, "measurementTimeInSeconds")
            batch.add(.bloodPressureSystolic, json["systolic"]?.double, unit: "mm[Hg]", at: at)
            batch.add(.bloodPressureDiastolic, json["diastolic"]?.double, unit: "mm[Hg]", at: at)
            batch.add(.heartRate, json["pulse"]?.double, unit: "/min", at: at)
        default:
            throw .malformed("no mapping for Garmin summary type \(type)")
        }
        return batch.samples
    }

    static func time(_ json: JSONValue, _ key: String) throws(VendorError) -> Timestamp {
        guard let seconds = json[key]?.int else { throw .malformed("\(key) is missing or not whole seconds") }
        return Timestamp(millisecondsSinceEpoch: seconds * 1000)
    }

    /// `{"<seconds after start>": value}` as (offset, value) pairs in time order. Values of 0 or below are
    /// Garmin's "nothing measured" (no SpO2, breath rate or RMSSD is 0), not readings.
    static func offsets(_ map: JSONValue?) -> [(seconds: Int64, value: Double)] {
        guard let object = map?.object else { return [] }
        return object.compactMap { key, value in
            guard let seconds = Int64(key), seconds >= 0, let number = value.double, number > 0 else { return nil }
            return (seconds, number)
        }.sorted { $0.seconds < $1.seconds }
    }

    static func series(
        _ json: JSONValue, _ field: String, _ metric: Metric, unit: String, into batch: inout SampleBatch
    ) throws(VendorError) {
        let start = try time(json, "startTimeInSeconds")
        for (seconds, value) in offsets(json[field]) {
            batch.add(metric, value, unit: unit, at: start.adding(milliseconds: seconds * 1000))
        }
    }

    /// The day's heart rate (every 15 s, offsets from the day's start) and its resting heart rate. The
    /// day's step, energy and distance totals are not mapped: the epochs carry the same movement in
    /// 15-minute intervals, and a day still in progress would be a partial total.
    static func dailies(_ json: JSONValue, into batch: inout SampleBatch) throws(VendorError) {
        let start = try time(json, "startTimeInSeconds")
        for (seconds, bpm) in offsets(json["timeOffsetHeartRateSamples"]) {
            batch.add(.heartRate, bpm, unit: "/min", at: start.adding(milliseconds: seconds * 1000))
        }
        batch.add(
            .restingHeartRate, json["restingHeartRateInBeatsPerMinute"]?.double, unit: "/min", at: start,
            quality: .vendorComputed)
    }

    /// Steps and active energy over the epoch's own interval (15 minutes, one epoch per activity type).
    /// The epoch's distance is not mapped: walking and running inside an activity come again, second by
    /// second, from its activityDetails.
    static func epochs(_ json: JSONValue, into batch: inout SampleBatch) throws(VendorError) {
        let start = try time(json, "startTimeInSeconds")
        guard let duration = json["durationInSeconds"]?.int, duration > 0 else {
            throw .malformed("epoch without a positive durationInSeconds")
        }
        let end = start.adding(milliseconds: duration * 1000)
        batch.add(.stepCount, json["steps"]?.double, unit: "{steps}", at: start, end: end)
        batch.add(
            .activeEnergy, json["activeKilocalories"]?.double, unit: "kcal", at: start, end: end,
            quality: .vendorComputed)
    }

    static let sleepStages = ["deep": "deep", "light": "light", "rem": "rem", "awake": "awake"]

    /// `sleepLevelsMap` lists each stage's ranges with absolute start and end times.
    static func sleeps(_ json: JSONValue, into batch: inout SampleBatch) {
        var ranges = [(start: Int64, end: Int64, stage: String)]()
        for (name, list) in json["sleepLevelsMap"]?.object ?? [:] {
            guard let stage = sleepStages[name] else { continue }
            for range in list.array ?? [] {
                guard let start = range["startTimeInSeconds"]?.int, let end = range["endTimeInSeconds"]?.int,
                    end > start
                else { continue }
                ranges.append((start, end, stage))
            }
        }
        for r in ranges.sorted(by: { $0.start < $1.start }) {
            batch.add(
                .sleepStage, .category(r.stage), unit: "{stage}", at: Timestamp(millisecondsSinceEpoch: r.start * 1000),
                end: Timestamp(millisecondsSinceEpoch: r.end * 1000), quality: .vendorComputed)
        }
    }
}

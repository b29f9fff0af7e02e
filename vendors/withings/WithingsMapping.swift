import Foundation
import PulseGateCore
import PulseGateVendorKit

/// Withings records → canonical samples.
///
/// Every Withings time is epoch seconds, so samples are in UTC without knowing the user's zone (the
/// `timezone` of a getmeas answer is kept in the record, not used). Values come as integers with a
/// decimal exponent (measures) or as plain numbers (intraday, sleep).
extension WithingsAdapter {
    /// Maps a kept record by its `kind`: a measure group, an intraday window or a sleep window.
    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        let json = try JSONValue.vendorPayload(record.body)
        let subject = connection.subject
        switch json["kind"]?.string {
        case "measuregrp":
            return try Self.mapMeasureGroup(json["group"] ?? .null, subject: subject, vendor: manifest.id, now: now)
        case "intraday":
            return Self.mapIntraday(json["series"] ?? .null, subject: subject, vendor: manifest.id, now: now)
        case "sleep":
            return Self.mapSleep(json["series"] ?? .null, subject: subject, vendor: manifest.id, now: now)
        default:
            throw .malformed("record \(record.key) has no known kind")
        }
    }

    static func device(_ model: JSONValue?) -> SourceRef.Device? {
        guard let model = model?.string, !model.isEmpty, model.utf8.count <= 200 else { return nil }
        return SourceRef.Device(manufacturer: "Withings", model: model)
    }

    static func instant(_ seconds: Int64) -> Timestamp? {
        guard seconds >= 0, seconds < 100_000_000_000 else { return nil }
        return Timestamp(millisecondsSinceEpoch: seconds * 1000)
    }

    // MARK: measures

    /// Measure types with an honest place in the schema. 12 ("Temperature", the Thermo) and 71 ("Body
    /// Temperature") are both body temperature; fat ratio (bioimpedance) and VO2 max are estimates.
    static let measureMetrics: [Int64: (metric: Metric, unit: String, quality: Quality)] = [
        1: (.bodyWeight, "kg", []), 6: (.bodyFat, "%", .vendorComputed), 9: (.bloodPressureDiastolic, "mm[Hg]", []),
        10: (.bloodPressureSystolic, "mm[Hg]", []), 11: (.heartRate, "/min", []), 12: (.bodyTemperature, "Cel", []),
        54: (.spo2, "%", []), 71: (.bodyTemperature, "Cel", []), 73: (.skinTemperature, "Cel", []),
        123: (.vo2max, "mL/min/kg", .vendorComputed),
    ]

    /// `attrib` values left out: 1, a device measure that may belong to another user of the same
    /// scale (Withings could not tell who stepped on it), and 4, a value typed in when the account was
    /// created ("may not be accurate"). Device (0, 5, 8), confirmed (7) and manual (2) entries are the
    /// user's own.
    static let skippedAttribs: Set<Int64> = [1, 4]

    /// `value × 10^unit`, by division for negative exponents so that 72500 × 10⁻³ is exactly 72.5.
    public static func realValue(_ measure: JSONValue) -> Double? {
        guard let value = measure["value"]?.double, let unit = measure["unit"]?.int, (-18...18).contains(unit) else {
            return nil
        }
        let scale = pow(10.0, Double(abs(unit)))
        return unit < 0 ? value / scale : value * scale
    }

    /// One measure group (one weighing, one blood-pressure reading): its measures at its `date`, with
    /// the group id as record id. Goals (category 2) are not measurements.
    static func mapMeasureGroup(_ group: JSONValue, subject: String, vendor: String, now: Timestamp)
        throws(VendorError) -> [Sample]
    {
        guard let id = group["grpid"]?.idString, !id.isEmpty else { throw .malformed("measure group without grpid") }
        guard let at = group["date"]?.int.flatMap(instant) else {
            throw .malformed("measure group \(id) without a usable date")
        }
        guard let measures = group["measures"]?.array else { throw .malformed("measure group \(id) without measures") }
        if let category = group["category"]?.int, category != 1 { return [] }
        if let attrib = group["attrib"]?.int, skippedAttribs.contains(attrib) { return [] }
        var batch = SampleBatch(
            subject: subject, vendor: vendor, recordID: id, device: device(group["model"]), now: now)
        var seen = Set<String>()
        for measure in measures {
            guard let type = measure["type"]?.int, let target = measureMetrics[type],
                let value = realValue(measure), seen.insert(target.metric.name).inserted
            else { continue }
            batch.add(target.metric, value, unit: target.unit, at: at, quality: target.quality)
        }
        return batch.samples
    }

    // MARK: intraday activity

    /// `series` keyed by epoch seconds; each entry covers `duration` seconds from its key. Counts (steps,
    /// distance, active calories) become intervals over that duration — an entry without a duration has
    /// no interval to put them on and keeps only its instant values. Zero counts are left out: Withings
    /// lists an entry for any minute with a reading, and a minute without steps is not a step count.
    static func mapIntraday(_ series: JSONValue, subject: String, vendor: String, now: Timestamp) -> [Sample] {
        guard let entries = series.object else { return [] }
        var out = [Sample]()
        for (key, entry) in entries.compactMap({ k, v in Int64(k).map { ($0, v) } }).sorted(by: { $0.0 < $1.0 }) {
            guard let at = instant(key) else { continue }
            var batch = SampleBatch(
                subject: subject, vendor: vendor, recordID: nil, device: device(entry["model"]), now: now)
            batch.add(.heartRate, entry["heart_rate"]?.double, unit: "/min", at: at)
            batch.add(.spo2, entry["spo2_auto"]?.double, unit: "%", at: at)
            batch.add(.hrvRMSSD, positive(entry["rmssd"]), unit: "ms", at: at)
            batch.add(.respiratoryRate, positive(entry["rr"]), unit: "/min", at: at)
            if let duration = entry["duration"]?.int, duration > 0, duration <= daySeconds {
                let end = at.adding(milliseconds: duration * 1000)
                batch.add(.stepCount, positive(entry["steps"]), unit: "{steps}", at: at, end: end)
                batch.add(.distance, positive(entry["distance"]), unit: "m", at: at, end: end)
                batch.add(
                    .activeEnergy, positive(entry["calories"]), unit: "kcal", at: at, end: end,
                    quality: .vendorComputed)
            }
            out += batch.samples
        }
        return out
    }

    static func positive(_ value: JSONValue?) -> Double? {
        guard let number = value?.double, number > 0 else { return nil }
        return number
    }

    // MARK: sleep

    /// Sleep `state`: 0 awake, 1 light, 2 deep, 3 REM, 4 manual (a sleep the user entered), 5 unspecified;
    /// 15 (out of bed) and anything else are not a sleep stage.
    static let sleepStates: [Int64: String] = [0: "awake", 1: "light", 2: "deep", 3: "rem", 4: "asleep", 5: "asleep"]

    /// Segments `startdate`…`enddate` with a state, each with its own series keyed by epoch seconds:
    /// `hr` (heart rate), `rr` (respiration rate), `rmssd`. A reading listed by two segments (or two
    /// windows) is one sample. Stages the device scored are vendor-computed; a manual one is not.
    static func mapSleep(_ series: JSONValue, subject: String, vendor: String, now: Timestamp) -> [Sample] {
        guard let segments = series.array else { return [] }
        var out = [Sample]()
        var seen = Set<String>()
        let ordered = segments.sorted { ($0["startdate"]?.int ?? 0) < ($1["startdate"]?.int ?? 0) }
        for segment in ordered {
            var batch = SampleBatch(
                subject: subject, vendor: vendor, recordID: nil, device: device(segment["model"]), now: now)
            if let state = segment["state"]?.int, let stage = sleepStates[state],
                let start = segment["startdate"]?.int.flatMap(instant),
                let end = segment["enddate"]?.int.flatMap(instant),
                end > start
            {
                batch.add(
                    .sleepStage, .category(stage), unit: "{stage}", at: start, end: end,
                    quality: state == 4 ? [] : .vendorComputed)
            }
            for (field, metric, unit) in [
                ("hr", Metric.heartRate, "/min"), ("rr", Metric.respiratoryRate, "/min"),
                ("rmssd", Metric.hrvRMSSD, "ms"),
            ] {
                guard let points = segment[field]?.object else { continue }
                for (key, value) in points.compactMap({ k, v in Int64(k).map { ($0, v) } }).sorted(by: { $0.0 < $1.0 })
                {
                    guard let at = instant(key), seen.insert("\(field)@\(key)").inserted else { continue }
                    batch.add(metric, positive(value), unit: unit, at: at)
                }
            }
            out += batch.samples
        }
        return out
    }
}

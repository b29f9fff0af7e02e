import Foundation
import PulseGateCore
import PulseGateVendorKit

/// WHOOP records → canonical samples.
///
/// WHOOP writes instants in UTC (`2022-04-24T02:25:44.774Z`) and the user's offset apart
/// (`timezone_offset`), so times are taken as written. Only records whose `score_state` is `SCORED`
/// carry values: `PENDING_SCORE` and `UNSCORABLE` map to nothing (a later update brings the score).
/// Everything WHOOP serves is a per-sleep or per-workout summary computed by WHOOP, hence the
/// `vendor_computed` flag on every sample.
extension WhoopAdapter {
    /// Every value comes from a WHOOP strap; which model is not in the API.
    static let device = SourceRef.Device(manufacturer: "WHOOP")

    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        let json = try JSONValue.vendorPayload(record.body)
        let subject = connection.subject
        switch json["type"]?.string {
        case "sleep":
            return try Self.mapSleep(try Self.object(json, "sleep"), subject: subject, vendor: manifest.id, now: now)
        case "recovery":
            return try Self.mapRecovery(
                try Self.object(json, "recovery"), sleep: try Self.object(json, "sleep"), subject: subject,
                vendor: manifest.id, now: now)
        case "workout":
            return try Self.mapWorkout(
                try Self.object(json, "workout"), subject: subject, vendor: manifest.id, now: now)
        default:
            throw .malformed("record \(record.key) has no known type")
        }
    }

    static func object(_ json: JSONValue, _ key: String) throws(VendorError) -> JSONValue {
        guard let value = json[key], value.object != nil else { throw .malformed("record has no \(key) object") }
        return value
    }

    static func time(_ document: JSONValue, _ key: String) throws(VendorError) -> Timestamp {
        guard let text = document[key]?.string else { throw .malformed("\(key) is missing") }
        guard let time = Timestamp(rfc3339: text) else {
            throw .malformed("\(key) '\(text.prefix(40))' is not RFC 3339")
        }
        return time
    }

    /// The score of a `SCORED` record, else `nil` (nothing to map yet, or ever).
    static func score(_ document: JSONValue) -> JSONValue? {
        guard document["score_state"]?.string == "SCORED", let score = document["score"], score.object != nil
        else { return nil }
        return score
    }

    // MARK: sleep

    /// A sleep (or nap): its bounds as one `in_bed` interval and its respiratory rate at its end.
    ///
    /// WHOOP gives the time spent in each stage (light, slow wave, REM, awake) as totals, not when:
    /// laying them out as intervals would invent a timeline, so they are not mapped. The sleep's own
    /// bounds are WHOOP's measurement, and `in_bed` is the stage that covers all of it, awake
    /// stretches included. The respiratory rate is the sleep's average, known once the sleep is over.
    static func mapSleep(_ sleep: JSONValue, subject: String, vendor: String, now: Timestamp) throws(VendorError)
        -> [Sample]
    {
        guard let score = score(sleep) else { return [] }
        let id = sleep["id"]?.string
        let start = try time(sleep, "start")
        let end = try time(sleep, "end")
        guard end > start else { throw .malformed("sleep \(id ?? "?"): end is not after start") }
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: id, device: device, now: now)
        batch.add(.sleepStage, .category("in_bed"), unit: "{stage}", at: start, end: end, quality: .vendorComputed)
        batch.add(
            .respiratoryRate, score["respiratory_rate"]?.double, unit: "/min", at: end, quality: .vendorComputed)
        return batch.samples
    }

    // MARK: recovery

    /// Resting heart rate, RMSSD, SpO2 and skin temperature of the recovery, at the end of the sleep
    /// they were measured in (WHOOP computes the recovery from that sleep, once it is over).
    ///
    /// The record id is the sleep's UUID: WHOOP's v2 model names a recovery by it, and deletes a
    /// recovery together with its sleep. `user_calibrating` qualifies the recovery *score* (WHOOP's
    /// baselines), not these measurements, so it does not hold them back. SpO2 and skin temperature
    /// exist from WHOOP 4.0 on and are simply absent before.
    static func mapRecovery(
        _ recovery: JSONValue, sleep: JSONValue, subject: String, vendor: String, now: Timestamp
    ) throws(VendorError) -> [Sample] {
        guard let score = score(recovery) else { return [] }
        guard let sleepID = recovery["sleep_id"]?.string, sleep["id"]?.string == sleepID else {
            throw .malformed("recovery record whose sleep is not its sleep_id")
        }
        let at = try time(sleep, "end")
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: sleepID, device: device, now: now)
        batch.add(
            .restingHeartRate, score["resting_heart_rate"]?.double, unit: "/min", at: at, quality: .vendorComputed)
        // An RMSSD of 0 ms is no measurement.
        if let rmssd = score["hrv_rmssd_milli"]?.double, rmssd > 0 {
            batch.add(.hrvRMSSD, rmssd, unit: "ms", at: at, quality: .vendorComputed)
        }
        batch.add(.spo2, score["spo2_percentage"]?.double, unit: "%", at: at, quality: .vendorComputed)
        batch.add(
            .skinTemperature, score["skin_temp_celsius"]?.double, unit: "Cel", at: at, quality: .vendorComputed)
        return batch.samples
    }

    // MARK: workout

    /// A workout's distance over its span, when WHOOP has one (GPS or a connected app sent it).
    ///
    /// Not mapped: `average_heart_rate` and `max_heart_rate` (summaries of a series WHOOP does not
    /// serve; neither is an instant's reading), `kilojoule` (WHOOP's energy includes the resting
    /// part, and the schema's `active_energy` does not), strain, zone durations and altitude gain
    /// (the schema has no place for them).
    static func mapWorkout(_ workout: JSONValue, subject: String, vendor: String, now: Timestamp) throws(VendorError)
        -> [Sample]
    {
        guard let score = score(workout) else { return [] }
        let start = try time(workout, "start")
        let end = try time(workout, "end")
        guard let distance = score["distance_meter"]?.double, distance > 0, end > start else { return [] }
        var batch = SampleBatch(
            subject: subject, vendor: vendor, recordID: workout["id"]?.string, device: device, now: now)
        batch.add(.distance, distance, unit: "m", at: start, end: end, quality: .vendorComputed)
        return batch.samples
    }
}

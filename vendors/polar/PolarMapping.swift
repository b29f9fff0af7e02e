import Foundation
import PulseGateCore
import PulseGateVendorKit

/// Polar records → canonical samples. Pure: everything a record needs is in its bytes, so
/// `pulsegate replay` maps a stored record exactly as the first time.
///
/// Polar writes times as the user's wall clock. Exercises carry the offset next to the time
/// (`start_time_utc_offset`), sleep carries it inside its RFC 3339 times, and continuous heart rate
/// carries none, so its fetch stores the offset it resolved next to the vendor's answer.
enum PolarMapping {
    /// Sample-type codes of exercise samples that map to a metric. The others (pedalling index,
    /// left-right balance, air pressure, running cadence, temperature) have no canonical metric or
    /// would duplicate one.
    enum SampleType: Int64 {
        case heartRate = 0
        case speed = 1
        case cadence = 2
        case altitude = 3
        case power = 4
        case distance = 10
        case rrInterval = 11
    }

    // MARK: exercise

    /// `GET /v3/exercises/{id}?samples=true`, as fetched.
    static func exercise(_ json: JSONValue, key: String, subject: String, vendor: String, now: Timestamp)
        throws(VendorError) -> [Sample]
    {
        let id = json["id"]?.idString ?? String(key.dropFirst("exercise:".count))
        guard let startText = field(json, "start_time")?.string else {
            throw .malformed("exercise \(id): no start_time")
        }
        let offset = field(json, "start_time_utc_offset")?.int
        guard offset != nil || PolarTime.hasZone(startText) else {
            // A wall-clock time without its offset could be off by up to 14 hours: refuse, never guess.
            throw .malformed("exercise \(id): start_time without start_time_utc_offset")
        }
        guard let start = PolarTime.instant(local: startText, utcOffsetMinutes: offset ?? 0) else {
            throw .malformed("exercise \(id): start_time '\(startText.prefix(40))' is not a date-time")
        }
        let model = json["device"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        let deviceID = field(json, "device_id")?.string.flatMap { $0.isEmpty ? nil : $0 }
        let device = model == nil && deviceID == nil ? nil : SourceRef.Device(model: model, serial: deviceID)
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: id, device: device, now: now)
        for series in json["samples"]?.array ?? [] {
            guard let code = field(series, "sample_type").flatMap(sampleTypeCode), let type = SampleType(rawValue: code)
            else { continue }
            let values = splitValues(series["data"]?.string ?? "")
            let rate = field(series, "recording_rate")?.int ?? 0
            if type == .rrInterval {
                addRRIntervals(values, from: start, to: &batch)
                continue
            }
            // Without a recording rate a series cannot be placed in time.
            guard rate > 0 else { continue }
            func at(_ i: Int) -> Timestamp { start.adding(milliseconds: Int64(i) * rate * 1000) }
            switch type {
            case .heartRate:
                for (i, v) in values.enumerated() { batch.add(.heartRate, v, unit: "/min", at: at(i)) }
            case .speed:
                // Polar reports km/h; the schema converts to m/s.
                for (i, v) in values.enumerated() { batch.add(.speed, v, unit: "km/h", at: at(i)) }
            case .cadence:
                for (i, v) in values.enumerated() { batch.add(.cadence, v, unit: "/min", at: at(i)) }
            case .altitude:
                for (i, v) in values.enumerated() { batch.add(.altitude, v, unit: "m", at: at(i)) }
            case .power:
                for (i, v) in values.enumerated() { batch.add(.power, v, unit: "W", at: at(i)) }
            case .distance:
                // Cumulative, like Strava's: the schema's distance is what was covered in an interval.
                var previous: (Timestamp, Double)?
                for (i, v) in values.enumerated() {
                    guard let v else { continue }
                    let t = at(i)
                    if let (pt, pd) = previous, t > pt, v > pd {
                        batch.add(.distance, v - pd, unit: "m", at: pt, end: t)
                    }
                    previous = (t, v)
                }
            case .rrInterval:
                break
            }
        }
        return batch.samples
    }

    /// A field of an exercise or of its sample series. AccessLink's OpenAPI specification (and clients
    /// tested against the live service) spell these keys with hyphens (`start-time`,
    /// `start-time-utc-offset`, `device-id`, `sample-type`), while the newer examples in Polar's
    /// documentation use underscores (`start_time`); both are read, the underscore form first.
    static func field(_ json: JSONValue, _ name: String) -> JSONValue? {
        json[name] ?? json[name.replacingOccurrences(of: "_", with: "-")]
    }

    /// RR intervals have no recording rate: each beat is where the intervals before it add up to. A
    /// `null` (sensor offline for an unknown time) loses that alignment, so the series stops there.
    /// Implausible intervals are still counted in the running time, then refused by the schema.
    static func addRRIntervals(_ values: [Double?], from start: Timestamp, to batch: inout SampleBatch) {
        var elapsed = 0.0
        for value in values {
            guard let value else { return }
            elapsed += value
            batch.add(.rrInterval, value, unit: "ms", at: start.adding(milliseconds: Int64(elapsed.rounded())))
        }
    }

    /// Polar sends the code as a string ("0"); some answers carry a number.
    static func sampleTypeCode(_ value: JSONValue) -> Int64? {
        value.int ?? value.string.flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// `"86,87,null,88"` → `[86, 87, nil, 88]`; `null` or empty marks a dropout.
    static func splitValues(_ data: String) -> [Double?] {
        guard !data.isEmpty else { return [] }
        return data.split(separator: ",", omittingEmptySubsequences: false).map {
            Double($0.trimmingCharacters(in: .whitespaces))
        }
    }

    // MARK: continuous heart rate

    /// The fetch's wrapper: `{"continuous_heart_rate": <vendor answer>, "utc_offset_minutes": N|null,
    /// "utc_offset_source": "sleep"|"recent"|"unknown"}`. Without an offset nothing is emitted: a
    /// guessed zone would put every reading hours off.
    static func continuousHeartRate(_ json: JSONValue, subject: String, vendor: String, now: Timestamp)
        throws(VendorError) -> [Sample]
    {
        let day: JSONValue
        do {
            day = try json.require("continuous_heart_rate")
        } catch {
            throw .missing(error)
        }
        guard let offset = json["utc_offset_minutes"]?.int else { return [] }
        guard let date = day["date"]?.string, let midnight = PolarTime.startOfDay(date, utcOffsetMinutes: offset)
        else { throw .malformed("continuous heart rate without a valid date") }
        var batch = SampleBatch(
            subject: subject, vendor: vendor, recordID: "continuous-heart-rate/\(date)", now: now)
        for sample in day["heart_rate_samples"]?.array ?? [] {
            guard let clock = sample["sample_time"]?.string, let seconds = PolarTime.secondsOfDay(clock) else {
                continue
            }
            batch.add(
                .heartRate, sample["heart_rate"]?.double, unit: "/min",
                at: midnight.adding(milliseconds: seconds * 1000))
        }
        return batch.samples
    }

    // MARK: sleep

    /// Hypnogram codes: 0 awake, 1 REM, 2 and 3 the two lighter non-REM stages, 4 deep; 5 is Polar's
    /// "unrecognised" and emits nothing.
    static let stages: [Int64: String] = [0: "awake", 1: "rem", 2: "light", 3: "light", 4: "deep"]

    /// `GET /v3/users/sleep/{date}`: the hypnogram becomes `sleep_stage` intervals, each lasting until
    /// the next change (the last until `sleep_end_time`). Its `heart_rate_samples` are not mapped: they
    /// are the same readings continuous heart rate delivers, under another record id.
    static func sleep(_ json: JSONValue, subject: String, vendor: String, now: Timestamp) throws(VendorError)
        -> [Sample]
    {
        guard let startText = json["sleep_start_time"]?.string, let start = Timestamp(rfc3339: startText),
            let offset = PolarTime.offsetMinutes(rfc3339: startText),
            let endText = json["sleep_end_time"]?.string, let end = Timestamp(rfc3339: endText)
        else { throw .malformed("sleep without RFC 3339 sleep_start_time/sleep_end_time") }
        let date = json["date"]?.string ?? String(endText.prefix(10))
        var batch = SampleBatch(subject: subject, vendor: vendor, recordID: "sleep/\(date)", now: now)
        // Hypnogram keys are "HH:MM" wall-clock minutes and JSON objects have no order, so each key is
        // placed relative to the sleep start (a night is shorter than a day), not sorted as text.
        let startMinute = start.millisecondsSinceEpoch - start.millisecondsSinceEpoch % 60_000
        let startMinuteOfDay = ((start.millisecondsSinceEpoch / 60_000 + offset) % 1440 + 1440) % 1440
        var entries: [(Timestamp, String?)] = []
        for (key, value) in json["hypnogram"]?.object ?? [:] {
            guard let seconds = PolarTime.secondsOfDay(key), let code = value.int else { continue }
            var minutes = ((seconds / 60 - startMinuteOfDay) % 1440 + 1440) % 1440
            if minutes >= 1380 { minutes -= 1440 }  // up to an hour before the recorded start
            entries.append((Timestamp(millisecondsSinceEpoch: startMinute + minutes * 60_000), stages[code]))
        }
        entries.sort { $0.0 < $1.0 }
        var open: (Timestamp, String)?
        for (t, stage) in entries {
            if let (from, current) = open {
                if stage == current { continue }
                if t > from {
                    batch.add(
                        .sleepStage, .category(current), unit: "{stage}", at: from, end: t, quality: .vendorComputed)
                }
            }
            open = stage.map { (t, $0) }
        }
        if let (from, current) = open, end > from {
            batch.add(.sleepStage, .category(current), unit: "{stage}", at: from, end: end, quality: .vendorComputed)
        }
        return batch.samples
    }
}

/// Polar's wall-clock times, turned into instants.
enum PolarTime {
    /// `YYYY-MM-DDTHH:MM:SS[.fff]` in local time at `utcOffsetMinutes` east of UTC: UTC is local minus
    /// the offset. A time that carries its own zone is taken as written.
    static func instant(local text: String, utcOffsetMinutes: Int64) -> Timestamp? {
        if hasZone(text) { return Timestamp(rfc3339: text) }
        return Timestamp(rfc3339: text + "Z")?.adding(milliseconds: -utcOffsetMinutes * 60_000)
    }

    /// Whether a date-time ends in `Z` or `±HH:MM`.
    static func hasZone(_ text: String) -> Bool {
        let tail = text.utf8.dropFirst(19)
        return tail.contains {
            $0 == UInt8(ascii: "Z") || $0 == UInt8(ascii: "z") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
        }
    }

    /// The offset an RFC 3339 time is written in, in minutes east of UTC.
    static func offsetMinutes(rfc3339 text: String) -> Int64? {
        guard Timestamp(rfc3339: text) != nil else { return nil }
        if text.hasSuffix("Z") || text.hasSuffix("z") { return 0 }
        let zone = Array(text.utf8.suffix(6))
        guard zone.count == 6, let hours = Int64(String(decoding: zone[1...2], as: UTF8.self)),
            let minutes = Int64(String(decoding: zone[4...5], as: UTF8.self))
        else { return nil }
        return (zone[0] == UInt8(ascii: "-") ? -1 : 1) * (hours * 60 + minutes)
    }

    /// Local midnight of a `YYYY-MM-DD` date.
    static func startOfDay(_ date: String, utcOffsetMinutes: Int64) -> Timestamp? {
        guard isDate(date) else { return nil }
        return Timestamp(rfc3339: date + "T00:00:00Z")?.adding(milliseconds: -utcOffsetMinutes * 60_000)
    }

    /// Whether `text` is exactly a calendar date, `YYYY-MM-DD` (safe to put in a URL path).
    static func isDate(_ text: String) -> Bool {
        text.utf8.count == 10 && Timestamp(rfc3339: text + "T00:00:00Z") != nil
    }

    /// `HH:MM` or `HH:MM:SS` → seconds since midnight.
    static func secondsOfDay(_ text: String) -> Int64? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3,
            parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
        else { return nil }
        let values = parts.compactMap { Int64($0) }
        guard values[0] < 24, values[1] < 60, values.count == 2 || values[2] < 60 else { return nil }
        return values[0] * 3600 + values[1] * 60 + (values.count == 3 ? values[2] : 0)
    }

    /// The UTC calendar date of an instant.
    static func date(_ t: Timestamp) -> String { String(t.description.prefix(10)) }
}

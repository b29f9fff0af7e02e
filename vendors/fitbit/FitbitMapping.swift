import PulseGateCore
import PulseGateVendorKit

extension FitbitAdapter {
    /// Maps one page of data points (`{"dataType":…,"dataPoints":[…]}`). Every point carries its own
    /// data source, so each gets its own batch; a point whose time does not parse is skipped.
    public func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]
    {
        let json = try JSONValue.vendorPayload(record.body)
        guard let points = json["dataPoints"]?.array else {
            throw .malformed("record \(record.key) holds no dataPoints")
        }
        var samples = [Sample]()
        for point in points {
            var batch = SampleBatch(
                subject: connection.subject, vendor: manifest.id, recordID: Self.recordID(point),
                device: Self.device(point), now: now)
            Self.add(point, to: &batch)
            samples += batch.samples
        }
        return samples
    }

    /// Times are RFC 3339 physical times (UTC, `Z`); the `civil*` fields and UTC offsets beside them only
    /// say what the user's clock showed, so they are not needed for the canonical UTC instant.
    static func add(_ point: JSONValue, to batch: inout SampleBatch) {
        if let heartRate = point["heartRate"], let at = time(heartRate["sampleTime"]?["physicalTime"]) {
            batch.add(.heartRate, number(heartRate["beatsPerMinute"]), unit: "/min", at: at)
        }
        if let steps = point["steps"], let start = time(steps["interval"]?["startTime"]),
            let end = time(steps["interval"]?["endTime"])
        {
            batch.add(.stepCount, number(steps["count"]), unit: "{steps}", at: start, end: end)
        }
        if let hrv = point["heartRateVariability"], let at = time(hrv["sampleTime"]?["physicalTime"]) {
            batch.add(.hrvRMSSD, number(hrv["rootMeanSquareOfSuccessiveDifferencesMilliseconds"]), unit: "ms", at: at)
            batch.add(.hrvSDNN, number(hrv["standardDeviationMilliseconds"]), unit: "ms", at: at)
        }
        if let spo2 = point["oxygenSaturation"], let at = time(spo2["sampleTime"]?["physicalTime"]) {
            batch.add(.spo2, number(spo2["percentage"]), unit: "%", at: at)
        }
        if let weight = point["weight"], let at = time(weight["sampleTime"]?["physicalTime"]) {
            batch.add(.bodyWeight, number(weight["weightGrams"]), unit: "g", at: at)
        }
        if let resting = point["dailyRestingHeartRate"], let at = noon(resting["date"]) {
            batch.add(
                .restingHeartRate, number(resting["beatsPerMinute"]), unit: "/min", at: at, quality: .vendorComputed)
        }
        for stage in point["sleep"]?["stages"]?.array ?? [] {
            guard let category = sleepStages[stage["type"]?.string ?? ""], let start = time(stage["startTime"]),
                let end = time(stage["endTime"])
            else { continue }
            batch.add(.sleepStage, .category(category), unit: "{stage}", at: start, end: end)
        }
    }

    /// Google's `SleepStage.type`. RESTLESS (classic sleep) counts as awake: Google's own `minutesAsleep`
    /// leaves it out.
    static let sleepStages = [
        "AWAKE": "awake", "LIGHT": "light", "DEEP": "deep", "REM": "rem", "ASLEEP": "asleep", "RESTLESS": "awake",
    ]

    /// Google's JSON carries int64 fields as strings (`"beatsPerMinute": "62"`) and doubles as numbers.
    static func number(_ value: JSONValue?) -> Double? {
        value?.double ?? value?.string.flatMap(Double.init)
    }

    /// A daily summary is dated in the user's time zone without a time of day; 12:00 UTC of that date
    /// falls inside it for every offset from UTC−12 to UTC+11:59.
    static func noon(_ date: JSONValue?) -> Timestamp? {
        guard let year = date?["year"]?.int, let month = date?["month"]?.int, let day = date?["day"]?.int,
            (1...9999).contains(year), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let paddedYear = String(repeating: "0", count: 4 - String(year).count) + String(year)
        return Timestamp(rfc3339: "\(paddedYear)-\(two(month))-\(two(day))T12:00:00Z")
    }

    /// Only identifiable types (sleep, exercise) have a name; its last segment is the data point id.
    static func recordID(_ point: JSONValue) -> String? {
        guard let name = point["name"]?.string, let id = name.split(separator: "/").last, !id.isEmpty else {
            return nil
        }
        return String(id.prefix(200))
    }

    /// `dataSource.device` (`displayName`, `manufacturer`) when the point came from a device.
    static func device(_ point: JSONValue) -> SourceRef.Device? {
        let device = point["dataSource"]?["device"]
        func field(_ key: String) -> String? {
            guard let text = device?[key]?.string, !text.isEmpty else { return nil }
            return String(text.prefix(200))
        }
        let manufacturer = field("manufacturer")
        let model = field("displayName")
        guard manufacturer != nil || model != nil else { return nil }
        return SourceRef.Device(manufacturer: manufacturer, model: model)
    }
}

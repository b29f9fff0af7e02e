/// A metric from the closed registry of schema v1.
///
/// The registry is closed on purpose: consumers (the training pipeline, Open mHealth and FHIR exports)
/// must be able to rely on a metric name meaning one physical quantity in one unit. Adding a metric is
/// a schema change and happens here and in `sample-v1.schema.json` together.
public struct Metric: Sendable, Hashable, CustomStringConvertible {
    /// Whether a sample is a point in time or covers an interval.
    public enum Kind: String, Sendable {
        /// One value at `start`; `end` must be absent.
        case instant
        /// One value over `start ..< end`; `end` is required.
        case interval
    }

    /// Stable snake_case name, the JSON value of `metric`.
    public let name: String
    /// The canonical UCUM unit every sample of this metric carries.
    public let unit: UCUMUnit
    public let kind: Kind
    /// Open mHealth / IEEE 1752.1 schema that carries this quantity, where one exists.
    public let openMHealthSchema: String?
    /// LOINC code of the observation, where a standard one exists (FHIR export uses it).
    public let loinc: String?
    /// Physically plausible range of the canonical value; values outside are rejected, not clamped.
    public let range: ClosedRange<Double>?
    /// Allowed category values for categorical metrics (`sleep_stage`); `nil` for numeric metrics.
    public let categories: [String]?

    public var description: String { name }
    public var isCategorical: Bool { categories != nil }
}

extension Metric {
    public static let heartRate = Metric(
        name: "heart_rate", unit: .perMinute, kind: .instant, openMHealthSchema: "omh:heart-rate:2.0",
        loinc: "8867-4", range: 10...300, categories: nil)
    public static let rrInterval = Metric(
        name: "rr_interval", unit: .millisecond, kind: .instant, openMHealthSchema: "omh:rr-interval:1.0",
        loinc: nil, range: 100...5000, categories: nil)
    public static let power = Metric(
        name: "power", unit: .watt, kind: .instant, openMHealthSchema: nil, loinc: nil, range: 0...5000,
        categories: nil)
    public static let cadence = Metric(
        name: "cadence", unit: .perMinute, kind: .instant, openMHealthSchema: nil, loinc: nil, range: 0...500,
        categories: nil)
    public static let speed = Metric(
        name: "speed", unit: .meterPerSecond, kind: .instant, openMHealthSchema: "omh:speed:1.0", loinc: nil,
        range: 0...150, categories: nil)
    public static let distance = Metric(
        name: "distance", unit: .meter, kind: .interval, openMHealthSchema: nil, loinc: nil, range: 0...100_000_000,
        categories: nil)
    public static let altitude = Metric(
        name: "altitude", unit: .meter, kind: .instant, openMHealthSchema: nil, loinc: nil, range: -1000...10_000,
        categories: nil)
    public static let latitude = Metric(
        name: "latitude", unit: .degree, kind: .instant, openMHealthSchema: "omh:geoposition:1.0", loinc: nil,
        range: -90...90, categories: nil)
    public static let longitude = Metric(
        name: "longitude", unit: .degree, kind: .instant, openMHealthSchema: "omh:geoposition:1.0", loinc: nil,
        range: -180...180, categories: nil)
    public static let stepCount = Metric(
        name: "step_count", unit: .steps, kind: .interval, openMHealthSchema: "omh:step-count:2.0",
        loinc: "55423-8", range: 0...1_000_000, categories: nil)
    public static let activeEnergy = Metric(
        name: "active_energy", unit: .kilocalorie, kind: .interval, openMHealthSchema: "omh:calories-burned:2.0",
        loinc: "41981-2", range: 0...100_000, categories: nil)
    public static let hrvRMSSD = Metric(
        name: "hrv_rmssd", unit: .millisecond, kind: .instant, openMHealthSchema: nil, loinc: nil, range: 0...1000,
        categories: nil)
    public static let hrvSDNN = Metric(
        name: "hrv_sdnn", unit: .millisecond, kind: .instant, openMHealthSchema: nil, loinc: "80404-7",
        range: 0...1000, categories: nil)
    public static let restingHeartRate = Metric(
        name: "resting_heart_rate", unit: .perMinute, kind: .instant, openMHealthSchema: "omh:heart-rate:2.0",
        loinc: "40443-4", range: 10...250, categories: nil)
    public static let spo2 = Metric(
        name: "spo2", unit: .percent, kind: .instant, openMHealthSchema: "omh:oxygen-saturation:2.0",
        loinc: "59408-5", range: 0...100, categories: nil)
    public static let respiratoryRate = Metric(
        name: "respiratory_rate", unit: .perMinute, kind: .instant, openMHealthSchema: "omh:respiratory-rate:2.0",
        loinc: "9279-1", range: 0...150, categories: nil)
    public static let bodyWeight = Metric(
        name: "body_weight", unit: .kilogram, kind: .instant, openMHealthSchema: "omh:body-weight:2.0",
        loinc: "29463-7", range: 0.5...700, categories: nil)
    public static let bodyFat = Metric(
        name: "body_fat", unit: .percent, kind: .instant, openMHealthSchema: "omh:body-fat-percentage:2.0",
        loinc: "41982-0", range: 0...100, categories: nil)
    public static let bodyTemperature = Metric(
        name: "body_temperature", unit: .celsius, kind: .instant, openMHealthSchema: "omh:body-temperature:3.0",
        loinc: "8310-5", range: 20...46, categories: nil)
    public static let skinTemperature = Metric(
        name: "skin_temperature", unit: .celsius, kind: .instant, openMHealthSchema: nil, loinc: nil,
        range: 0...50, categories: nil)
    public static let ambientTemperature = Metric(
        name: "ambient_temperature", unit: .celsius, kind: .instant,
        openMHealthSchema: "omh:ambient-temperature:1.0", loinc: nil, range: -90...70, categories: nil)
    public static let bloodPressureSystolic = Metric(
        name: "blood_pressure_systolic", unit: .millimeterOfMercury, kind: .instant,
        openMHealthSchema: "omh:blood-pressure:3.0", loinc: "8480-6", range: 30...320, categories: nil)
    public static let bloodPressureDiastolic = Metric(
        name: "blood_pressure_diastolic", unit: .millimeterOfMercury, kind: .instant,
        openMHealthSchema: "omh:blood-pressure:3.0", loinc: "8462-4", range: 10...250, categories: nil)
    public static let sleepStage = Metric(
        name: "sleep_stage", unit: .stage, kind: .interval, openMHealthSchema: "omh:sleep-episode:1.1", loinc: nil,
        range: nil, categories: ["awake", "light", "deep", "rem", "asleep", "in_bed"])
    public static let vo2max = Metric(
        name: "vo2max", unit: .milliliterPerMinutePerKilogram, kind: .instant, openMHealthSchema: nil, loinc: nil,
        range: 5...100, categories: nil)

    /// Every metric of schema v1, in documentation order.
    public static let all: [Metric] = [
        .heartRate, .rrInterval, .power, .cadence, .speed, .distance, .altitude, .latitude, .longitude,
        .stepCount, .activeEnergy, .hrvRMSSD, .hrvSDNN, .restingHeartRate, .spo2, .respiratoryRate,
        .bodyWeight, .bodyFat, .bodyTemperature, .skinTemperature, .ambientTemperature,
        .bloodPressureSystolic, .bloodPressureDiastolic, .sleepStage, .vo2max,
    ]

    private static let byName: [String: Metric] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// Looks a metric up by its JSON name; `nil` for names outside the registry.
    public static func named(_ name: String) -> Metric? { byName[name] }
}

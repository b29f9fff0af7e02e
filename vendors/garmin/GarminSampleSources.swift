import Foundation
import PulseGateCore
import PulseGateFIT
import PulseGateVendorKit

/// The samples of one `activityDetails` summary, read one element of its `samples` list at a time.
///
/// A 10-hour activity holds 36,000 elements; as a tree that would be tens of megabytes, and all its
/// canonical samples at once ten times that. Here the summary's bytes are kept as they arrived, a
/// ``JSONArrayCursor`` walks the list, and each element is parsed alone and turned into its samples;
/// memory holds the bytes plus one batch.
///
/// Per element (`startTimeInSeconds`, Unix seconds): `heartRate` → heart_rate, `speedMetersPerSecond` →
/// speed, `bikeCadenceInRPM` else `stepsPerMinute` else `swimCadenceInStrokesPerMinute` → cadence,
/// `powerInWatts` → power, `elevationInMeters` → altitude, `latitudeInDegree` + `longitudeInDegree` →
/// latitude and longitude, `airTemperatureCelcius` (Garmin's spelling) → ambient_temperature, and the
/// cumulative `totalDistanceInMeters` → distance covered since the previous element that had it.
struct GarminActivityDetailsSource: SampleSource {
    private let bytes: [UInt8]
    private var cursor: JSONArrayCursor?
    private let template: SampleBatch
    private var pending: ArraySlice<Sample> = []
    private var previousDistance: (at: Timestamp, meters: Double)?
    private var index = 0

    init(bytes: [UInt8], subject: String, vendor: String, now: Timestamp) throws(VendorError) {
        self.bytes = bytes
        let members: [String: Range<Int>]
        do {
            members = Dictionary(try JSONValue.memberRanges(bytes).map { ($0.key, $0.range) }, uniquingKeysWith: { $1 })
        } catch {
            throw .malformed("activityDetails: \(error)")
        }
        func small(_ key: String) -> JSONValue? {
            members[key].flatMap { try? JSONValue.parse(bytes, range: $0) }
        }
        let summary = small("summary")
        let recordID =
            small("activityId")?.idString ?? summary?["activityId"]?.idString ?? small("summaryId")?.idString
        var device: SourceRef.Device?
        if let name = summary?["deviceName"]?.string, !name.isEmpty, name.lowercased() != "unknown" {
            device = SourceRef.Device(model: name)
        }
        template = SampleBatch(subject: subject, vendor: vendor, recordID: recordID, device: device, now: now)
        if let range = members["samples"] {
            do {
                cursor = try JSONArrayCursor(bytes, range: range)
            } catch {
                throw .malformed("activityDetails \(recordID ?? "?").samples: \(error)")
            }
        }
    }

    mutating func next(max: Int) throws(VendorError) -> [Sample] {
        let limit = Swift.max(1, max)
        var out = Array(pending.prefix(limit))
        pending = pending.dropFirst(out.count)
        while out.count < limit, cursor != nil {
            let element: Range<Int>?
            do {
                element = try cursor?.next()
            } catch {
                throw .malformed("activityDetails samples[\(index)]: \(error)")
            }
            guard let element else {
                cursor = nil
                break
            }
            let sample: JSONValue
            do {
                sample = try JSONValue.parse(bytes, range: element)
            } catch {
                throw .malformed("activityDetails samples[\(index)]: \(error)")
            }
            index += 1
            var batch = template
            add(sample, to: &batch)
            let room = limit - out.count
            out += batch.samples.prefix(room)
            if batch.samples.count > room { pending = batch.samples[room...] }
        }
        return out
    }

    private mutating func add(_ sample: JSONValue, to batch: inout SampleBatch) {
        // An element without its time cannot be placed; Garmin always sends it.
        guard let seconds = sample["startTimeInSeconds"]?.int else { return }
        let at = Timestamp(millisecondsSinceEpoch: seconds * 1000)
        batch.add(.heartRate, sample["heartRate"]?.double, unit: "/min", at: at)
        batch.add(.speed, sample["speedMetersPerSecond"]?.double, unit: "m/s", at: at)
        let cadence =
            sample["bikeCadenceInRPM"]?.double ?? sample["stepsPerMinute"]?.double
            ?? sample["swimCadenceInStrokesPerMinute"]?.double
        batch.add(.cadence, cadence, unit: "/min", at: at)
        batch.add(.power, sample["powerInWatts"]?.double, unit: "W", at: at)
        batch.add(.altitude, sample["elevationInMeters"]?.double, unit: "m", at: at)
        if let latitude = sample["latitudeInDegree"]?.double, let longitude = sample["longitudeInDegree"]?.double {
            batch.add(.latitude, latitude, unit: "deg", at: at)
            batch.add(.longitude, longitude, unit: "deg", at: at)
        }
        // "Celcius" is how Garmin spells it; the correct spelling is read too should Garmin ever fix it.
        let temperature = sample["airTemperatureCelcius"]?.double ?? sample["airTemperatureCelsius"]?.double
        batch.add(.ambientTemperature, temperature, unit: "Cel", at: at)
        if let meters = sample["totalDistanceInMeters"]?.double {
            if let previous = previousDistance, meters > previous.meters, at > previous.at {
                batch.add(.distance, meters - previous.meters, unit: "m", at: previous.at, end: at)
            }
            previousDistance = (at, meters)
        }
    }
}

/// A FIT file from an `activityFiles` callback, decoded a batch at a time by PulseGateFIT. A file the
/// decoder rejects is a ``VendorError/malformed(_:)`` naming the reason and the byte offset.
struct GarminFITSource: SampleSource {
    private var reader: FITSampleReader
    private let activityID: String

    init(bytes: [UInt8], activityID: String, subject: String, vendor: String, now: Timestamp) {
        self.activityID = activityID
        reader = FITSampleReader(
            bytes: bytes, subject: subject, source: SourceRef(kind: .cloud, vendor: vendor, recordID: activityID),
            now: now)
    }

    mutating func next(max: Int) throws(VendorError) -> [Sample] {
        do {
            return try reader.next(max: max)
        } catch {
            throw .malformed(
                "FIT file of activity \(activityID): \(error.reason.rawValue) at byte \(error.offset): \(error.detail)")
        }
    }
}

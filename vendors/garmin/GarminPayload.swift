import Crypto
import Foundation
import PulseGateCore
import PulseGateVendorKit

/// The summary types Garmin delivers, by the name they carry in a notification body, and what pulsegate
/// does with each.
enum GarminSummary {
    /// Types mapped to samples, with the path their backfill is requested under (Garmin names two of
    /// them differently in bodies and in paths).
    static let backfillPath: [String: String] = [
        "dailies": "dailies", "epochs": "epochs", "sleeps": "sleeps", "hrv": "hrv", "pulseox": "pulseOx",
        "allDayRespiration": "respiration", "bodyComps": "bodyComps", "bloodPressures": "bloodPressures",
        "activityDetails": "activityDetails",
    ]

    static let mapped = Set(backfillPath.keys)

    /// The backfill path names, in a fixed order.
    static let backfilled = backfillPath.values.sorted()

    /// Types delivered but not mapped, with the reason (the debug log shows it per notification).
    static let unmapped: [String: String] = [
        "activities":
            "activity summaries repeat what activityDetails (samples) and epochs (steps, energy) carry; mapping their totals would count them twice",
        "manuallyUpdatedActivities": "activity summaries are not mapped (see activities)",
        "moveIQActivities": "Move IQ labels an interval with an activity type, no measured value",
        "stressDetails": "stress level and Body Battery have no metric in schema v1",
        "skinTemp": "skin temperature arrives as a deviation from the user's baseline, not as a temperature",
        "userMetrics": "VO2 max and fitness age carry a calendar date but no time of measurement",
        "healthSnapshot": "Health Snapshot repeats two minutes of values the other summaries carry",
        "mct": "menstrual cycle tracking has no metric in schema v1",
        "solarIntensity": "solar intensity has no metric in schema v1",
    ]
}

/// Turns a stored Garmin notification body into ``VendorNotification``s.
///
/// The body is an object of lists keyed by summary type (`{"dailies":[…],"activityDetails":[…]}`). A
/// list element with a `callbackURL` is a ping (fetched later with the user's token), without one it is
/// the summary itself (push). Bodies are walked by byte ranges (``JSONValue/memberRanges(_:in:)``,
/// ``JSONArrayCursor``): only the small fields that route an element are parsed, and a pushed summary is
/// kept as the exact bytes Garmin sent — a 10-hour `activityDetails` is never built as a tree here.
enum GarminPayload {
    static func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification] {
        let lists: [(key: String, range: Range<Int>)]
        do {
            lists = try JSONValue.memberRanges(body)
        } catch {
            throw .malformed("not a JSON object of summary lists: \(error)")
        }
        var out = [VendorNotification]()
        for (type, range) in lists {
            try forEachElement(of: body, range: range, name: type) { element, index throws(VendorError) in
                let item = try Item(body, range: element, path: "\(type)[\(index)]", needsUser: true)
                let notification = try notification(type: type, item: item, body: body, range: element)
                // Consecutive records of one user travel together: one connection lookup, one batch.
                if case .records(let more) = notification.action, let last = out.last,
                    last.vendorUserID == notification.vendorUserID, case .records(let kept) = last.action
                {
                    out[out.count - 1] = VendorNotification(
                        vendorUserID: last.vendorUserID, action: .records(kept + more))
                } else {
                    out.append(notification)
                }
            }
        }
        return out
    }

    static func notification(type: String, item: Item, body: [UInt8], range: Range<Int>) throws(VendorError)
        -> VendorNotification
    {
        let user = item.userID
        switch type {
        case "deregistrations":
            return VendorNotification(vendorUserID: user, action: .deauthorized)
        case "userPermissionsChange":
            let permissions = try item.value("permissions")?.array?.compactMap(\.string) ?? []
            return VendorNotification(
                vendorUserID: user,
                action: .fetch(
                    FetchTask(
                        kind: "permissions", key: "permissions",
                        parameters: .object(["announced": .array(permissions.map(JSONValue.string))]))))
        case "activityFiles":
            return try activityFile(item, user: user)
        default:
            break
        }
        guard GarminSummary.mapped.contains(type) else {
            let why = GarminSummary.unmapped[type] ?? "\(type) is not a summary type pulsegate knows"
            return VendorNotification(vendorUserID: user, action: .ignore("\(type): \(why)"))
        }
        if let callback = try item.string("callbackURL") {
            return VendorNotification(vendorUserID: user, action: .fetch(pingTask(type: type, url: callback)))
        }
        let key = try recordKey(type: type, item: item)
        return VendorNotification(
            vendorUserID: user, action: .records([RawRecord(key: key, body: Array(body[range]))]))
    }

    /// `activityFiles` always arrive as pings. Only FIT is decoded; TCX and GPX repeat what the FIT
    /// file (and activityDetails) carry, in formats pulsegate does not read.
    static func activityFile(_ item: Item, user: String) throws(VendorError) -> VendorNotification {
        guard let url = try item.string("callbackURL") else {
            throw .malformed("\(item.path): activity file without a callbackURL")
        }
        let fileType = (try item.string("fileType"))?.uppercased() ?? "FIT"
        guard fileType == "FIT" else {
            return VendorNotification(
                vendorUserID: user,
                action: .ignore("activity file of type \(fileType): only FIT is decoded (TCX/GPX carry the same data)"))
        }
        guard let id = try item.firstID(["activityId", "summaryId"]) else {
            throw .malformed("\(item.path): activity file without activityId or summaryId")
        }
        return VendorNotification(
            vendorUserID: user,
            action: .fetch(
                FetchTask(
                    kind: "activity_file", key: "activity_file:\(id)",
                    parameters: .object(["url": .string(url), "activity_id": .string(id)]))))
    }

    /// A ping's callback, keyed by its URL (the same ping twice is one job; the URL names the upload window).
    static func pingTask(type: String, url: String) -> FetchTask {
        let digest = Array(SHA256.hash(data: Array(url.utf8))).hexString.prefix(24)
        return FetchTask(
            kind: "ping", key: "ping:\(type):\(digest)",
            parameters: .object(["type": .string(type), "url": .string(url)]))
    }

    /// `<type>:<summaryId>`: the same summary delivered again (Garmin re-sends updated summaries under
    /// their id) replaces the kept copy and maps to the same sample ids.
    static func recordKey(type: String, item: Item) throws(VendorError) -> String {
        guard let id = try item.firstID(["summaryId", "activityId", "startTimeInSeconds"]) else {
            throw .malformed("\(item.path): summary without summaryId")
        }
        return "\(type):\(id.prefix(160))"
    }

    /// The records of a ping callback's answer: Garmin answers a list of summaries of the pinged type
    /// (an object of lists, as in a push, is read too).
    static func records(in body: [UInt8], type: String) throws(VendorError) -> [RawRecord] {
        let first = body.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        var ranges = [(type: String, range: Range<Int>)]()
        if first == UInt8(ascii: "[") {
            ranges = [(type, body.indices)]
        } else {
            do {
                ranges = try JSONValue.memberRanges(body).filter { GarminSummary.mapped.contains($0.key) }.map {
                    ($0.key, $0.range)
                }
            } catch {
                throw .malformed("\(type) callback answered neither a list nor an object of lists: \(error)")
            }
        }
        var records = [RawRecord]()
        for (listType, range) in ranges {
            try forEachElement(of: body, range: range, name: listType) { element, index throws(VendorError) in
                let item = try Item(body, range: element, path: "\(listType)[\(index)]", needsUser: false)
                records.append(
                    RawRecord(key: try recordKey(type: listType, item: item), body: Array(body[element])))
            }
        }
        return records
    }

    static func forEachElement(
        of body: [UInt8], range: Range<Int>, name: String,
        _ visit: (Range<Int>, Int) throws(VendorError) -> Void
    ) throws(VendorError) {
        var cursor: JSONArrayCursor
        do {
            cursor = try JSONArrayCursor(body, range: range)
        } catch {
            throw .malformed("\(name) is not a list: \(error)")
        }
        var index = 0
        while true {
            let element: Range<Int>?
            do {
                element = try cursor.next()
            } catch {
                throw .malformed("\(name)[\(index)]: \(error)")
            }
            guard let element else { return }
            try visit(element, index)
            index += 1
        }
    }

    /// One list element: the byte ranges of its members, from which only small routing fields are parsed.
    /// A notification must name its user; a callback's answer belongs to the user whose token fetched it.
    struct Item {
        let bytes: [UInt8]
        let members: [String: Range<Int>]
        let path: String
        let userID: String

        init(_ bytes: [UInt8], range: Range<Int>, path: String, needsUser: Bool) throws(VendorError) {
            self.bytes = bytes
            self.path = path
            guard bytes[range.lowerBound] == UInt8(ascii: "{") else { throw .malformed("\(path) is not an object") }
            do {
                members = Dictionary(
                    try JSONValue.memberRanges(bytes, in: range).map { ($0.key, $0.range) },
                    uniquingKeysWith: { _, last in last })
            } catch {
                throw .malformed("\(path): \(error)")
            }
            let user = members["userId"].flatMap { try? JSONValue.parse(bytes, range: $0).idString } ?? ""
            if needsUser, user.isEmpty { throw .malformed("\(path) has no userId") }
            userID = user
        }

        func value(_ key: String) throws(VendorError) -> JSONValue? {
            guard let range = members[key] else { return nil }
            do {
                return try JSONValue.parse(bytes, range: range)
            } catch {
                throw .malformed("\(path).\(key): \(error)")
            }
        }

        func string(_ key: String) throws(VendorError) -> String? {
            guard let value = try value(key), !value.isNull else { return nil }
            guard let text = value.string else { throw .malformed("\(path).\(key) is not a string") }
            return text
        }

        /// An id Garmin may send as a number or a string.
        func id(_ key: String) throws(VendorError) -> String? {
            try value(key)?.idString.flatMap { $0.isEmpty ? nil : $0 }
        }

        /// The first of `keys` that holds an id.
        func firstID(_ keys: [String]) throws(VendorError) -> String? {
            for key in keys {
                if let id = try id(key) { return id }
            }
            return nil
        }
    }
}

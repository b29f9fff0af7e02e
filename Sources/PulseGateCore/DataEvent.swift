/// A change downstream consumers must honour, sent through the outbox beside the samples: a
/// connection linked, needing re-linking, revoked or unlinked, and **tombstones** — "forget the samples
/// of this subject from this source (or this one record)" — so training data follows consent.
///
/// Event lines are told apart from sample lines by their `event` field (samples never have one); the
/// id is deterministic over the event's identity, so a redelivered event dedupes like a sample.
public struct DataEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case linked = "connection.linked"
        case needsRelink = "connection.needs_relink"
        case revoked = "connection.revoked"
        case unlinked = "connection.unlinked"
        case tombstone
    }

    public let kind: Kind
    public let subject: String
    public let vendor: String
    /// For a tombstone: the one record to forget (`nil`: every sample of the subject from the vendor).
    public let recordID: String?
    public let at: Timestamp
    public let reason: String?

    public init(
        kind: Kind, subject: String, vendor: String, recordID: String? = nil, at: Timestamp, reason: String? = nil
    ) {
        self.kind = kind
        self.subject = subject
        self.vendor = vendor
        self.recordID = recordID
        self.at = at
        self.reason = reason
    }

    public var id: DerivedID {
        DerivedID(fields: ["event", kind.rawValue, subject, vendor, recordID, String(at.millisecondsSinceEpoch)])
    }

    /// One NDJSON line (newline included), as the outbox stores it.
    public var line: [UInt8] {
        var source: [String: JSONValue] = ["kind": .string("cloud"), "vendor": .string(vendor)]
        if let recordID { source["record_id"] = .string(recordID) }
        var object: [String: JSONValue] = [
            "v": .int(1), "event": .string(kind.rawValue), "id": .string(id.description), "subject": .string(subject),
            "source": .object(source), "at": .string(at.description),
        ]
        if let reason { object["reason"] = .string(reason) }
        return JSONValue.object(object).bytes + [0x0A]
    }
}

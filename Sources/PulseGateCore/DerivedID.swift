import Crypto

/// A deterministic id: an RFC 9562 version-8 UUID whose 122 free bits are the first bits of a SHA-256
/// over a list of fields. The same fields always give the same id, on any replica.
///
/// Sample ids are derived from the measurement's identity — subject, metric, every source field that
/// tells devices and records apart, and the start/end instants — not from the value, so a vendor's
/// correction keeps the id and replaces the earlier value downstream. Batch ids are derived from the
/// sink and the rows they carry.
public struct DerivedID: Sendable, Hashable, CustomStringConvertible {
    public let bytes: (UInt64, UInt64)

    public static func == (a: DerivedID, b: DerivedID) -> Bool { a.bytes == b.bytes }
    public func hash(into h: inout Hasher) {
        h.combine(bytes.0)
        h.combine(bytes.1)
    }

    /// Hashes `fields` in order; a `nil` field differs from an empty one, and fields can never run
    /// into each other (each ends with a unit separator).
    public init(fields: [String?]) {
        var hasher = SHA256()
        for field in fields {
            if let field { hasher.update(data: Array(field.utf8)) } else { hasher.update(data: [0x00]) }
            hasher.update(data: [0x1F])
        }
        let digest = Array(hasher.finalize())
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(digest[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(digest[i]) }
        hi = (hi & ~0xF000) | 0x8000  // version 8
        lo = (lo & ~(0xC000_0000_0000_0000)) | 0x8000_0000_0000_0000  // RFC 9562 variant
        bytes = (hi, lo)
    }

    /// Parses the canonical lowercase 8-4-4-4-12 form (upper case accepted).
    public init?(_ text: String) {
        let hex = text.utf8.filter { $0 != UInt8(ascii: "-") }
        guard text.utf8.count == 36, hex.count == 32 else { return nil }
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for (i, c) in hex.enumerated() {
            let v: UInt64
            switch c {
            case 48...57: v = UInt64(c - 48)
            case 97...102: v = UInt64(c - 87)
            case 65...70: v = UInt64(c - 55)
            default: return nil
            }
            if i < 16 { hi = hi << 4 | v } else { lo = lo << 4 | v }
        }
        bytes = (hi, lo)
    }

    public var description: String {
        var out = [UInt8]()
        appendText(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the 36-character text form.
    public func appendText(to out: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
        digits.withUTF8Buffer { d in
            for i in 0..<32 {
                if i == 8 || i == 12 || i == 16 || i == 20 { out.append(UInt8(ascii: "-")) }
                let word = i < 16 ? bytes.0 : bytes.1
                let shift = UInt64((15 - i % 16) * 4)
                out.append(d[Int((word >> shift) & 0xF)])
            }
        }
    }
}

/// The id of a sample (see ``DerivedID``).
public typealias SampleID = DerivedID

extension SampleID {
    init(subject: String, metric: Metric, source: SourceRef, start: Timestamp, end: Timestamp?) {
        self.init(fields: [
            "pulsegate-sample-v1", subject, metric.name, source.kind.rawValue, source.vendor, source.app,
            source.station,
            source.device?.manufacturer, source.device?.model, source.device?.serial, source.device?.address,
            source.recordID, String(start.millisecondsSinceEpoch), end.map { String($0.millisecondsSinceEpoch) },
        ])
    }
}

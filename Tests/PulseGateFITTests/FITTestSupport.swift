import Foundation
import PulseGateCore

@testable import PulseGateFIT

/// The corpus files, from the test bundle (never from outside the repository).
enum Fixture {
    static func bytes(_ name: String) throws -> [UInt8] {
        guard let base = Bundle.module.resourceURL else { throw CocoaError(.fileNoSuchFile) }
        return [UInt8](try Data(contentsOf: base.appendingPathComponent("Fixtures").appendingPathComponent(name)))
    }

    static let valid = [
        "bryton-big-activity-100k-records.fit", "coros-pace2-misaligned-fields.fit",
        "fitsdk-activity-truncated-valid.fit", "fitsdk-developer-data.fit",
        "garmin-edge1030plus-lowbattery-shimano.fit", "garmin-edge1040-gear-change.fit",
        "garmin-edge530-tacx-saris-wahoo.fit", "garmin-edge800-indoor-trainer.fit",
        "garmin-edge810-vector-power.fit", "garmin-fenix5-run-hrv.fit", "garmin-fr70-antfs-compressed-ts.fit",
        "garmin-fr70-compressed-speed-distance.fit", "garmin-fr735xt-chained-5.fit",
        "garmin-fr920xt-multiple-headers.fit", "garmin-fr920xt-tormoder-issue41.fit",
        "garmin-fr955-hrm-plugin-chained.fit", "onelap-developer-fields.fit", "stryd-developer-types.fit",
        "wahoo-elemnt-2019-02-17.fit", "wahoo-elemnt-bolt-no-app-id.fit",
        "wahoo-elemnt-roam-unterminated-strings.fit", "zwift-null-compressed-speed-dist.fit",
    ]
}

/// A fixed clock for the schema's future check: after every fixture, before the 2085 record.
let testNow = Timestamp(rfc3339: "2026-01-01T00:00:00Z")!

/// Every `record` of a stream as the sample reader sees it (hr merged), and the damage that ended it.
func decodeRecords(_ bytes: [UInt8]) -> (records: [FITRecord], error: FITError?) {
    var reader = FITRecordReader(bytes: bytes)
    var records: [FITRecord] = []
    do {
        while let r = try reader.next() { records.append(r) }
    } catch {
        return (records, error)
    }
    return (records, nil)
}

/// Every sample of a stream, in batches of `batch`.
func readAll(_ reader: inout FITSampleReader, batch: Int = 1000) throws(FITError) -> [Sample] {
    var all: [Sample] = []
    while true {
        let next = try reader.next(max: batch)
        if next.isEmpty { return all }
        all += next
    }
}

func reader(_ bytes: [UInt8], salvage: Bool = false, source: SourceRef = SourceRef(kind: .file)) -> FITSampleReader {
    FITSampleReader(bytes: bytes, subject: "u1", source: source, now: testNow, salvage: salvage)
}

/// Builds FIT streams byte by byte, for one protocol feature per test.
struct FITBuilder {
    var data: [UInt8] = []

    enum HeaderCRC { case computed, zero, wrong }
    enum FileCRC { case computed, wrong, missing }

    /// A definition message. `fields` are (number, size, base type byte).
    mutating func define(
        local: UInt8, global: UInt16, bigEndian: Bool = false, fields: [(UInt8, UInt8, UInt8)],
        developer: [(UInt8, UInt8, UInt8)] = []
    ) {
        data.append(0x40 | (developer.isEmpty ? 0 : 0x20) | local)
        data += [0, bigEndian ? 1 : 0]
        data += bigEndian ? [UInt8(global >> 8), UInt8(global & 0xFF)] : [UInt8(global & 0xFF), UInt8(global >> 8)]
        data.append(UInt8(fields.count))
        for f in fields { data += [f.0, f.1, f.2] }
        if !developer.isEmpty {
            data.append(UInt8(developer.count))
            for f in developer { data += [f.0, f.1, f.2] }
        }
    }

    mutating func message(local: UInt8, _ payload: [UInt8]) {
        data.append(local & 0x0F)
        data += payload
    }

    /// A data message with a compressed-timestamp header (local 0–3, offset 0–31 s).
    mutating func compressed(local: UInt8, offset: UInt8, _ payload: [UInt8]) {
        data.append(0x80 | (local & 0x03) << 5 | (offset & 0x1F))
        data += payload
    }

    func file(
        headerSize: Int = 14, headerCRC: HeaderCRC = .computed, fileCRC: FileCRC = .computed, dataSize: Int? = nil
    ) -> [UInt8] {
        var out: [UInt8] = [UInt8(headerSize), 0x20]
        out += le16(2132)
        out += le32(UInt32(dataSize ?? data.count))
        out += Array(".FIT".utf8)
        if headerSize >= 14 {
            switch headerCRC {
            case .computed: out += le16(FITCRC.compute(out, from: 0, to: 12))
            case .zero: out += [0, 0]
            case .wrong: out += le16(FITCRC.compute(out, from: 0, to: 12) ^ 0x5555)
            }
            out += [UInt8](repeating: 0, count: headerSize - 14)
        }
        out += data
        let crc = FITCRC.compute(out, from: 0, to: out.count)
        switch fileCRC {
        case .computed: out += le16(crc)
        case .wrong: out += le16(crc ^ 0x0101)
        case .missing: break
        }
        return out
    }
}

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xFF) } }
func be16(_ v: UInt16) -> [UInt8] { le16(v).reversed() }
func be32(_ v: UInt32) -> [UInt8] { le32(v).reversed() }

/// FIT seconds of an RFC 3339 time.
func fitSeconds(_ text: String) -> UInt32 {
    UInt32(Timestamp(rfc3339: text)!.millisecondsSinceEpoch / 1000 - FITTime.epoch)
}

/// Base type bytes as definitions write them.
enum BT {
    static let enumeration: UInt8 = 0x00
    static let sint8: UInt8 = 0x01
    static let uint8: UInt8 = 0x02
    static let sint16: UInt8 = 0x83
    static let uint16: UInt8 = 0x84
    static let sint32: UInt8 = 0x85
    static let uint32: UInt8 = 0x86
    static let string: UInt8 = 0x07
    static let float32: UInt8 = 0x88
    static let uint8z: UInt8 = 0x0A
    static let uint16z: UInt8 = 0x8B
    static let uint32z: UInt8 = 0x8C
    static let byte: UInt8 = 0x0D
}

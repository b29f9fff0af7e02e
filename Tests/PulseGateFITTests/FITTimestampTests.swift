import PulseGateCore
import Testing

@testable import PulseGateFIT

@Suite struct FITTimestampTests {
    static let t0 = fitSeconds("2024-05-01T10:00:00Z")

    func times(_ bytes: [UInt8]) throws(FITError) -> [UInt32?] {
        var d = FITDecoder(bytes: bytes)
        var out: [UInt32?] = []
        while let m = try d.next() { out.append(m.timestamp) }
        return out
    }

    /// A full timestamp, then compressed headers: offsets replace the low 5 bits and roll over.
    @Test func compressedTimestampHeaders() throws {
        let base = (Self.t0 & ~0x1F) + 30
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8)])
        b.define(local: 1, global: 20, fields: [(3, 1, BT.uint8)])
        b.message(local: 0, le32(base) + [100])
        b.compressed(local: 1, offset: 31, [101])  // +1
        b.compressed(local: 1, offset: 2, [102])  // rolls over: +3
        b.compressed(local: 1, offset: 2, [103])  // same second
        let bytes = b.file()
        #expect(try times(bytes) == [base, base + 1, base + 4, base + 4])
        var r = reader(bytes)
        let hr = try readAll(&r).filter { $0.metric == .heartRate }
        #expect(hr.map(\.value.number) == [100, 101, 102, 103])
        #expect(
            hr.map(\.start.millisecondsSinceEpoch)
                == [base, base + 1, base + 4, base + 4].map { (Int64($0) + FITTime.epoch) * 1000 })
    }

    @Test func compressedHeaderWithoutAFullTimestampHasNoTime() throws {
        var b = FITBuilder()
        b.define(local: 1, global: 20, fields: [(3, 1, BT.uint8)])
        b.compressed(local: 1, offset: 5, [101])
        #expect(try times(b.file()) == [nil])
    }

    /// monitoring.timestamp_16: the low 16 bits of the time, added to the last full timestamp.
    @Test func timestamp16Accumulates() throws {
        let start = (Self.t0 & ~0xFFFF) + 0xFFF0
        var b = FITBuilder()
        b.define(local: 0, global: 55, fields: [(253, 4, BT.uint32), (27, 1, BT.uint8)])
        b.define(local: 1, global: 55, fields: [(26, 2, BT.uint16), (27, 1, BT.uint8)])
        b.message(local: 0, le32(start) + [60])
        b.message(local: 1, le16(0xFFFA) + [61])  // +10
        b.message(local: 1, le16(0x0004) + [62])  // rolls over: +20
        let bytes = b.file()
        #expect(try times(bytes) == [start, start + 10, start + 20])
        var r = reader(bytes)
        let samples = try readAll(&r)
        #expect(samples.map(\.value.number) == [60, 61, 62])
        #expect(samples.map(\.metric) == [.heartRate, .heartRate, .heartRate])
    }

    static func relativeFile(correlation: Bool) -> FITBuilder {
        var b = FITBuilder()
        b.define(local: 2, global: 0, fields: [(1, 2, BT.uint16)])
        b.message(local: 2, le16(1))
        if correlation {
            // timestamp_correlation: UTC 2024-05-01T10:00:00Z was device second 900 (and 0.5 s).
            b.define(local: 1, global: 162, fields: [(253, 4, BT.uint32), (1, 4, BT.uint32), (2, 2, BT.uint16)])
            b.message(local: 1, le32(t0) + le32(900) + le16(16384))
        }
        b.define(local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8)])
        b.message(local: 0, le32(1000) + [120])
        b.compressed(local: 0, offset: 9, le32(0xFFFF_FFFF) + [121])  // 1000 = 992 + 8: second 1001
        return b
    }

    /// Device-relative times are placed with timestamp_correlation: second 1000 is 99.5 s after the
    /// correlated instant.
    @Test func relativeTimestampsAreAnchoredOnTimestampCorrelation() throws {
        var r = reader(Self.relativeFile(correlation: true).file())
        let samples = try readAll(&r)
        #expect(samples.map(\.start.description) == ["2024-05-01T10:01:39.500Z", "2024-05-01T10:01:40.500Z"])
    }

    /// Without an anchor they are refused: strict rejects the file, salvage keeps what came before.
    @Test func relativeTimestampsWithoutAnAnchorAreRefused() throws {
        let bytes = Self.relativeFile(correlation: false).file()
        var strict = reader(bytes)
        do {
            _ = try strict.next(max: 10)
            Issue.record("accepted")
        } catch {
            #expect(error.reason == .implausibleTimestamp)
            #expect(error.offset == 14 + 9 + 3 + 12)
            #expect(error.detail.contains("device-relative"))
        }
        var salvage = reader(bytes, salvage: true)
        #expect(try readAll(&salvage).isEmpty)
        #expect(salvage.stoppedAt?.reason == .implausibleTimestamp)
    }

    @Test func futureTimestampsAreImplausible() throws {
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8)])
        b.message(local: 0, le32(Self.t0) + [120])
        let future = UInt32(testNow.millisecondsSinceEpoch / 1000 - FITTime.epoch) + 3600
        b.message(local: 0, le32(future) + [121])
        b.message(local: 0, le32(Self.t0 + 2) + [122])
        let bytes = b.file()
        var strict = reader(bytes)
        #expect(throws: FITError.self) { try strict.next(max: 10) }
        var salvage = reader(bytes, salvage: true)
        #expect(try readAll(&salvage).map(\.value.number) == [120])
        #expect(salvage.stoppedAt?.reason == .implausibleTimestamp)
        #expect(salvage.stoppedAt?.offset == 14 + 12 + 6)
        // Five minutes ahead is the schema's tolerance for clock drift.
        var close = FITBuilder()
        close.define(local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8)])
        close.message(local: 0, le32(future - 3600 + 299) + [120])
        var ok = reader(close.file())
        #expect(try readAll(&ok).count == 1)
    }
}

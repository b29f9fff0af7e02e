import PulseGateCore
import Testing

@testable import PulseGateFIT

/// FIT → canonical samples.
@Suite struct FITSampleReaderTests {
    static let t0 = fitSeconds("2024-05-01T10:00:00Z")
    static let ms0 = Timestamp(rfc3339: "2024-05-01T10:00:00Z")!.millisecondsSinceEpoch

    static func records(_ rows: [(UInt32, UInt8, UInt32)]) -> FITBuilder {
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8), (5, 4, BT.uint32)])
        for (t, hr, distance) in rows { b.message(local: 0, le32(t) + [hr] + le32(distance)) }
        return b
    }

    @Test func recordFieldsBecomeSamplesInCanonicalUnits() throws {
        var b = FITBuilder()
        b.define(
            local: 0, global: 20,
            fields: [
                (253, 4, BT.uint32), (3, 1, BT.uint8), (7, 2, BT.uint16), (4, 1, BT.uint8), (53, 1, BT.uint8),
                (6, 2, BT.uint16), (73, 4, BT.uint32), (2, 2, BT.uint16), (78, 4, BT.uint32), (0, 4, BT.sint32),
                (1, 4, BT.sint32), (13, 1, BT.sint8),
            ])
        b.message(
            local: 0,
            le32(Self.t0) + [150] + le16(280) + [90, 64] + le16(9000) + le32(9100) + le16(3000) + le32(3001)
                + le32(UInt32(bitPattern: 536_870_912)) + le32(UInt32(bitPattern: -1_073_741_824)) + [0xFB])
        var r = reader(b.file())
        let s = try readAll(&r)
        #expect(
            s.map(\.metric) == [
                .heartRate, .power, .cadence, .speed, .altitude, .latitude, .longitude, .ambientTemperature,
            ])
        // cadence + fractional (64/128); enhanced speed and altitude win; semicircles → degrees.
        #expect(s.map(\.value.number) == [150, 280, 90.5, 9.1, 3001.0 / 5 - 500, 45, -90, -5])
        #expect(s.allSatisfy { $0.start.millisecondsSinceEpoch == Self.ms0 && $0.subject == "u1" })
    }

    /// distance is an interval metric: deltas of the cumulative distance between records.
    @Test func distanceBecomesIntervals() throws {
        let t = Self.t0
        let b = Self.records([
            (t, 0xFF, 0), (t + 1, 0xFF, 1000), (t + 1, 0xFF, 1200), (t + 3, 0xFF, 2500),
            (t + 4, 0xFF, 500),  // a new session: no negative distance, a new baseline
            (t + 5, 0xFF, 0xFFFF_FFFF),  // no distance: the baseline stays
            (t + 6, 0xFF, 700),
        ])
        var r = reader(b.file())
        let d = try readAll(&r).filter { $0.metric == .distance }
        #expect(d.map(\.value.number) == [10, 15, 2])
        #expect(d.map { ($0.start.millisecondsSinceEpoch - Self.ms0) / 1000 } == [0, 1, 4])
        #expect(d.map { ($0.end!.millisecondsSinceEpoch - Self.ms0) / 1000 } == [1, 3, 6])
    }

    /// Zero is a value; the schema refuses heart rate 0 and the refusal is counted, not fatal.
    @Test func zeroHeartRateIsCountedAsSkipped() throws {
        let b = Self.records([
            (Self.t0, 0, 0xFFFF_FFFF), (Self.t0 + 1, 0xFF, 0xFFFF_FFFF), (Self.t0 + 2, 61, 0xFFFF_FFFF),
        ])
        var r = reader(b.file())
        #expect(try readAll(&r).map(\.value.number) == [61])
        #expect(r.skipped == 1)
    }

    @Test func recordsWithoutATimeAreSkipped() throws {
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: [(3, 1, BT.uint8), (7, 2, BT.uint16)])
        b.message(local: 0, [140] + le16(200))
        var r = reader(b.file())
        #expect(try readAll(&r).isEmpty)
        #expect(r.skipped == 2)
    }

    /// A rejected file stays rejected: asking again does not decode past the damage.
    @Test func rejectionIsFinal() throws {
        let bytes = Self.records([(Self.t0, 70, 0)]).file(fileCRC: .wrong)
        var r = reader(bytes)
        for _ in 0..<3 {
            #expect(throws: FITError.self) { try r.next(max: 10) }
        }
    }

    @Test func batchesAreBoundedByMax() throws {
        let rows: [(UInt32, UInt8, UInt32)] = (0..<10).map { (i: Int) -> (UInt32, UInt8, UInt32) in
            (Self.t0 + UInt32(i), UInt8(100 + i), UInt32(i * 100))
        }
        var r = reader(Self.records(rows).file())
        var sizes: [Int] = []
        while true {
            let batch = try r.next(max: 3)
            if batch.isEmpty { break }
            sizes.append(batch.count)
            #expect(r.pending.count < 3 + 10, "what is held back stays within one message's samples")
        }
        #expect(sizes.allSatisfy { $0 <= 3 })
        #expect(sizes.reduce(0, +) == 19)
        #expect(try r.next(max: 3).isEmpty)
    }

    /// hrv intervals are placed after the last timestamp, adding up; the beat clock never goes back.
    @Test func hrvBecomesRRIntervals() throws {
        var b = Self.records([(Self.t0, 60, 0xFFFF_FFFF)])
        b.define(local: 1, global: 78, fields: [(0, 10, BT.uint16)])
        b.message(local: 1, le16(800) + le16(0xFFFF) + le16(900) + le16(0xFFFF) + le16(0xFFFF))
        b.message(local: 0, le32(Self.t0 + 1) + [61] + le32(0xFFFF_FFFF))
        b.message(local: 1, le16(700) + le16(50) + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        var r = reader(b.file())
        let rr = try readAll(&r).filter { $0.metric == .rrInterval }
        #expect(rr.map(\.value.number) == [800, 900, 700])
        #expect(rr.map { $0.start.millisecondsSinceEpoch - Self.ms0 } == [800, 1700, 2400])
        #expect(r.skipped == 1)  // 50 ms is outside the schema's range
    }

    /// hr messages (a strap's stored heart rate) merged into records, step for step like Garmin's SDK:
    /// points every 0.5 s, carried forward in 0.25 s steps; each record gets the rounded mean of
    /// (previous record, this record]; the SDK leaves a record alone when the points run out inside it.
    @Test(arguments: [false, true])
    func hrMessagesAreMergedIntoRecords(packed: Bool) throws {
        let t = Self.t0
        var b = Self.records([(t, 0xFF, 0xFFFF_FFFF), (t + 1, 0xFF, 0xFFFF_FFFF), (t + 2, 0xFF, 0xFFFF_FFFF)])
        b.message(local: 0, le32(t + 3) + [77] + le32(0xFFFF_FFFF))
        // Anchor: at t (+0/32768 s), event time 100 s (102400/1024), 100 bpm.
        b.define(
            local: 1, global: 132,
            fields: [(253, 4, BT.uint32), (0, 2, BT.uint16), (9, 4, BT.uint32), (6, 1, BT.uint8)])
        b.message(local: 1, le32(t) + le16(0) + le32(102_400) + [100])
        if packed {
            // Four 12-bit event times (+0.5 s each) accumulated onto the anchor's event time.
            b.define(local: 2, global: 132, fields: [(10, 6, BT.byte), (6, 4, BT.uint8)])
            let values = (1...4).map { (102_400 + 512 * $0) & 0xFFF }
            b.message(local: 2, pack12(values) + [110, 120, 130, 140])
        } else {
            b.define(local: 2, global: 132, fields: [(9, 16, BT.uint32), (6, 4, BT.uint8)])
            b.message(
                local: 2, [102_912, 103_424, 103_936, 104_448].flatMap { le32(UInt32($0)) } + [110, 120, 130, 140])
        }
        let (records, _) = decodeRecords(b.file())
        #expect(records.map(\.heartRate) == [100, 110, nil, 77])
        #expect(records.map(\.heartRateMerged) == [true, true, false, false])
        var r = reader(b.file())
        let hr = try readAll(&r).filter { $0.metric == .heartRate }
        #expect(hr.map(\.quality) == [.derived, .derived, []])
    }

    func pack12(_ values: [Int]) -> [UInt8] {
        var bits: UInt64 = 0
        var out: [UInt8] = []
        var count = 0
        for v in values {
            bits |= UInt64(v & 0xFFF) << UInt64(count)
            count += 12
            while count >= 8 {
                out.append(UInt8(bits & 0xFF))
                bits >>= 8
                count -= 8
            }
        }
        if count > 0 { out.append(UInt8(bits & 0xFF)) }
        return out
    }

    /// FR70-style compressed speed/distance: 12-bit speed (1/100 m/s) and a rolling 12-bit distance
    /// (1/16 m) that is accumulated across records, wrapping at 256 m.
    @Test func compressedSpeedDistance() throws {
        var b = FITBuilder()
        b.define(local: 0, global: 20, fields: [(253, 4, BT.uint32), (8, 3, BT.byte)])
        func packed(_ speed: Int, _ distance: Int) -> [UInt8] {
            let v = (speed & 0xFFF) | (distance & 0xFFF) << 12
            return [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF)]
        }
        b.message(local: 0, le32(Self.t0) + packed(354, 4000))
        b.message(local: 0, le32(Self.t0 + 1) + packed(355, 4090))
        b.message(local: 0, le32(Self.t0 + 2) + packed(360, 20))  // wrapped: +26/16 m
        b.message(local: 0, le32(Self.t0 + 3) + [0xFF, 0xFF, 0xFF])  // invalid: nothing
        let (records, _) = decodeRecords(b.file())
        #expect(records.map(\.speed) == [3.54, 3.55, 3.6, nil])
        #expect(records.map(\.distance) == [250, 255.625, 257.25, nil])
    }

    @Test func deviceAndSensorsComeFromFileIDAndDeviceInfo() throws {
        var b = FITBuilder()
        b.define(
            local: 0, global: 0,
            fields: [(0, 1, BT.enumeration), (1, 2, BT.uint16), (2, 2, BT.uint16), (3, 4, BT.uint32z)])
        b.message(local: 0, [4] + le16(1) + le16(3121) + le32(3_301_972_258))
        b.define(
            local: 1, global: 23,
            fields: [
                (253, 4, BT.uint32), (0, 1, BT.uint8), (1, 1, BT.uint8), (2, 2, BT.uint16), (3, 4, BT.uint32z),
                (4, 2, BT.uint16), (5, 2, BT.uint16), (21, 2, BT.uint16z), (25, 1, BT.enumeration),
            ])
        b.message(
            local: 1,
            le32(Self.t0) + [0, 0xFF] + le16(1) + le32(3_301_972_258) + le16(3121) + le16(910) + le16(0) + [5])
        b.message(
            local: 1, le32(Self.t0) + [1, 120] + le16(1) + le32(555) + le16(2327) + le16(430) + le16(12345) + [1])
        b.message(local: 1, le32(Self.t0) + [2, 1] + le16(1) + le32(0) + le16(0xFFFF) + le16(0xFFFF) + le16(0) + [5])
        b.define(local: 2, global: 20, fields: [(253, 4, BT.uint32), (3, 1, BT.uint8)])
        b.message(local: 2, le32(Self.t0) + [90])
        let source = SourceRef(kind: .cloud, vendor: "garmin", recordID: "act-1")
        var r = FITSampleReader(bytes: b.file(), subject: "u1", source: source, now: testNow)
        let s = try #require(try r.next(max: 10).first)
        let device = try #require(r.device)
        #expect(device.manufacturer == "garmin")
        #expect(device.model == FITProfile.garminProductName(3121))
        #expect(device.serial == "3301972258")
        #expect(device.firmware == "9.10")
        #expect(s.source.kind == .cloud)
        #expect(s.source.vendor == "garmin")
        #expect(s.source.recordID == "act-1")
        #expect(s.source.device == device)
        #expect(r.sensors.count == 1)  // the local barometer (index 2) belongs to the device
        let strap = try #require(r.sensors.first)
        #expect(strap.deviceType == "heart_rate")
        #expect(strap.connection == "antplus")
        #expect(strap.manufacturer == "garmin")
        #expect(strap.product == FITProfile.garminProductName(2327))
        #expect(strap.serial == "555")
        #expect(strap.antDeviceNumber == 12345)
        #expect(strap.softwareVersion == "4.30")
        #expect(strap.device.address == "ant:12345")
    }

    @Test func corpusDevicesAndSensors() throws {
        func read(_ file: String) throws -> FITSampleReader {
            var r = reader(try Fixture.bytes(file))
            _ = try r.next(max: 1)
            return r
        }
        let coros = try read("coros-pace2-misaligned-fields.fit")
        #expect(coros.device?.manufacturer == "coros")
        #expect(coros.device?.model == "COROS PACE 2")
        let bryton = try read("bryton-big-activity-100k-records.fit")
        #expect(bryton.device?.manufacturer == "bryton")
        #expect(bryton.device?.model == "1901")
        let edge = try read("garmin-edge530-tacx-saris-wahoo.fit")
        #expect(edge.device?.model == "edge_530")
        let makers = Set(edge.sensors.compactMap(\.manufacturer))
        #expect(makers.isSuperset(of: ["tacx", "saris", "wahoo_fitness"]), "\(edge.sensors)")
        let stryd = try read("stryd-developer-types.fit")
        #expect(stryd.device?.manufacturer == "stryd")
    }

    /// Memory is bounded by the batch size, not the file: 800k samples pass through a small buffer.
    @Test func bufferStaysBoundedOnTheLargestFile() throws {
        var r = reader(try Fixture.bytes("bryton-big-activity-100k-records.fit"))
        var total = 0
        var largest = 0
        while true {
            let batch = try r.next(max: 1000)
            if batch.isEmpty { break }
            total += batch.count
            largest = max(largest, r.pending.count)
        }
        #expect(total == 799_983)
        #expect(largest < 1000 + 16)
    }

    @Test func corpusMappings() throws {
        var zwift = reader(try Fixture.bytes("zwift-null-compressed-speed-dist.fit"))
        let z = try readAll(&zwift)
        #expect(!z.contains { $0.metric == .heartRate })
        #expect(zwift.skipped == 1808)  // heart_rate 0 in every record: no strap
        #expect(z.contains { $0.metric == .power })

        var fenix = reader(try Fixture.bytes("garmin-fenix5-run-hrv.fit"))
        let rr = try readAll(&fenix).filter { $0.metric == .rrInterval }
        #expect(rr.count == 113)
        #expect(zip(rr, rr.dropFirst()).allSatisfy { $0.start < $1.start })

        // FR70: device-relative times and no timestamp_correlation.
        var fr70 = reader(try Fixture.bytes("garmin-fr70-compressed-speed-distance.fit"))
        #expect(throws: FITError.self) { try fr70.next(max: 10) }
        var fr70s = reader(try Fixture.bytes("garmin-fr70-compressed-speed-distance.fit"), salvage: true)
        #expect(try readAll(&fr70s).isEmpty)
        #expect(fr70s.stoppedAt?.reason == .implausibleTimestamp)
    }

    /// Every valid file (but the FR70 two) reads strictly; each sample is one the schema accepted.
    @Test(arguments: Fixture.valid.filter { !$0.contains("fr70") })
    func corpusFilesReadStrictly(_ file: String) throws {
        var r = reader(try Fixture.bytes(file))
        let samples = try readAll(&r, batch: 4096)
        #expect(r.stoppedAt == nil)
        if file != "fitsdk-developer-data.fit" { #expect(!samples.isEmpty) }
        #expect(samples.allSatisfy { $0.start >= Sample.earliest && $0.start <= testNow })
        if let first = samples.first { #expect(SampleCodec.line(first).last == 0x0A) }
    }
}

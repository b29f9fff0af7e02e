import PulseGateSensors
import Testing

/// ANT framing: vectors from /work/shared/sensor-vectors.md section 9 (copied, not read).
@Suite struct ANTFramingTests {
    /// §9 A9.1 (SOURCE-TEST openant test_message.py) and the A9.2 configuration frames (DERIVED).
    static let frames: [(frame: String, id: UInt8, payload: [UInt8])] = [
        ("A4 03 40 00 46 00 A1", 0x40, [0x00, 0x46, 0x00]),
        ("A4 01 4A 00 EF", 0x4A, [0x00]),
        ("A4 03 42 00 00 00 E5", 0x42, [0x00, 0x00, 0x00]),
        ("A4 03 42 00 40 00 A5", 0x42, [0x00, 0x40, 0x00]),
        ("A4 05 51 00 00 00 78 00 88", 0x51, [0x00, 0x00, 0x00, 0x78, 0x00]),
        ("A4 05 51 00 00 00 0B 00 FB", 0x51, [0x00, 0x00, 0x00, 0x0B, 0x00]),
        ("A4 05 51 00 39 30 78 01 80", 0x51, [0x00, 0x39, 0x30, 0x78, 0x01]),
        ("A4 03 43 00 86 1F 7D", 0x43, [0x00, 0x86, 0x1F]),
        ("A4 03 43 00 F6 1F 0D", 0x43, [0x00, 0xF6, 0x1F]),
        ("A4 03 43 00 96 1F 6D", 0x43, [0x00, 0x96, 0x1F]),
        ("A4 02 45 00 39 DA", 0x45, [0x00, 0x39]),
        ("A4 02 44 00 FF 1D", 0x44, [0x00, 0xFF]),
        ("A4 02 66 00 01 C1", 0x66, [0x00, 0x01]),
        ("A4 02 6E 00 80 48", 0x6E, [0x00, 0x80]),
        ("A4 01 4B 00 EE", 0x4B, [0x00]),
        ("A4 02 5B 00 01 FC", 0x5B, [0x00, 0x01]),
        ("A4 01 4C 00 E9", 0x4C, [0x00]),
        ("A4 02 4D 00 54 BF", 0x4D, [0x00, 0x54]),
    ]

    @Test func encodesAndParsesEverySection9Frame() throws {
        for vector in Self.frames {
            let bytes = try #require(Hex.bytes(vector.frame))
            let message = ANTMessage(id: vector.id, payload: vector.payload)
            #expect(message.encode() == bytes, "\(vector.frame)")
            var parser = ANTFrameParser()
            #expect(parser.append(bytes) == [message], "\(vector.frame)")
            #expect(parser.checksumErrors == 0 && parser.discardedBytes == 0 && parser.pendingByteCount == 0)
        }
    }

    @Test func parsesManyFramesFromOneReadAndOneFrameFromManyReads() throws {
        let all = Self.frames.map(\.frame).joined(separator: " ")
        let bytes = try #require(Hex.bytes(all))
        let expected = Self.frames.map { ANTMessage(id: $0.id, payload: $0.payload) }

        var whole = ANTFrameParser()
        #expect(whole.append(bytes) == expected)

        var byteByByte = ANTFrameParser()
        var got: [ANTMessage] = []
        for b in bytes {
            got += byteByByte.append([b])
        }
        #expect(got == expected)

        // Chunks that straddle frame boundaries at every split point of the first two frames.
        let twoFrames = Array(bytes[0..<12])
        for split in 0...twoFrames.count {
            var p = ANTFrameParser()
            let first = p.append(twoFrames[0..<split])
            let second = p.append(twoFrames[split...])
            #expect(first + second == Array(expected[0..<2]), "split at \(split)")
            #expect(p.pendingByteCount == 0)
        }
    }

    @Test func rejectsABadChecksumAndCountsIt() throws {
        var parser = ANTFrameParser()
        #expect(parser.append(try #require(Hex.bytes("A4 03 40 00 46 00 A2"))) == [])
        #expect(parser.checksumErrors == 1)
        // The frame after it is still found.
        #expect(parser.append(try #require(Hex.bytes("A4 01 4A 00 EF"))) == [ANTMessage(id: 0x4A, payload: [0])])
        #expect(parser.checksumErrors == 1)
    }

    @Test func resynchronisesOverGarbageAndFalseSyncBytes() throws {
        var parser = ANTFrameParser()
        // Garbage, then a false sync (A4 03 …) whose "frame" swallows the start of a real one.
        let stream = try #require(Hex.bytes("00 FF 13 A4 03 A4 01 4A 00 EF 55 A4 01 4B 00 EE"))
        let got = parser.append(stream)
        #expect(got == [ANTMessage(id: 0x4A, payload: [0]), ANTMessage(id: 0x4B, payload: [0])])
        #expect(parser.checksumErrors == 1)
        #expect(parser.discardedBytes == 3 + 2 + 1)
    }

    @Test func anImplausibleLengthDoesNotHoldUpTheStream() throws {
        var parser = ANTFrameParser()
        let got = parser.append(try #require(Hex.bytes("A4 FF 01 02 A4 01 4A 00 EF")))
        #expect(got == [ANTMessage(id: 0x4A, payload: [0])])
        #expect(parser.pendingByteCount == 0)
    }

    @Test func keepsAnIncompleteFrameForTheNextRead() throws {
        var parser = ANTFrameParser()
        #expect(parser.append([0xA4, 0x01]) == [])
        #expect(parser.pendingByteCount == 2)
        #expect(parser.append([0x4A, 0x00]) == [])
        #expect(parser.append([0xEF]) == [ANTMessage(id: 0x4A, payload: [0])])
    }

    /// §9 A9.3: extended broadcast, device 12345, HRM, transmission type 1.
    @Test func readsAnExtendedBroadcast() throws {
        let page: [UInt8] = [0x00, 0xFF, 0xFF, 0xFF, 0x00, 0x10, 0x2A, 0x48]
        let frame = ANTMessage(id: 0x4E, payload: [0x00] + page + [0x80, 0x39, 0x30, 0x78, 0x01]).encode()
        #expect(Array(frame[0..<3]) == [0xA4, 0x0E, 0x4E])
        var parser = ANTFrameParser()
        let message = try #require(parser.append(frame).first)
        let broadcast = try #require(ANTBroadcast(message))
        #expect(broadcast.channel == 0)
        #expect(broadcast.page == page)
        #expect(broadcast.deviceNumber == 12345)
        #expect(broadcast.deviceType == 120)
        #expect(broadcast.transmissionType == 1)
        #expect(broadcast.extendedDeviceNumber == 12345)
        #expect(antProfileName(deviceType: try #require(broadcast.deviceType)) == "ant:hrm")
    }

    @Test func readsAPlainBroadcastAndRefusesMalformedOnes() throws {
        let page: [UInt8] = [0x10, 0xFE, 0xFF, 0x5A, 0x00, 0xFF, 0xC8, 0x00]
        let plain = try #require(ANTBroadcast(ANTMessage(id: 0x4E, payload: [0x02] + page)))
        #expect(plain == ANTBroadcast(channel: 2, page: page))
        // A flag without the channel-ID bit carries no channel ID.
        let rssiOnly = try #require(
            ANTBroadcast(ANTMessage(id: 0x4E, payload: [0x02] + page + [0x40, 0x20, 0xC0, 0x00])))
        #expect(rssiOnly.deviceNumber == nil)
        // 0x80 without its four bytes, a short page, another message id.
        #expect(ANTBroadcast(ANTMessage(id: 0x4E, payload: [0x02] + page + [0x80, 0x39, 0x30])) == nil)
        #expect(ANTBroadcast(ANTMessage(id: 0x4E, payload: [0x02] + page.dropLast())) == nil)
        #expect(ANTBroadcast(ANTMessage(id: 0x40, payload: [0x02] + page)) == nil)
    }

    /// §9 A9.3: channel-ID bytes `01 00 00 10` give the 20-bit device number 0x10001.
    @Test func twentyBitDeviceNumber() throws {
        let payload: [UInt8] = [0x00] + [UInt8](repeating: 0, count: 8) + [0x80, 0x01, 0x00, 0x00, 0x10]
        let broadcast = try #require(ANTBroadcast(ANTMessage(id: 0x4E, payload: payload)))
        #expect(broadcast.extendedDeviceNumber == 0x10001)
    }

    @Test func recoversEveryFrameFromGarbageWithoutSyncBytesInRandomChunks() {
        var rng = ANTSeededGenerator(seed: 0x5EED_0A47)
        for _ in 0..<200 {
            var stream: [UInt8] = []
            var expected: [ANTMessage] = []
            var garbage = 0
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let junk = (0..<Int.random(in: 0...10, using: &rng)).map { _ in
                    var b = UInt8.random(in: 0...255, using: &rng)
                    if b == 0xA4 { b = 0 }
                    return b
                }
                garbage += junk.count
                stream += junk
                let payload = (0..<Int.random(in: 0...14, using: &rng)).map { _ in
                    UInt8.random(in: 0...255, using: &rng)
                }
                let message = ANTMessage(id: UInt8.random(in: 0...255, using: &rng), payload: payload)
                expected.append(message)
                stream += message.encode()
            }
            var parser = ANTFrameParser()
            var got: [ANTMessage] = []
            var i = 0
            while i < stream.count {
                let n = Int.random(in: 1...20, using: &rng)
                got += parser.append(stream[i..<min(i + n, stream.count)])
                i += n
            }
            #expect(got == expected)
            #expect(parser.discardedBytes == garbage && parser.checksumErrors == 0)
        }
    }

    @Test func randomBytesNeverTrapAndTheBufferStaysBounded() {
        var rng = ANTSeededGenerator(seed: 42)
        var parser = ANTFrameParser()
        for _ in 0..<5000 {
            let chunk = (0..<Int.random(in: 0...64, using: &rng)).map { _ in
                // Plenty of sync bytes so false frames are tried often.
                Bool.random(using: &rng) ? 0xA4 : UInt8.random(in: 0...255, using: &rng)
            }
            for message in parser.append(chunk) {
                #expect(message.payload.count <= parser.maxPayloadLength)
            }
            #expect(parser.pendingByteCount <= parser.maxPayloadLength + 3)
        }
        #expect(parser.checksumErrors > 0)
    }
}

/// SplitMix64: a seeded generator so failures reproduce.
struct ANTSeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

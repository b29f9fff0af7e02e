import Testing

@testable import PulseGateCore

@Suite("Timestamp")
struct TimestampTests {
    @Test("formats RFC 3339 UTC with milliseconds")
    func formats() {
        #expect(Timestamp(millisecondsSinceEpoch: 0).description == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(millisecondsSinceEpoch: 1_795_428_000_123).description == "2026-11-23T10:00:00.123Z")
        #expect(Timestamp(millisecondsSinceEpoch: 951_782_400_000).description == "2000-02-29T00:00:00.000Z")
        #expect(Timestamp(millisecondsSinceEpoch: -1).description == "1969-12-31T23:59:59.999Z")
    }

    @Test("parses offsets, fractions and round-trips")
    func parses() throws {
        let t = try #require(Timestamp(rfc3339: "2026-11-23T10:00:00.123Z"))
        #expect(t.millisecondsSinceEpoch == 1_795_428_000_123)
        #expect(Timestamp(rfc3339: "2026-11-23T11:00:00.123+01:00") == t)
        #expect(Timestamp(rfc3339: "2026-11-23T05:30:00.123-04:30") == t)
        #expect(Timestamp(rfc3339: "2026-11-23T10:00:00.1239999Z") == t, "digits past ms are truncated")
        #expect(Timestamp(rfc3339: "2026-11-23T10:00:00Z")?.millisecondsSinceEpoch == 1_795_428_000_000)
        #expect(Timestamp(rfc3339: "2026-11-23T10:00:00.5Z")?.millisecondsSinceEpoch == 1_795_428_000_500)
        for ms: Int64 in [0, 1, 86_399_999, 1_795_428_000_123, 4_102_444_800_000] {
            let ts = Timestamp(millisecondsSinceEpoch: ms)
            #expect(Timestamp(rfc3339: ts.description) == ts)
        }
    }

    @Test(
        "rejects what is not a real RFC 3339 instant",
        arguments: [
            "", "2026-11-23", "2026-11-23 10:00:00Z", "2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
            "2026-11-23T24:00:00Z", "2026-11-23T10:00:00", "2026-11-23T10:00:00.Z", "2026-11-23T10:00:00+0100",
            "2026-11-23T10:00:00Zjunk", "abcd-11-23T10:00:00Z",
        ])
    func rejects(text: String) {
        #expect(Timestamp(rfc3339: text) == nil)
    }
}

@Suite("HTTP dates")
struct HTTPDateTests {
    @Test("IMF-fixdate parses; other forms do not")
    func parses() {
        #expect(Timestamp(httpDate: "Sun, 06 Nov 1994 08:49:37 GMT")?.description == "1994-11-06T08:49:37.000Z")
        #expect(Timestamp(httpDate: "Wed, 21 Oct 2015 07:28:00 GMT")?.millisecondsSinceEpoch == 1_445_412_480_000)
        #expect(Timestamp(httpDate: "Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        #expect(Timestamp(httpDate: "Sun, 31 Feb 1994 08:49:37 GMT") == nil)
        #expect(Timestamp(httpDate: "120") == nil)
    }
}

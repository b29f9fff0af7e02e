import Foundation
import Testing

@testable import PulseGateCore

@Suite("JSON scanner")
struct JSONScannerTests {
    func scan<T>(_ text: String, _ body: (inout JSONScanner) throws(JSONScanner.Failure) -> T) -> T? {
        Array(text.utf8).withUnsafeBytes { raw in
            var s = JSONScanner(raw)
            do throws(JSONScanner.Failure) {
                let v = try body(&s)
                s.skipWhitespace()
                return s.atEnd ? v : nil
            } catch {
                return nil
            }
        }
    }

    @Test(
        "numbers follow the JSON grammar exactly",
        arguments: [
            ("0", 0.0), ("-0", -0.0), ("12", 12), ("1.5", 1.5), ("-2.25e2", -225), ("1E-2", 0.01), ("1e+2", 100),
        ])
    func numbers(text: String, value: Double) {
        #expect(scan(text) { s throws(JSONScanner.Failure) in try s.readNumber() } == value)
    }

    @Test(
        "non-JSON numbers are refused",
        arguments: ["01", "1.", ".5", "-", "+1", "1e", "NaN", "Infinity", "0x10", "1.e3"])
    func badNumbers(text: String) {
        #expect(scan(text) { s throws(JSONScanner.Failure) in try s.readNumber() } == nil)
    }

    @Test("strings: escapes, surrogate pairs, control characters")
    func strings() {
        func read(_ t: String) -> String? { scan(t) { s throws(JSONScanner.Failure) in try s.readString() } }
        #expect(read(#""plain""#) == "plain")
        #expect(read(#""a\"b\\c\/d\n\t\u00e9""#) == "a\"b\\c/d\n\té")
        #expect(read(#""\ud83d\udc93""#) == "💓")
        #expect(read(#""\ud83d""#) == nil)
        #expect(read(#""\udc93""#) == nil)
        #expect(read("\"tab\there\"") == nil)
        #expect(read(#""unterminated"#) == nil)
        #expect(read(#""\x""#) == nil)
    }

    @Test("skipValue accepts what JSONSerialization accepts, on a few shapes")
    func skipping() throws {
        for text in [#"{"a":[1,2,{"b":null}],"c":true,"d":"x"}"#, "[]", "{}", "[[[]]]", " 3 ", #""s""#] {
            #expect(scan(text) { s throws(JSONScanner.Failure) in try s.skipValue() } != nil, "\(text)")
            #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)) != nil)
        }
        for text in [
            "[1,]", "{\"a\" 1}", "{1:2}", "[", "tru",
            String(repeating: "[", count: 100) + String(repeating: "]", count: 100),
        ] {
            #expect(scan(text) { s throws(JSONScanner.Failure) in try s.skipValue() } == nil, "\(text)")
        }
    }

    @Test("sample objects: repeated fields, wrong types and trailing data are rejected")
    func sampleObjects() throws {
        let ok =
            #"{"subject":"u","metric":"heart_rate","value":60,"unit":"/min","start":"2026-11-23T10:00:00Z","source":{"kind":"app"}}"#
        let now = Timestamp(rfc3339: "2026-11-23T12:00:00Z")!
        func decode(_ t: String) throws -> Result<Sample, SampleError> {
            try SampleCodec.decode(Array(t.utf8), format: .ndjson, now: now)[0]
        }
        #expect((try? decode(ok).get()) != nil)
        #expect(
            try decode(
                #"{"subject":"u","subject":"v","metric":"heart_rate","value":60,"unit":"/min","start":"2026-11-23T10:00:00Z","source":{"kind":"app"}}"#
            ).failure?.message == "field 'subject' appears twice")
        #expect(
            try decode(
                #"{"subject":7,"metric":"heart_rate","value":60,"unit":"/min","start":"2026-11-23T10:00:00Z","source":{"kind":"app"}}"#
            ).failure?.message == "field 'subject': expected a string")
        #expect(try decode(ok + " {}").failure?.message.hasPrefix("data after the sample") == true)
        #expect(try decode("[1]").failure?.message.hasPrefix("a sample must be a JSON object") == true)
        #expect(
            try decode(
                #"{"subject":"u","metric":"heart_rate","value":60,"unit":"/min","start":"2026-11-23T10:00:00Z","source":{}}"#
            ).failure?.message == "missing field 'source.kind'")
    }
}

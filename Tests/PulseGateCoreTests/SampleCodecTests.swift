import Foundation
import Testing

@testable import PulseGateCore

@Suite("Sample JSON codec")
struct SampleCodecTests {
    @Test("writes the documented wire form, byte for byte")
    func encodes() throws {
        let s = try Sample(
            subject: "user-42", metric: .heartRate, value: .number(142), unit: "/min", start: t0, source: strap,
            quality: [.contactLost], now: now)
        let line = String(decoding: SampleCodec.line(s), as: UTF8.self)
        #expect(
            line
                == #"{"v":1,"id":"\#(s.id)","subject":"user-42","metric":"heart_rate","value":142,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"ble","device":{"manufacturer":"Polar","model":"H10","address":"A0:9E:1A:00:00:01"}},"quality":["contact_lost"]}"#
                + "\n")
        let stage = try Sample(
            subject: "a\"b\\c\n", metric: .sleepStage, value: .category("deep"), unit: "{stage}", start: t0,
            end: t0.adding(milliseconds: 1500), source: SourceRef(kind: .cloud, vendor: "oura", recordID: "x1"),
            now: now)
        let json = try JSONSerialization.jsonObject(with: Data(SampleCodec.line(stage))) as! [String: Any]
        #expect(json["subject"] as? String == "a\"b\\c\n")
        #expect(json["value"] as? String == "deep")
        #expect(json["end"] as? String == "2026-11-23T10:00:01.500Z")
        #expect((json["source"] as? [String: Any])?["record_id"] as? String == "x1")
        let fraction = try Sample(
            subject: "u", metric: .speed, value: .number(3.25), unit: "m/s", start: t0, source: strap, now: now)
        #expect(String(decoding: SampleCodec.line(fraction), as: UTF8.self).contains(#""value":3.25,"#))
    }

    @Test("what it writes, it reads back to the same sample")
    func roundTrip() throws {
        let s = try Sample(
            subject: "u", metric: .distance, value: .number(1234.5), unit: "m", start: t0,
            end: t0.adding(milliseconds: 60_000),
            source: SourceRef(kind: .file, device: .init(manufacturer: "Garmin", serial: "3999")),
            quality: [.derived, .interpolated], now: now)
        let back = try SampleCodec.decode(SampleCodec.line(s), format: .ndjson, now: now)
        #expect(try back.first?.get() == s)
    }

    @Test("NDJSON: each line is judged on its own")
    func ndjsonMixed() throws {
        let body = """
            {"subject":"u1","metric":"heart_rate","value":142,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app","app":"health_connect"}}
            {"subject":"u1","metric":"hart_rate","value":142,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}}
            {"subject":"u1","metric":"heart_rate","value":NaN,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}}

            {"subject":"u1","metric":"heart_rate","value":142,"untis":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}}
            {"subject":"u1","metric":"heart_rate","value":142,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"watch"}}
            {"subject":"u1","metric":"speed","value":18,"unit":"km/h","start":"2026-11-23T10:00:01.000Z","source":{"kind":"app"}}
            """
        let results = try SampleCodec.decode(Array(body.utf8), format: .ndjson, now: now)
        #expect(results.count == 6)
        #expect((try? results[0].get()) != nil)
        #expect(results[1].failure?.message == "unknown metric 'hart_rate'")
        #expect(results[2].failure?.code == .malformed)
        #expect(results[3].failure?.message == "unknown field 'untis'")
        #expect(results[4].failure?.message.contains("source.kind 'watch'") == true)
        #expect((try? results[5].get())?.value == .number(5))
    }

    @Test("JSON array: a bad element does not spoil its neighbours; a non-array body fails whole")
    func arrayMixed() throws {
        let body = """
            [{"subject":"u1","metric":"heart_rate","value":142,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}},
             {"subject":"u1","metric":"heart_rate","value":"fast","unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}},
             42]
            """
        let results = try SampleCodec.decode(Array(body.utf8), format: .jsonArray, now: now)
        #expect(results.count == 3)
        #expect((try? results[0].get()) != nil)
        #expect(results[1].failure?.code == .invalidValue)
        #expect(results[2].failure?.code == .malformed)
        #expect(throws: SampleError.self) { try SampleCodec.decode(Array("[{".utf8), format: .jsonArray, now: now) }
    }

    @Test("a supplied id must be the deterministic one")
    func suppliedID() throws {
        let s = try Sample(
            subject: "u1", metric: .heartRate, value: .number(142), unit: "/min", start: t0,
            source: SourceRef(kind: .app), now: now)
        let good =
            #"{"id":"\#(s.id)","subject":"u1","metric":"heart_rate","value":142,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}}"#
        let bad =
            #"{"id":"00000000-0000-8000-8000-000000000000","subject":"u1","metric":"heart_rate","value":142,"unit":"/min","start":"2026-11-23T10:00:00.000Z","source":{"kind":"app"}}"#
        let results = try SampleCodec.decode(Array((good + "\n" + bad).utf8), format: .ndjson, now: now)
        #expect((try? results[0].get())?.id == s.id)
        #expect(results[1].failure?.code == .idMismatch)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}

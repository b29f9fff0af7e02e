import Testing

@testable import PulseGateCore

let now = Timestamp(rfc3339: "2026-11-23T12:00:00.000Z")!
let t0 = Timestamp(rfc3339: "2026-11-23T10:00:00.000Z")!
let strap = SourceRef(kind: .ble, device: .init(manufacturer: "Polar", model: "H10", address: "A0:9E:1A:00:00:01"))

@Suite("Sample validation and ids")
struct SampleTests {
    func hr(_ value: Double, unit: String = "/min", at start: Timestamp = t0, source: SourceRef = strap)
        throws(SampleError) -> Sample
    {
        try Sample(
            subject: "user-42", metric: .heartRate, value: .number(value), unit: unit, start: start, source: source,
            now: now)
    }

    @Test("the same measurement always gets the same id; the value is not part of it")
    func deterministicIDs() throws {
        let a = try hr(142)
        let b = try hr(142)
        let corrected = try hr(143)
        #expect(a.id == b.id)
        #expect(a.id == corrected.id)
        #expect(try hr(142, at: t0.adding(milliseconds: 1)).id != a.id)
        #expect(try hr(142, source: SourceRef(kind: .ant, device: .init(address: "12345"))).id != a.id)
        let other = try Sample(
            subject: "user-43", metric: .heartRate, value: .number(142), unit: "/min", start: t0, source: strap,
            now: now)
        #expect(other.id != a.id)
    }

    @Test("ids are RFC 9562 version 8 UUIDs and parse back")
    func idFormat() throws {
        let id = try hr(142).id.description
        #expect(id.count == 36)
        #expect(Array(id)[14] == "8", "version nibble")
        #expect("89ab".contains(Array(id)[19]), "variant bits")
        #expect(SampleID(id)?.description == id)
        #expect(SampleID("not-a-uuid") == nil)
    }

    @Test("units are converted on the way in")
    func conversion() throws {
        let speed = try Sample(
            subject: "u", metric: .speed, value: .number(36), unit: "km/h", start: t0, source: strap, now: now)
        #expect(abs(speed.value.number! - 10) < 1e-9)
        let weight = try Sample(
            subject: "u", metric: .bodyWeight, value: .number(150), unit: "[lb_av]", start: t0, source: strap, now: now)
        #expect(abs(weight.value.number! - 68.0388555) < 1e-6)
        let temp = try Sample(
            subject: "u", metric: .bodyTemperature, value: .number(98.6), unit: "[degF]", start: t0, source: strap,
            now: now)
        #expect(abs(temp.value.number! - 37) < 1e-9)
        let energy = try Sample(
            subject: "u", metric: .activeEnergy, value: .number(418.4), unit: "kJ", start: t0,
            end: t0.adding(milliseconds: 60_000), source: strap, now: now)
        #expect(abs(energy.value.number! - 100) < 1e-9)
        let rr = try Sample(
            subject: "u", metric: .rrInterval, value: .number(0.8), unit: "s", start: t0, source: strap, now: now)
        #expect(abs(rr.value.number! - 800) < 1e-9)
    }

    @Test("invalid samples are rejected with a reason, never fixed")
    func rejections() {
        func code(_ body: () throws -> Sample) -> SampleError.Code? {
            do { _ = try body(); return nil } catch { return (error as? SampleError)?.code }
        }
        #expect(code { try hr(.nan) } == .invalidValue)
        #expect(code { try hr(.infinity) } == .invalidValue)
        #expect(code { try hr(400) } == .invalidValue)
        #expect(code { try hr(142, unit: "W") } == .wrongUnit)
        #expect(code { try hr(142, at: now.adding(milliseconds: 10 * 60_000)) } == .timeOutOfRange)
        #expect(code { try hr(142, at: Timestamp(millisecondsSinceEpoch: 0)) } == .timeOutOfRange)
        #expect(code { try hr(142, at: now.adding(milliseconds: 60_000)) } == nil, "a minute of clock skew is fine")
        /// The rejection code of one sample of `metric` starting at `t0`, or nil when it is valid.
        func code(
            _ metric: Metric, _ value: Sample.Value, _ unit: String, end: Timestamp? = nil, subject: String = "u"
        ) -> SampleError.Code? {
            code {
                try Sample(
                    subject: subject, metric: metric, value: value, unit: unit, start: t0, end: end, source: strap,
                    now: now)
            }
        }
        let second = t0.adding(milliseconds: 1000)
        #expect(code(.heartRate, .number(60), "/min", end: t0.adding(milliseconds: 1)) == .invalidInterval)
        #expect(code(.stepCount, .number(60), "{steps}") == .invalidInterval)
        #expect(code(.stepCount, .number(60), "{steps}", end: t0) == .invalidInterval)
        #expect(code(.heartRate, .number(60), "/min", subject: "") == .invalidSubject)
        #expect(code(.sleepStage, .category("napping"), "{stage}", end: second) == .invalidValue)
        #expect(code(.sleepStage, .category("rem"), "{stage}", end: second) == nil)
    }

    @Test("every registry metric has a canonical unit it accepts and a unique name")
    func registry() {
        #expect(Set(Metric.all.map(\.name)).count == Metric.all.count)
        for metric in Metric.all {
            #expect(metric.unit.conversion(from: metric.unit.code)?.factor == 1)
            #expect(Metric.named(metric.name) == metric)
        }
        #expect(Metric.named("heart_rate")?.loinc == "8867-4")
    }
}

@Suite("Derived ids")
struct DerivedIDTests {
    @Test("fields are separated: moving a character between fields changes the id; nil differs from empty")
    func separation() {
        #expect(DerivedID(fields: ["ab", "c"]) != DerivedID(fields: ["a", "bc"]))
        #expect(DerivedID(fields: [nil]) != DerivedID(fields: [""]))
        #expect(DerivedID(fields: ["x"]) == DerivedID(fields: ["x"]))
    }

    @Test("hex encoding is lowercase, two digits per byte")
    func hex() {
        #expect([0x00, 0x0f, 0xa0, 0xff].hexString == "000fa0ff")
    }
}

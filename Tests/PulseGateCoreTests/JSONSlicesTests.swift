import PulseGateCore
import Testing

@Suite struct JSONSlicesTests {
    static let push = Array(
        #" { "dailies" : [ {"a":1} ], "activityDetails":[{"samples":[{"hr":1},{"hr":2}, {"hr":3}]}, {"samples":[]}] } "#
            .utf8)

    @Test func membersAreFoundWithoutBuildingTheirValues() throws {
        let members = try JSONValue.memberRanges(Self.push)
        #expect(members.map(\.key) == ["dailies", "activityDetails"])
        let dailies = try #require(members.first?.range)
        #expect(String(decoding: Self.push[dailies], as: UTF8.self) == #"[ {"a":1} ]"#)
        #expect(try JSONValue.memberRange("missing", in: Self.push) == nil)
    }

    @Test func anArrayIsWalkedOneElementAtATime() throws {
        let details = try #require(try JSONValue.memberRange("activityDetails", in: Self.push))
        var activities = try JSONArrayCursor(Self.push, range: details)
        let first = try #require(try activities.next())
        let samples = try #require(try JSONValue.memberRange("samples", in: Self.push, range: first))
        var cursor = try JSONArrayCursor(Self.push, range: samples)
        var rates = [Int64]()
        while let element = try cursor.next() {
            rates.append(try #require(try JSONValue.parse(Self.push, range: element)["hr"]?.int))
        }
        #expect(rates == [1, 2, 3])
        let second = try #require(try activities.next())
        var empty = try JSONArrayCursor(
            Self.push, range: try #require(try JSONValue.memberRange("samples", in: Self.push, range: second)))
        #expect(try empty.next() == nil)
        #expect(try activities.next() == nil)
        #expect(try activities.next() == nil, "an exhausted cursor stays exhausted")
    }

    @Test func brokenDocumentsAreRefusedWithTheAbsoluteOffset() {
        let broken = Array(#"{"a":[1,2,}"#.utf8)
        #expect(throws: JSONValue.Missing.self) { try JSONValue.memberRanges(broken) }
        do {
            var cursor = try JSONArrayCursor(broken, range: 5..<broken.count)
            _ = try cursor.next()
            _ = try cursor.next()
            _ = try cursor.next()
            Issue.record("a trailing comma must fail")
        } catch {
            #expect(error.description.contains("at byte 10"), "\(error)")
        }
        #expect(throws: JSONValue.Missing.self) { try JSONValue.memberRanges(Array(#"[1]"#.utf8)) }
        #expect(throws: JSONValue.Missing.self) { try JSONValue.memberRanges(Array(#"{"a":1} x"#.utf8)) }
    }
}

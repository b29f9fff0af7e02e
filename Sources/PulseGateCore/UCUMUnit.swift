/// A unit by its UCUM code, with the conversions the intake accepts.
///
/// Each metric has one canonical unit; input in another accepted unit of the same dimension is
/// converted on the way in (`canonical = value × factor + offset`). Units that are not listed for a
/// metric are rejected rather than guessed at.
public struct UCUMUnit: Sendable, Hashable, CustomStringConvertible {
    /// The UCUM code written in `unit`.
    public let code: String
    /// Accepted input units and how to reach this unit from them.
    public let accepted: [Conversion]

    public var description: String { code }

    /// `canonical = input × factor + offset`.
    public struct Conversion: Sendable, Hashable {
        public let code: String
        public let factor: Double
        public let offset: Double

        public init(_ code: String, factor: Double, offset: Double = 0) {
            self.code = code
            self.factor = factor
            self.offset = offset
        }
    }

    init(code: String, aliases: [Conversion] = []) {
        self.code = code
        self.accepted = [Conversion(code, factor: 1)] + aliases
    }

    /// The conversion from `code` to this unit, or `nil` if `code` is not accepted.
    public func conversion(from code: String) -> Conversion? {
        accepted.first { $0.code == code }
    }
}

extension UCUMUnit {
    public static let perMinute = UCUMUnit(
        code: "/min",
        aliases: [
            .init("{beats}/min", factor: 1), .init("{rev}/min", factor: 1), .init("{steps}/min", factor: 1),
            .init("{breaths}/min", factor: 1), .init("/s", factor: 60),
        ])
    public static let millisecond = UCUMUnit(code: "ms", aliases: [.init("s", factor: 1000)])
    public static let watt = UCUMUnit(code: "W", aliases: [.init("kW", factor: 1000)])
    public static let meterPerSecond = UCUMUnit(
        code: "m/s", aliases: [.init("km/h", factor: 1 / 3.6), .init("[mi_i]/h", factor: 0.44704)])
    public static let meter = UCUMUnit(
        code: "m",
        aliases: [.init("km", factor: 1000), .init("[mi_i]", factor: 1609.344), .init("[ft_i]", factor: 0.3048)])
    public static let degree = UCUMUnit(code: "deg")
    public static let steps = UCUMUnit(code: "{steps}")
    public static let kilocalorie = UCUMUnit(
        code: "kcal", aliases: [.init("kJ", factor: 1 / 4.184), .init("J", factor: 1 / 4184)])
    public static let percent = UCUMUnit(code: "%", aliases: [.init("1", factor: 100)])
    public static let kilogram = UCUMUnit(
        code: "kg", aliases: [.init("g", factor: 0.001), .init("[lb_av]", factor: 0.45359237)])
    public static let celsius = UCUMUnit(
        code: "Cel",
        aliases: [.init("[degF]", factor: 5.0 / 9.0, offset: -32 * 5.0 / 9.0), .init("K", factor: 1, offset: -273.15)])
    public static let millimeterOfMercury = UCUMUnit(code: "mm[Hg]", aliases: [.init("kPa", factor: 7.500_615_75)])
    public static let stage = UCUMUnit(code: "{stage}")
    public static let milliliterPerMinutePerKilogram = UCUMUnit(
        code: "mL/min/kg", aliases: [.init("mL/kg/min", factor: 1)])
}

/// Flags that qualify a sample's value. A closed set: consumers may act on them.
public struct Quality: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The sensor reported that it lost skin contact while measuring.
    public static let contactLost = Quality(rawValue: 1 << 0)
    /// The value was interpolated between measurements, by the vendor or a device.
    public static let interpolated = Quality(rawValue: 1 << 1)
    /// The vendor computed the value (a daily summary, an estimate) rather than measured it.
    public static let vendorComputed = Quality(rawValue: 1 << 2)
    /// pulsegate derived the value from other fields (cadence from crank revolutions).
    public static let derived = Quality(rawValue: 1 << 3)
    /// A kiosk station fell back to a lower-priority source for this metric.
    public static let failover = Quality(rawValue: 1 << 4)

    /// JSON names in output order.
    public static let names: [(Quality, String)] = [
        (.contactLost, "contact_lost"), (.interpolated, "interpolated"), (.vendorComputed, "vendor_computed"),
        (.derived, "derived"), (.failover, "failover"),
    ]

    public init?(name: String) {
        guard let match = Self.names.first(where: { $0.1 == name }) else { return nil }
        self = match.0
    }

    public var flagNames: [String] { Self.names.filter { contains($0.0) }.map(\.1) }
}

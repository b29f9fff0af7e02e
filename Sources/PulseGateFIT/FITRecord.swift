/// One `record` message in physical units, after component expansion and the hr merge: the FIT-level
/// view that ``FITSampleReader`` turns into samples (and that tests compare with other decoders).
///
/// `nil` means the file had no valid value; zero is a value.
public struct FITRecord: Sendable, Equatable {
    /// Byte offset of the message in the stream.
    public var offset: Int
    /// FIT seconds as stored (device-relative when below 0x10000000).
    public var timestamp: UInt32?
    /// bpm; from the record, or merged from `hr` messages (see ``heartRateMerged``).
    public var heartRate: Double?
    /// Whether ``heartRate`` is the average of a strap's stored `hr` messages over this record's interval.
    public var heartRateMerged = false
    /// W.
    public var power: Double?
    /// rpm, `fractional_cadence` included.
    public var cadence: Double?
    /// m/s: `enhanced_speed`, else `speed`, else the speed in `compressed_speed_distance`.
    public var speed: Double?
    /// Cumulative metres: `distance`, else the accumulated distance in `compressed_speed_distance`.
    public var distance: Double?
    /// m: `enhanced_altitude`, else `altitude`.
    public var altitude: Double?
    /// Degrees (converted from semicircles).
    public var latitude: Double?
    public var longitude: Double?
    /// °C.
    public var temperature: Double?

    public init(offset: Int, timestamp: UInt32? = nil) {
        self.offset = offset
        self.timestamp = timestamp
    }
}

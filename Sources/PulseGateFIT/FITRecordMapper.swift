/// Builds ``FITRecord``s from `record` messages in stream order; it holds what spans messages: the
/// accumulated distance of compressed speed/distance and the position in the hr merge.
struct FITRecordMapper {
    /// The rolling 12-bit distance counter of `compressed_speed_distance`.
    var distance = FITAccumulator()
    var heartRates: FITHeartRateMerge

    init(heartRates: FITHeartRateTrack) {
        self.heartRates = FITHeartRateMerge(track: heartRates)
    }

    static let degreesPerSemicircle = 180.0 / 2_147_483_648.0

    mutating func record(_ m: FITMessage) -> FITRecord {
        typealias R = FITProfile.Record
        var r = FITRecord(offset: m.offset, timestamp: m.timestamp)
        r.heartRate = m.value(R.heartRate)
        r.power = m.value(R.power)
        if let cadence = m.value(R.cadence) {
            r.cadence = cadence + (m.value(R.fractionalCadence) ?? 0)
        }
        r.speed = m.value(R.enhancedSpeed) ?? m.value(R.speed)
        r.altitude = m.value(R.enhancedAltitude) ?? m.value(R.altitude)
        r.distance = m.value(R.distance)
        if let packed = m.bytes(R.compressedSpeedDistance.number), packed.contains(where: { $0 != 0xFF }) {
            expandCompressedSpeedDistance(packed, into: &r)
        }
        r.latitude = m.value(R.positionLat).map { $0 * Self.degreesPerSemicircle }
        r.longitude = m.value(R.positionLong).map { $0 * Self.degreesPerSemicircle }
        r.temperature = m.value(R.temperature)
        if m.developerFieldCount > 0 { fillFromDeveloperFields(m, into: &r) }
        if let t = r.timestamp, let merged = heartRates.heartRate(forRecordAt: Double(t)) {
            r.heartRate = merged
            r.heartRateMerged = true
        }
        return r
    }

    /// `compressed_speed_distance` (FR70 and other early devices): the profile's components, a 12-bit
    /// speed in 1/100 m/s and a 12-bit rolling distance in 1/16 m that is accumulated across records.
    mutating func expandCompressedSpeedDistance(_ packed: ArraySlice<UInt8>, into r: inout FITRecord) {
        var bits = FITBitReader(packed)
        for component in FITProfile.Record.compressedSpeedDistance.components {
            guard let v = bits.read(component.bits) else { break }
            switch component.target {
            case FITProfile.Record.speed.number:
                if r.speed == nil { r.speed = Double(v) / component.scale - component.offset }
            case FITProfile.Record.distance.number:
                let total = distance.add(v, bits: component.bits)
                if r.distance == nil { r.distance = Double(total) / component.scale - component.offset }
            default: break
            }
        }
    }

    /// Developer fields that declare themselves a stand-in for a record field (Stryd's power and
    /// cadence on watches without native running power) fill that field when the device left it empty.
    /// Only heart rate, cadence and power: their units cannot be mistaken; speed or distance in another
    /// unit would be silently wrong.
    func fillFromDeveloperFields(_ m: FITMessage, into r: inout FITRecord) {
        typealias R = FITProfile.Record
        for i in 0..<m.developerFieldCount {
            let field = m.developerField(i)
            guard let d = field.description, d.nativeMessage == R.messageNumber, let native = d.nativeField,
                let value = field.value()
            else { continue }
            switch native {
            case R.heartRate.number where r.heartRate == nil: r.heartRate = value
            case R.cadence.number where r.cadence == nil: r.cadence = value
            case R.power.number where r.power == nil: r.power = value
            default: break
            }
        }
    }
}

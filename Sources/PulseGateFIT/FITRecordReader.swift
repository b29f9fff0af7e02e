/// The `record` messages of a FIT stream as ``FITRecord``s, in stream order, for callers that want the
/// FIT view rather than samples (summaries, tools). Like ``FITSampleReader`` it first scans the stream
/// once for the strap's `hr` messages to merge; unlike it, it checks no timestamp and throws only
/// when decoding reaches damage, after returning the records before it.
public struct FITRecordReader {
    let bytes: [UInt8]
    var decoder: FITDecoder
    var mapper = FITRecordMapper(heartRates: FITHeartRateTrack())
    var scanned = false
    var damage: FITError?

    public init(bytes: [UInt8]) {
        self.bytes = bytes
        self.decoder = FITDecoder(bytes: bytes, verifyCRC: false)
    }

    /// The next record; `nil` at the end of the stream.
    public mutating func next() throws(FITError) -> FITRecord? {
        if !scanned {
            // The scan checked the CRCs and found the damage, if any: the second pass stops there.
            scanned = true
            let scan = FITScan(bytes: bytes, now: nil)
            mapper = FITRecordMapper(heartRates: scan.heartRates)
            damage = scan.damage
            if let damage { decoder.limit = damage.offset }
        }
        while let m = try decoder.next() {
            if m.global == FITProfile.Record.messageNumber { return mapper.record(m) }
        }
        if let damage { throw damage }
        return nil
    }
}

/// A rolling counter of `bits` bits added up across messages, the way the FIT SDK does it: the first
/// value is taken as it is, each later one adds its difference modulo 2^bits.
struct FITAccumulator {
    var total: UInt64?
    var last: UInt64 = 0

    mutating func set(_ value: UInt64) {
        total = value
        last = value
    }

    mutating func add(_ value: UInt64, bits: Int) -> UInt64 {
        guard let current = total else {
            set(value)
            return value
        }
        let mask: UInt64 = bits >= 64 ? .max : (1 << UInt64(bits)) - 1
        let sum = current &+ ((value &- last) & mask)
        total = sum
        last = value
        return sum
    }
}

/// Reads bit fields least significant bit first across little-endian bytes, as FIT packs components.
struct FITBitReader {
    let bytes: ArraySlice<UInt8>
    var bit = 0

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    var available: Int { bytes.count * 8 - bit }

    mutating func read(_ count: Int) -> UInt64? {
        guard count <= 64, available >= count else { return nil }
        var v: UInt64 = 0
        var got = 0
        while got < count {
            let byte = UInt64(bytes[bytes.startIndex + bit / 8])
            let shift = bit % 8
            let take = min(8 - shift, count - got)
            v |= ((byte >> UInt64(shift)) & ((1 << UInt64(take)) - 1)) << UInt64(got)
            got += take
            bit += take
        }
        return v
    }
}

/// The FIT CRC-16 (polynomial 0x8005 reflected, initial value 0: CRC-16/ARC), over header and data.
///
/// Slicing-by-8 (eight 256-entry tables, eight bytes per step) rather than the protocol document's
/// two nibble steps per byte: the CRC runs over every byte of every file, so it sets a floor under
/// decoding throughput.
enum FITCRC {
    /// `tables[k][b]`: the CRC of byte `b` followed by `k` zero bytes; `tables[0]` is the usual table.
    static let tables: [UInt16] = {
        var t = [UInt16](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt16(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1 }
            t[byte] = crc
        }
        for k in 1..<8 {
            for byte in 0..<256 {
                let previous = t[(k - 1) * 256 + byte]
                t[k * 256 + byte] = (previous >> 8) ^ t[Int(previous & 0xFF)]
            }
        }
        return t
    }()

    static func compute(_ bytes: [UInt8], from start: Int, to end: Int, initial: UInt16 = 0) -> UInt16 {
        var crc = initial
        tables.withUnsafeBufferPointer { t in
            bytes.withUnsafeBufferPointer { b in
                var i = start
                while i + 8 <= end {
                    let c = crc ^ (UInt16(b[i]) | UInt16(b[i + 1]) << 8)
                    crc =
                        t[7 * 256 + Int(c & 0xFF)] ^ t[6 * 256 + Int(c >> 8)] ^ t[5 * 256 + Int(b[i + 2])]
                        ^ t[4 * 256 + Int(b[i + 3])] ^ t[3 * 256 + Int(b[i + 4])] ^ t[2 * 256 + Int(b[i + 5])]
                        ^ t[256 + Int(b[i + 6])] ^ t[Int(b[i + 7])]
                    i += 8
                }
                while i < end {
                    crc = (crc >> 8) ^ t[Int(UInt8(truncatingIfNeeded: crc) ^ b[i])]
                    i += 1
                }
            }
        }
        return crc
    }
}

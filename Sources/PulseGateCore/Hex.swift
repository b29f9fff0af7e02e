extension Sequence where Element == UInt8 {
    /// Lowercase hexadecimal, two digits per byte: how digests and signatures are written everywhere in
    /// pulsegate (API key hashes, HMAC signatures, ids).
    public var hexString: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

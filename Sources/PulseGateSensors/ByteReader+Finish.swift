extension ByteReader {
    /// Checks that the payload ended where the flags said it would.
    ///
    /// Bytes after the last announced field mean the flags were misread or the payload is garbage,
    /// so they are refused, unless the flags set a bit the specification reserves: then a newer or
    /// vendor-extended sensor may append fields this decoder does not know, and the known fields
    /// (which come first, in bit order) are still good.
    func finish(reservedFlagsSet: Bool) throws(DecodeError) {
        guard remaining > 0, !reservedFlagsSet else { return }
        throw DecodeError(profile: profile, "\(remaining) unexpected bytes after the last field", offset: index)
    }
}

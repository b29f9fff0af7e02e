import Crypto

/// Batch ids are derived from the sink and the rows they carry, so a retried batch — even after a
/// restart — carries the same id and a receiver can recognise it.
enum BatchID {
    static func make(sink: String, firstSeq: Int64, lastSeq: Int64) -> String {
        var digest = Array(SHA256.hash(data: Array("\(sink)\u{1F}\(firstSeq)\u{1F}\(lastSeq)".utf8)).prefix(16))
        digest[6] = (digest[6] & 0x0F) | 0x80  // RFC 9562 version 8
        digest[8] = (digest[8] & 0x3F) | 0x80  // RFC 9562 variant
        let hex = digest.map { b in
            let s = String(b, radix: 16)
            return b < 16 ? "0" + s : s
        }.joined()
        var out = ""
        for (i, c) in hex.enumerated() {
            if [8, 12, 16, 20].contains(i) { out.append("-") }
            out.append(c)
        }
        return out
    }
}

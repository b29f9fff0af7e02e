import Foundation

/// An HTTP request described as data, so OAuth and vendor calls can be built and checked in tests
/// without a network, then executed by the vendor HTTP client (rate limits, breaker, retries).
public struct OutboundRequest: Sendable, Hashable {
    public enum Method: String, Sendable, Hashable {
        case get = "GET", post = "POST", put = "PUT", patch = "PATCH", delete = "DELETE"
    }

    public var method: Method
    public var url: URL
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]?
    /// Whether retrying after an unknown outcome is safe. GETs are; a token request is not (a code is
    /// single-use and a refresh may rotate), so the engine decides on those itself.
    public var idempotent: Bool

    public init(
        method: Method, url: URL, headers: [(name: String, value: String)] = [], body: [UInt8]? = nil,
        idempotent: Bool? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.idempotent = idempotent ?? (method == .get || method == .put || method == .delete)
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public static func == (a: OutboundRequest, b: OutboundRequest) -> Bool {
        a.method == b.method && a.url == b.url && a.body == b.body && a.idempotent == b.idempotent
            && a.headers.map { "\($0.name.lowercased()):\($0.value)" }
                == b.headers.map {
                    "\($0.name.lowercased()):\($0.value)"
                }
    }

    public func hash(into h: inout Hasher) {
        h.combine(method)
        h.combine(url)
        h.combine(body)
    }
}

/// A vendor's answer: status, headers (names compared case-insensitively) and the whole body.
public struct InboundResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var isSuccess: Bool { (200..<300).contains(status) }
}

/// `application/x-www-form-urlencoded` as the WHATWG URL standard writes it (RFC 6749 §B): only
/// ALPHA / DIGIT / `*-._` stay literal, space becomes `+`.
public enum FormEncoding {
    public static func encode(_ fields: [(String, String)]) -> [UInt8] {
        Array(fields.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&").utf8)
    }

    public static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "*"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"):
                out.unicodeScalars.append(UnicodeScalar(byte))
            case UInt8(ascii: " "):
                out.append("+")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// Parses a form body or query string; `+` is a space, `%XX` a byte; later duplicates win.
    public static func decode(_ text: String) -> [String: String] {
        var out = [String: String]()
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = unescape(String(parts[0]))
            out[key] = parts.count > 1 ? unescape(String(parts[1])) : ""
        }
        return out
    }

    static func unescape(_ text: String) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }
}

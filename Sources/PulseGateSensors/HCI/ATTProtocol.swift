import PulseGateCore

/// ATT opcodes and error codes (Bluetooth Core, Vol 3 Part F; the same numbers as BlueZ's
/// src/shared/att-types.h), and the few PDU layouts the client builds. Kept as plain constants so the
/// client, the GATT layer and the tests' scripted peripheral all speak from one table.
public enum ATT {
    public static let errorResponse: UInt8 = 0x01
    public static let exchangeMTURequest: UInt8 = 0x02
    public static let exchangeMTUResponse: UInt8 = 0x03
    public static let findInformationRequest: UInt8 = 0x04
    public static let findInformationResponse: UInt8 = 0x05
    public static let readByTypeRequest: UInt8 = 0x08
    public static let readByTypeResponse: UInt8 = 0x09
    public static let readRequest: UInt8 = 0x0A
    public static let readResponse: UInt8 = 0x0B
    public static let readBlobRequest: UInt8 = 0x0C
    public static let readBlobResponse: UInt8 = 0x0D
    public static let readByGroupTypeRequest: UInt8 = 0x10
    public static let readByGroupTypeResponse: UInt8 = 0x11
    public static let writeRequest: UInt8 = 0x12
    public static let writeResponse: UInt8 = 0x13
    public static let handleValueNotification: UInt8 = 0x1B
    public static let handleValueIndication: UInt8 = 0x1D
    public static let handleValueConfirmation: UInt8 = 0x1E

    /// The LE default: every link starts here until an MTU exchange raises it.
    public static let defaultMTU = 23
    /// The largest ATT_MTU a peer may offer (att-types.h `BT_ATT_MAX_LE_MTU`).
    public static let maximumMTU = 517
    /// The largest attribute value the specification allows; long reads stop here.
    public static let maximumValueLength = 512

    /// Error codes of an Error Response (the fifth byte).
    public enum ErrorCode {
        public static let invalidHandle: UInt8 = 0x01
        public static let readNotPermitted: UInt8 = 0x02
        public static let invalidPDU: UInt8 = 0x04
        public static let insufficientAuthentication: UInt8 = 0x05
        public static let requestNotSupported: UInt8 = 0x06
        public static let invalidOffset: UInt8 = 0x07
        public static let attributeNotFound: UInt8 = 0x0A
        public static let attributeNotLong: UInt8 = 0x0B
        public static let insufficientEncryption: UInt8 = 0x0F
    }

    /// The response opcode that completes `request`, or `nil` when `request` has none (commands,
    /// notifications) — the client uses it to match answers to its one outstanding request.
    public static func responseOpcode(for request: UInt8) -> UInt8? {
        switch request {
        case 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x10, 0x12, 0x16, 0x18, 0x20: return request + 1
        default: return nil
        }
    }

    /// Whether a PDU the peer sent is a response to something (ours or not): those are never answered.
    static func isResponse(_ opcode: UInt8) -> Bool {
        opcode == errorResponse || (opcode < 0x1B && opcode & 1 == 1) || opcode == 0x19 || opcode == 0x21
    }

    /// Whether `opcode` is a command (bit 6): commands are never answered, even when unknown.
    static func isCommand(_ opcode: UInt8) -> Bool { opcode & 0x40 != 0 }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

    static func u16(_ bytes: [UInt8], _ at: Int) -> UInt16 {
        UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    /// `[0x01][request][handle][code]`, what a server sends for a request it refuses.
    static func errorPDU(request: UInt8, handle: UInt16, code: UInt8) -> [UInt8] {
        [errorResponse, request] + le16(handle) + [code]
    }
}

/// A Bluetooth UUID, 16-bit SIG ids and 128-bit vendor ids alike, held as the 128-bit value so the two
/// forms of one id compare equal (a peer may send `2A37` or its 128-bit expansion).
public struct BluetoothUUID: Sendable, Hashable, CustomStringConvertible {
    /// Big-endian (display order) bytes of the 128-bit form.
    public let bytes: [UInt8]

    /// `0000xxxx-0000-1000-8000-00805f9b34fb`, the base every 16-bit id expands into.
    static let base: [UInt8] = [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0x80, 0x5F, 0x9B, 0x34, 0xFB,
    ]

    public init(_ short: UInt16) {
        var b = Self.base
        b[2] = UInt8(short >> 8)
        b[3] = UInt8(short & 0xFF)
        bytes = b
    }

    private init(bigEndian: [UInt8]) {
        bytes = bigEndian
    }

    /// From the bytes as ATT carries them: 2 or 16 bytes, little-endian. `nil` for any other length.
    public init?(littleEndian raw: some Collection<UInt8>) {
        let raw = Array(raw)
        switch raw.count {
        case 2: self.init(UInt16(raw[0]) | UInt16(raw[1]) << 8)
        case 16: self.init(bigEndian: raw.reversed())
        default: return nil
        }
    }

    /// From `2a37`, `0x2A37` or the 36-character form; `nil` when it is neither.
    public init?(string: String) {
        var hex = string.lowercased()
        if hex.hasPrefix("0x") { hex.removeFirst(2) }
        hex.removeAll { $0 == "-" }
        guard hex.count == 4 || hex.count == 32, let parsed = [UInt8](hex: hex) else { return nil }
        if parsed.count == 2 {
            self.init(UInt16(parsed[0]) << 8 | UInt16(parsed[1]))
        } else {
            self.init(bigEndian: parsed)
        }
    }

    /// The 16-bit id when this UUID is a SIG id on the base UUID, else `nil`.
    public var short: UInt16? {
        guard bytes[0] == 0, bytes[1] == 0, bytes[4...] == Self.base[4...] else { return nil }
        return UInt16(bytes[2]) << 8 | UInt16(bytes[3])
    }

    /// The bytes ATT puts on the wire: 2 for a SIG id, otherwise 16, little-endian.
    public var littleEndian: [UInt8] {
        if let short { return ATT.le16(short) }
        return bytes.reversed()
    }

    /// `2a37` for SIG ids (as ``ProfileDecoders`` names profiles), else the 36-character lower-case form.
    public var description: String {
        if let short { return hex4(short) }
        let h = bytes.map { hex2($0) }
        return h[0..<4].joined() + "-" + h[4..<6].joined() + "-" + h[6..<8].joined() + "-" + h[8..<10].joined()
            + "-" + h[10..<16].joined()
    }
}

func hex2(_ b: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(b >> 4)], digits[Int(b & 0xF)]])
}

func hex4(_ v: UInt16) -> String { hex2(UInt8(v >> 8)) + hex2(UInt8(v & 0xFF)) }

/// Why an ATT transaction did not give its answer. After ``Code/timeout`` and ``Code/linkLost`` the link
/// is gone (the specification forbids further PDUs on a bearer whose transaction timed out); after
/// ``Code/errorResponse(_:)`` and ``Code/malformed`` it is still usable.
public struct ATTError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The peer answered with Error Response carrying this ATT error code.
        case errorResponse(UInt8)
        /// No answer within the transaction timeout (30 s by the specification).
        case timeout
        /// The socket closed, failed, or the client was closed.
        case linkLost
        /// The answer had the right opcode but could not be parsed.
        case malformed
        /// The waiting task was cancelled (the transaction itself still runs to its answer).
        case cancelled
    }

    public let code: Code
    /// The request opcode the error is about.
    public let request: UInt8
    /// The handle an Error Response named (0 when none).
    public let handle: UInt16
    public let message: String

    public init(_ code: Code, request: UInt8, handle: UInt16 = 0, _ message: String) {
        self.code = code
        self.request = request
        self.handle = handle
        self.message = message
    }

    public var description: String { "ATT request 0x\(hex2(request)): \(message)" }

    /// True for the Attribute Not Found error that ends every discovery loop.
    var isAttributeNotFound: Bool { code == .errorResponse(ATT.ErrorCode.attributeNotFound) }
}

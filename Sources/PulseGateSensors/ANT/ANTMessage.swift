/// One ANT serial message: `[0xA4 sync][length][message id][payload × length][checksum]`, where the
/// checksum is the XOR of every byte before it, the sync byte included.
///
/// The same framing carries commands to the USB stick (Assign Channel 0x42, Open 0x4B …) and what
/// it sends back (Channel Response 0x40, Broadcast Data 0x4E …). ``ANTFrameParser`` cuts frames out
/// of a byte stream; ``ANTBroadcast`` reads a broadcast's data page.
public struct ANTMessage: Sendable, Hashable {
    /// The sync byte every frame starts with.
    public static let sync: UInt8 = 0xA4

    /// Message ids pulsegate sends or reads.
    public enum ID {
        public static let channelResponse: UInt8 = 0x40
        public static let assignChannel: UInt8 = 0x42
        public static let channelPeriod: UInt8 = 0x43
        public static let searchTimeout: UInt8 = 0x44
        public static let rfFrequency: UInt8 = 0x45
        public static let networkKey: UInt8 = 0x46
        public static let resetSystem: UInt8 = 0x4A
        public static let openChannel: UInt8 = 0x4B
        public static let closeChannel: UInt8 = 0x4C
        public static let requestMessage: UInt8 = 0x4D
        public static let broadcastData: UInt8 = 0x4E
        public static let acknowledgedData: UInt8 = 0x4F
        public static let channelID: UInt8 = 0x51
        public static let openRxScanMode: UInt8 = 0x5B
        public static let enableExtendedMessages: UInt8 = 0x66
        public static let libConfig: UInt8 = 0x6E
        public static let startup: UInt8 = 0x6F
    }

    public var id: UInt8
    /// The bytes between the message id and the checksum (for channel messages, the channel first).
    public var payload: [UInt8]

    public init(id: UInt8, payload: [UInt8]) {
        self.id = id
        self.payload = payload
    }

    /// The frame as the stick expects it on the bulk OUT endpoint. The length field is one byte:
    /// a payload longer than 255 bytes is a programming error and traps.
    public func encode() -> [UInt8] {
        precondition(payload.count <= 255, "ANT payload longer than 255 bytes")
        var frame = [Self.sync, UInt8(payload.count), id]
        frame.append(contentsOf: payload)
        frame.append(Self.checksum(frame[...]))
        return frame
    }

    /// XOR of `bytes`.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        bytes.reduce(0, ^)
    }
}

/// Cuts ANT frames out of a byte stream that arrives in arbitrary chunks, as USB bulk reads deliver
/// it: a read may hold several frames, part of one, or garbage.
///
/// Bytes before a sync byte are skipped. A frame whose checksum fails, or whose length field is
/// larger than ``maxPayloadLength``, is not trusted at all: the parser counts it and restarts the
/// search one byte after its sync byte, so a real frame that begins inside the bad one is still
/// found. Nothing a peer sends can make it trap; it buffers at most one incomplete frame.
public struct ANTFrameParser: Sendable {
    /// The longest payload accepted. ANT data messages carry at most the channel byte, 8 data bytes
    /// and a few extended bytes; 64 leaves room for every documented message while bounding how long
    /// a garbage sync byte with a huge length field can hold up the stream.
    public let maxPayloadLength: Int
    /// Frames dropped because the checksum did not match.
    public private(set) var checksumErrors = 0
    /// Bytes skipped while looking for a sync byte (garbage, and the sync bytes of rejected frames).
    public private(set) var discardedBytes = 0

    private var buffer: [UInt8] = []

    public init(maxPayloadLength: Int = 64) {
        self.maxPayloadLength = min(max(maxPayloadLength, 0), 255)
    }

    /// Bytes held back waiting for the rest of a frame.
    public var pendingByteCount: Int { buffer.count }

    /// Adds one chunk and returns the complete frames it finished, in order.
    public mutating func append(_ chunk: some Sequence<UInt8>) -> [ANTMessage] {
        buffer.append(contentsOf: chunk)
        var messages: [ANTMessage] = []
        var start = 0
        scan: while start < buffer.count {
            guard buffer[start] == ANTMessage.sync else {
                start += 1
                discardedBytes += 1
                continue
            }
            guard buffer.count - start >= 2 else { break scan }
            let length = Int(buffer[start + 1])
            guard length <= maxPayloadLength else {
                start += 1
                discardedBytes += 1
                continue
            }
            let total = length + 4
            guard buffer.count - start >= total else { break scan }
            let end = start + total - 1
            guard ANTMessage.checksum(buffer[start..<end]) == buffer[end] else {
                checksumErrors += 1
                start += 1
                discardedBytes += 1
                continue
            }
            messages.append(ANTMessage(id: buffer[start + 2], payload: Array(buffer[(start + 3)..<end])))
            start += total
        }
        buffer.removeFirst(start)
        return messages
    }
}

/// A Broadcast Data (0x4E) or Acknowledged Data (0x4F) message from a sensor: the channel, the
/// 8-byte data page the profile decoders read, and, when extended messages are enabled (Lib Config
/// flag 0x80), the sender's channel ID.
public struct ANTBroadcast: Sendable, Hashable {
    public var channel: UInt8
    /// Exactly 8 bytes: the ANT+ data page.
    public var page: [UInt8]
    /// The low 16 bits of the sender's device number.
    public var deviceNumber: UInt16?
    /// The device type with the pairing bit (bit 7) as sent; `deviceType & 0x7F` is the profile.
    public var deviceType: UInt8?
    public var transmissionType: UInt8?

    public init(
        channel: UInt8, page: [UInt8], deviceNumber: UInt16? = nil, deviceType: UInt8? = nil,
        transmissionType: UInt8? = nil
    ) {
        self.channel = channel
        self.page = page
        self.deviceNumber = deviceNumber
        self.deviceType = deviceType
        self.transmissionType = transmissionType
    }

    /// Reads a 0x4E/0x4F message: `[channel][d0…d7]`, optionally followed by `[flag]` and, when the
    /// flag has bit 0x80, `[device number lo, hi][device type][transmission type]` (other flag bits,
    /// RSSI 0x40 and timestamp 0x20, follow the channel ID and are ignored). `nil` for another
    /// message id, fewer than 9 bytes, or a 0x80 flag without its four channel-ID bytes.
    public init?(_ message: ANTMessage) {
        guard message.id == ANTMessage.ID.broadcastData || message.id == ANTMessage.ID.acknowledgedData else {
            return nil
        }
        let p = message.payload
        guard p.count >= 9 else { return nil }
        self.init(channel: p[0], page: Array(p[1...8]))
        guard p.count >= 10, p[9] & 0x80 != 0 else { return }
        guard p.count >= 14 else { return nil }
        deviceNumber = UInt16(p[10]) | UInt16(p[11]) << 8
        deviceType = p[12]
        transmissionType = p[13]
    }

    /// The 20-bit device number: the upper nibble of the transmission type holds bits 16–19. Key
    /// sensors by this and `deviceType & 0x7F`.
    public var extendedDeviceNumber: UInt32? {
        guard let deviceNumber, let transmissionType else { return nil }
        return UInt32(deviceNumber) | UInt32(transmissionType >> 4) << 16
    }
}

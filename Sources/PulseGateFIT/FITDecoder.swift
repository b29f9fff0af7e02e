/// Reads a FIT stream message by message: file headers (12 or 14 bytes, header CRC 0 meaning "not
/// computed"), definition messages of either architecture, data messages with normal or
/// compressed-timestamp headers, developer data, the file CRC, and chained files one after another as
/// one sequence.
///
/// It works in place on the bytes: a ``FITMessage`` is a view, definitions are kept in sixteen reusable
/// slots, and no dictionary is touched per message. Damage is a ``FITError`` naming the reason and the
/// byte offset of the damaged item (header, message or CRC); everything returned before it was whole.
///
/// Each chained file starts afresh, as the protocol defines each as a complete file: local
/// definitions, developer field descriptions and the running timestamp do not carry over.
public struct FITDecoder {
    public let bytes: [UInt8]
    /// Offset of the next item to read.
    public private(set) var position = 0
    /// Number of file headers read so far (chained files count one each).
    public private(set) var fileCount = 0
    /// Data messages returned so far.
    public private(set) var messageCount = 0
    /// The last full timestamp seen in the current file, in FIT seconds: the base of compressed
    /// timestamps and `timestamp_16`, and "now" for messages that carry no time of their own (hrv).
    public private(set) var lastTimestamp: UInt32?
    /// The developer field descriptions of the current file, in the order they came.
    public private(set) var fieldDescriptions: [FITFieldDescription] = []

    let verifiesCRC: Bool
    /// Items starting at or after this offset are not read: the stream ends there (salvage).
    var limit = Int.max
    var fileStart = 0
    /// End of the current file's data (its CRC follows); -1 between files.
    var dataEnd = -1
    var definitions = (0..<16).map { _ in FITDefinition() }
    var defined: UInt16 = 0
    var applications: [FITDeveloperApplication] = []

    /// - Parameter verifyCRC: `false` skips the file CRC check, for a second pass over bytes that were
    ///   already checked.
    public init(bytes: [UInt8], verifyCRC: Bool = true) {
        self.bytes = bytes
        self.verifiesCRC = verifyCRC
    }

    /// The next data message; `nil` at the end of the stream.
    public mutating func next() throws(FITError) -> FITMessage? {
        while true {
            if position >= limit { return nil }
            if dataEnd < 0 {
                guard position < bytes.count else {
                    if fileCount == 0 { throw FITError(.empty, at: 0, "the file is empty (0 bytes)") }
                    return nil
                }
                try readFileHeader()
                continue
            }
            if position == dataEnd {
                try readFileCRC()
                continue
            }
            guard position < bytes.count else {
                throw FITError(
                    .truncated, at: position,
                    "the stream ends at byte \(bytes.count), the header at byte \(fileStart) declares data up to byte \(dataEnd)"
                )
            }
            let header = bytes[position]
            if header & 0xC0 == 0x40 {
                try readDefinition(header)
                continue
            }
            return try readData(header)
        }
    }

    // MARK: files

    mutating func readFileHeader() throws(FITError) {
        let start = position
        let size = Int(bytes[start])
        guard size >= 12 else {
            throw FITError(.badHeader, at: start, "header size \(size): a FIT file header has 12 or 14 bytes")
        }
        guard start + size <= bytes.count else {
            throw FITError(
                .truncated, at: start, "the file header needs \(size) bytes, \(bytes.count - start) are left")
        }
        guard bytes[start + 8] == 0x2E, bytes[start + 9] == 0x46, bytes[start + 10] == 0x49, bytes[start + 11] == 0x54
        else {
            throw FITError(.badHeader, at: start, "no \".FIT\" signature in the file header")
        }
        if size >= 14 {
            let stored = UInt16(bytes[start + 12]) | UInt16(bytes[start + 13]) << 8
            if stored != 0 {
                let computed = FITCRC.compute(bytes, from: start, to: start + 12)
                guard stored == computed else {
                    throw FITError(
                        .badHeaderCRC, at: start,
                        "header CRC is \(hex(stored)), the header's bytes give \(hex(computed))")
                }
            }
        }
        let dataSize = Int(FITMessage.load(bytes, start + 4, 4, bigEndian: false))
        fileCount += 1
        fileStart = start
        position = start + size
        dataEnd = position + dataSize
        if fileCount == 1, position == bytes.count {
            throw FITError(
                .empty, at: position, "the file is only a header (it declares \(dataSize) data bytes and has none)")
        }
        defined = 0
        lastTimestamp = nil
        fieldDescriptions.removeAll(keepingCapacity: true)
        applications.removeAll(keepingCapacity: true)
    }

    mutating func readFileCRC() throws(FITError) {
        guard position + 2 <= bytes.count else {
            throw FITError(
                .truncated, at: position, "the file CRC is missing: the stream ends at byte \(bytes.count)")
        }
        if verifiesCRC {
            let stored = UInt16(bytes[position]) | UInt16(bytes[position + 1]) << 8
            let computed = FITCRC.compute(bytes, from: fileStart, to: position)
            guard stored == computed else {
                throw FITError(
                    .badFileCRC, at: position,
                    "file CRC is \(hex(stored)), the bytes from \(fileStart) give \(hex(computed))")
            }
        }
        position += 2
        dataEnd = -1
    }

    // MARK: messages

    /// Checks that `length` bytes from `start` are in the stream and inside the declared data.
    func need(_ length: Int, at start: Int, _ what: String) throws(FITError) {
        let end = start + length
        if end > bytes.count {
            throw FITError(
                .truncated, at: start,
                "\(what) needs \(length) bytes, the stream ends at byte \(bytes.count)")
        }
        if end > dataEnd {
            throw FITError(
                .overrun, at: start,
                "\(what) of \(length) bytes runs past the data the header declares (ends at byte \(dataEnd))")
        }
    }

    mutating func readDefinition(_ header: UInt8) throws(FITError) {
        let start = position
        try need(6, at: start, "definition message")
        let architecture = bytes[start + 2]
        guard architecture <= 1 else {
            throw FITError(.badDefinition, at: start, "architecture byte \(architecture) (0 little, 1 big endian)")
        }
        let bigEndian = architecture == 1
        let global = UInt16(truncatingIfNeeded: FITMessage.load(bytes, start + 3, 2, bigEndian: bigEndian))
        let fieldCount = Int(bytes[start + 5])
        var length = 6 + 3 * fieldCount
        try need(length, at: start, "definition message")
        var developerCount = 0
        if header & 0x20 != 0 {
            try need(length + 1, at: start, "definition message")
            developerCount = Int(bytes[start + length])
            length += 1 + 3 * developerCount
            try need(length, at: start, "definition message")
        }
        let local = Int(header & 0x0F)
        if !isKnownUniquelyReferenced(&definitions[local]) { definitions[local] = FITDefinition() }
        let definition = definitions[local]
        definition.reset(global: global, bigEndian: bigEndian)
        var p = start + 6
        for _ in 0..<fieldCount {
            definition.append(number: bytes[p], size: bytes[p + 1], typeByte: bytes[p + 2])
            p += 3
        }
        if developerCount > 0 {
            p += 1
            for _ in 0..<developerCount {
                let number = bytes[p]
                let index = bytes[p + 2]
                let description = fieldDescriptions.last { $0.developerDataIndex == index && $0.number == number }
                definition.appendDeveloper(
                    number: number, size: bytes[p + 1], developerDataIndex: index, description: description)
                p += 3
            }
        }
        defined |= 1 << local
        position = start + length
    }

    mutating func readData(_ header: UInt8) throws(FITError) -> FITMessage {
        let start = position
        let compressed = header & 0x80 != 0
        let local = compressed ? Int((header >> 5) & 0x03) : Int(header & 0x0F)
        guard defined & (1 << local) != 0 else {
            throw FITError(
                .undefinedLocalMessage, at: start, "local message \(local) is used before any definition of it")
        }
        let definition = definitions[local]
        try need(1 + definition.size, at: start, "data message")
        position = start + 1 + definition.size
        var time: UInt32?
        if compressed, let last = lastTimestamp {
            let low = UInt32(header & 0x1F)
            var t = (last & ~0x1F) &+ low
            if low < last & 0x1F { t &+= 0x20 }
            time = t
        }
        if let full = FITMessage.raw(bytes, definition, start + 1, 253) {
            time = UInt32(truncatingIfNeeded: full)
        } else if !compressed, let field = definition.timestamp16, let last = lastTimestamp,
            let short = FITMessage.raw(bytes, definition, start + 1, field)
        {
            time = last &+ ((UInt32(truncatingIfNeeded: short) &- last) & 0xFFFF)
        }
        if let time { lastTimestamp = time }
        let message = FITMessage(
            stream: bytes, definition: definition, content: start + 1, offset: start, timestamp: time,
            hasCompressedTimestamp: compressed)
        messageCount += 1
        switch message.global {
        case FITProfile.FieldDescription.messageNumber: addFieldDescription(message)
        case FITProfile.DeveloperDataID.messageNumber: addApplication(message)
        default: break
        }
        return message
    }

    // MARK: developer data

    mutating func addApplication(_ m: FITMessage) {
        typealias F = FITProfile.DeveloperDataID
        guard let index = m.raw(F.developerDataIndex.number) else { return }
        var id: [UInt8]?
        if let bytes = m.bytes(F.applicationID.number), bytes.contains(where: { $0 != 0xFF }) { id = Array(bytes) }
        let application = FITDeveloperApplication(
            developerDataIndex: UInt8(truncatingIfNeeded: index), applicationID: id,
            manufacturer: m.raw(F.manufacturerID.number).map { UInt16(truncatingIfNeeded: $0) },
            version: m.raw(F.applicationVersion.number).map { UInt32(truncatingIfNeeded: $0) })
        applications.removeAll { $0.developerDataIndex == application.developerDataIndex }
        applications.append(application)
    }

    mutating func addFieldDescription(_ m: FITMessage) {
        typealias F = FITProfile.FieldDescription
        guard let index = m.raw(F.developerDataIndex.number), let number = m.raw(F.fieldDefinitionNumber.number),
            let type = m.raw(F.fitBaseTypeID.number)
        else { return }
        let developerDataIndex = UInt8(truncatingIfNeeded: index)
        let description = FITFieldDescription(
            developerDataIndex: developerDataIndex, number: UInt8(truncatingIfNeeded: number),
            baseType: FITBaseType(definitionByte: UInt8(truncatingIfNeeded: type)),
            name: m.string(F.fieldName.number), units: m.string(F.units.number),
            scale: m.value(F.scale).flatMap { $0 == 0 ? nil : $0 }, offset: m.value(F.offset),
            nativeMessage: m.raw(F.nativeMesgNum.number).map { UInt16(truncatingIfNeeded: $0) },
            nativeField: m.raw(F.nativeFieldNum.number).map { UInt8(truncatingIfNeeded: $0) },
            application: applications.last { $0.developerDataIndex == developerDataIndex })
        fieldDescriptions.removeAll {
            $0.developerDataIndex == description.developerDataIndex && $0.number == description.number
        }
        fieldDescriptions.append(description)
    }
}

func hex(_ v: UInt16) -> String {
    let digits = String(v, radix: 16, uppercase: true)
    return "0x" + String(repeating: "0", count: 4 - digits.count) + digits
}

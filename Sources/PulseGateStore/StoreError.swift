/// Why the store could not do what was asked. A struct over a private code enum (new codes are not a
/// breaking change), with a message fit for a log line.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable { case cannotOpen, storageFull, unavailable, outboxFull, corrupt }
        let base: Base
        /// The database file or its directory cannot be opened or created.
        public static let cannotOpen = Code(base: .cannotOpen)
        /// The disk (or the process's file-size limit) is full; nothing was written.
        public static let storageFull = Code(base: .storageFull)
        /// Any other failure to read or write; nothing was written.
        public static let unavailable = Code(base: .unavailable)
        /// The outbox is above its high watermark; nothing was written.
        public static let outboxFull = Code(base: .outboxFull)
        /// The database file is not a pulsegate store or is damaged.
        public static let corrupt = Code(base: .corrupt)
        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

import CSystemd

/// A failed D-Bus exchange: the error name a peer (or sd-bus itself) gave, with its message, or an
/// errno from a local sd-bus call. BlueZ's error names (`org.bluez.Error.Failed`, …) are what the
/// backend branches on, so they are kept verbatim.
struct DBusError: Error, Sendable, Equatable, CustomStringConvertible {
    var name: String
    var message: String
    /// Set when the failure is a local system call's, so `EACCES` can become a permission error.
    var errno: Int32?

    init(name: String, message: String, errno: Int32? = nil) {
        self.name = name
        self.message = message
        self.errno = errno
    }

    /// A local sd-bus call failed with `-code`.
    static func system(_ code: Int32, _ what: String) -> DBusError {
        DBusError(name: "System.Error", message: "\(what): \(errnoText(code))", errno: code)
    }

    static let cancelled = DBusError(name: "org.pulsegate.Error.Cancelled", message: "cancelled")
    static let closed = DBusError(name: "org.pulsegate.Error.Closed", message: "the D-Bus connection is closed")

    var description: String { message.isEmpty ? name : "\(name): \(message)" }
}

/// Reads and writes sd-bus message bodies as ``DBusValue`` trees. Loop thread only: a message
/// pointer is never shared.
enum SDBusMessage {
    private static func code(_ c: Unicode.Scalar) -> CChar { CChar(truncatingIfNeeded: UInt8(ascii: c)) }

    /// The error a reply carries, or `nil` for a method return.
    static func error(of message: OpaquePointer) -> DBusError? {
        guard sd_bus_message_is_method_error(message, nil) > 0 else { return nil }
        guard let error = sd_bus_message_get_error(message)?.pointee else {
            return DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "")
        }
        let name = error.name.map { String(cString: $0) } ?? "org.freedesktop.DBus.Error.Failed"
        let text = error.message.map { String(cString: $0) } ?? ""
        return DBusError(name: name, message: text)
    }

    /// Every value of the body, in order.
    static func read(_ message: OpaquePointer) throws(DBusError) -> [DBusValue] {
        var values = [DBusValue]()
        while let value = try readNext(message) { values.append(value) }
        return values
    }

    /// The next value at the current position, or `nil` at the end of the body or container.
    private static func readNext(_ m: OpaquePointer) throws(DBusError) -> DBusValue? {
        var type: CChar = 0
        var contents: UnsafePointer<CChar>?
        let peeked = sd_bus_message_peek_type(m, &type, &contents)
        if peeked < 0 { throw .system(-peeked, "reading a D-Bus message") }
        if peeked == 0 { return nil }
        let inner = contents.map { String(cString: $0) } ?? ""
        switch UInt8(truncatingIfNeeded: type) {
        case UInt8(ascii: "y"): return .byte(try basic(m, type, UInt8(0)))
        case UInt8(ascii: "b"): return .bool(try basic(m, type, Int32(0)) != 0)
        case UInt8(ascii: "n"): return .int16(try basic(m, type, Int16(0)))
        case UInt8(ascii: "q"): return .uint16(try basic(m, type, UInt16(0)))
        case UInt8(ascii: "i"): return .int32(try basic(m, type, Int32(0)))
        case UInt8(ascii: "u"): return .uint32(try basic(m, type, UInt32(0)))
        case UInt8(ascii: "x"): return .int64(try basic(m, type, Int64(0)))
        case UInt8(ascii: "t"): return .uint64(try basic(m, type, UInt64(0)))
        case UInt8(ascii: "d"): return .double(try basic(m, type, Double(0)))
        case UInt8(ascii: "h"): return .unixFD(try basic(m, type, Int32(-1)))
        case UInt8(ascii: "s"): return .string(try text(m, type))
        case UInt8(ascii: "o"): return .objectPath(try text(m, type))
        case UInt8(ascii: "g"): return .signature(try text(m, type))
        case UInt8(ascii: "a") where inner == "y":
            var pointer: UnsafeRawPointer?
            var size = 0
            let r = sd_bus_message_read_array(m, code("y"), &pointer, &size)
            if r < 0 { throw .system(-r, "reading a byte array") }
            guard let pointer, size > 0 else { return .bytes([]) }
            return .bytes(Array(UnsafeRawBufferPointer(start: pointer, count: size)))
        case UInt8(ascii: "a"):
            return .array(inner, try container(m, type, inner))
        case UInt8(ascii: "v"):
            let items = try container(m, type, inner)
            guard let first = items.first else { throw DBusError(name: "System.Error", message: "empty variant") }
            return .variant(first)
        case UInt8(ascii: "r"):
            return .structure(try container(m, type, inner))
        case UInt8(ascii: "e"):
            let items = try container(m, type, inner)
            guard items.count == 2 else { throw DBusError(name: "System.Error", message: "bad dict entry") }
            return .dictEntry(items[0], items[1])
        default:
            throw DBusError(name: "System.Error", message: "unknown D-Bus type \(type)")
        }
    }

    private static func basic<T: BitwiseCopyable>(_ m: OpaquePointer, _ type: CChar, _ initial: T) throws(DBusError)
        -> T
    {
        var value = initial
        let r = sd_bus_message_read_basic(m, type, &value)
        if r < 0 { throw .system(-r, "reading a D-Bus value") }
        return value
    }

    private static func text(_ m: OpaquePointer, _ type: CChar) throws(DBusError) -> String {
        var pointer: UnsafePointer<CChar>?
        let r = sd_bus_message_read_basic(m, type, &pointer)
        if r < 0 { throw .system(-r, "reading a D-Bus string") }
        return pointer.map { String(cString: $0) } ?? ""
    }

    private static func container(_ m: OpaquePointer, _ type: CChar, _ contents: String) throws(DBusError)
        -> [DBusValue]
    {
        let entered = contents.withCString { sd_bus_message_enter_container(m, type, $0) }
        if entered < 0 { throw .system(-entered, "entering a D-Bus container") }
        var items = [DBusValue]()
        while let item = try readNext(m) { items.append(item) }
        let exited = sd_bus_message_exit_container(m)
        if exited < 0 { throw .system(-exited, "leaving a D-Bus container") }
        return items
    }

    /// Appends `value` to the body being built.
    static func append(_ m: OpaquePointer, _ value: DBusValue) throws(DBusError) {
        var r: Int32
        switch value {
        case .byte(var v): r = sd_bus_message_append_basic(m, code("y"), &v)
        case .bool(let v):
            var i: Int32 = v ? 1 : 0
            r = sd_bus_message_append_basic(m, code("b"), &i)
        case .int16(var v): r = sd_bus_message_append_basic(m, code("n"), &v)
        case .uint16(var v): r = sd_bus_message_append_basic(m, code("q"), &v)
        case .int32(var v): r = sd_bus_message_append_basic(m, code("i"), &v)
        case .uint32(var v): r = sd_bus_message_append_basic(m, code("u"), &v)
        case .int64(var v): r = sd_bus_message_append_basic(m, code("x"), &v)
        case .uint64(var v): r = sd_bus_message_append_basic(m, code("t"), &v)
        case .double(var v): r = sd_bus_message_append_basic(m, code("d"), &v)
        case .unixFD(var v): r = sd_bus_message_append_basic(m, code("h"), &v)
        case .string(let s): r = s.withCString { sd_bus_message_append_basic(m, code("s"), $0) }
        case .objectPath(let s): r = s.withCString { sd_bus_message_append_basic(m, code("o"), $0) }
        case .signature(let s): r = s.withCString { sd_bus_message_append_basic(m, code("g"), $0) }
        case .bytes(let b):
            r = b.withUnsafeBytes { sd_bus_message_append_array(m, code("y"), $0.baseAddress, $0.count) }
        case .array(let element, let items): r = try appendContainer(m, code("a"), element, items)
        case .dictEntry(let key, let item):
            r = try appendContainer(m, code("e"), key.signature + item.signature, [key, item])
        case .structure(let fields): r = try appendContainer(m, code("r"), fields.map(\.signature).joined(), fields)
        case .variant(let inner): r = try appendContainer(m, code("v"), inner.signature, [inner])
        }
        if r < 0 { throw .system(-r, "building a D-Bus message (\(value.signature))") }
    }

    private static func appendContainer(_ m: OpaquePointer, _ type: CChar, _ contents: String, _ items: [DBusValue])
        throws(DBusError) -> Int32
    {
        let opened = contents.withCString { sd_bus_message_open_container(m, type, $0) }
        if opened < 0 { return opened }
        for item in items { try append(m, item) }
        return sd_bus_message_close_container(m)
    }
}

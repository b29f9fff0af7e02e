import Foundation
import Synchronization

/// Why a test service (the private bus, the mock bluetoothd) could not be started or driven.
public struct TestServiceError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// A private `dbus-daemon` for one test, listening on a socket in a fresh temporary directory, so
/// BlueZ tests never touch the host's system bus and can run in parallel. Stopped by ``stop()`` (or
/// when released).
public final class PrivateDBus: Sendable {
    /// Who may send what on the bus.
    public enum Policy: Sendable {
        /// Anyone may own any name and call anything (a session bus).
        case open
        /// As `.open`, but method calls to `name` are refused with AccessDenied, as the system bus's
        /// policy refuses org.bluez to a user outside the `bluetooth` group.
        case denyCallsTo(String)
    }

    /// `unix:path=…`, for ``BlueZBackend(busAddress:)`` and the mock.
    public let address: String
    public let directory: String
    private let process: ChildProcess

    /// Starts the daemon and returns once it listens.
    public static func start(policy: Policy = .open) throws -> PrivateDBus {
        let directory = temporaryDirectory("dbus")
        let socket = "\(directory)/bus"
        var rules = """
                <allow send_destination="*" eavesdrop="true"/>
                <allow eavesdrop="true"/>
                <allow own="*"/>
            """
        if case .denyCallsTo(let name) = policy {
            rules += "\n        <deny send_destination=\"\(name)\" send_type=\"method_call\"/>"
        }
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>session</type>
              <listen>unix:path=\(socket)</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
            \(rules)
              </policy>
            </busconfig>
            """
        let configPath = "\(directory)/bus.conf"
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        guard
            let daemon = ["/usr/bin/dbus-daemon", "/bin/dbus-daemon"].first(where: FileManager.default.isExecutableFile)
        else { throw TestServiceError("dbus-daemon is not installed (Debian: dbus-daemon; scripts/deps.sh test)") }
        let process = try ChildProcess(daemon, ["--config-file=\(configPath)", "--nofork", "--print-address"])
        // --print-address writes the address once the daemon listens.
        guard let printed = process.output.waitForFirstLineBlocking(timeout: 10) else {
            process.stop()
            throw TestServiceError("dbus-daemon did not start: \(process.output.text)")
        }
        guard printed.hasPrefix("unix:") else {
            process.stop()
            throw TestServiceError("dbus-daemon printed no address: \(process.output.text)")
        }
        return PrivateDBus(address: "unix:path=\(socket)", directory: directory, process: process)
    }

    private init(address: String, directory: String, process: ChildProcess) {
        self.address = address
        self.directory = directory
        self.process = process
    }

    deinit { process.stop() }

    public func stop() {
        process.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The test-only bluetoothd of `Tests/e2e/mockbluez/mockbluez.py` on a ``PrivateDBus``: an adapter,
/// a heart-rate strap, a power meter and a keyboard, driven by commands (see the script's docstring)
/// and reporting every D-Bus call it receives as a line of ``lines``.
public final class MockBlueZ: Sendable {
    /// "HRM Mock": Heart Rate, Battery (read + notify, 85 %), Device Information; known before discovery.
    public static let heartRateStrap = "AA:BB:CC:DD:EE:01"
    /// "Power Mock": Cycling Power, Battery (read only, 64 %), Device Information; found by discovery.
    public static let powerMeter = "AA:BB:CC:DD:EE:02"
    /// "Keyboard Mock": HID only, found only by a discovery without a UUID filter.
    public static let keyboard = "AA:BB:CC:DD:EE:03"

    /// The mock's script, next to the end-to-end tests.
    public static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("e2e/mockbluez/mockbluez.py").path

    private let process: ChildProcess

    /// Starts the mock on `bus` and returns once it owns `org.bluez`. `options`: `--powered-off`,
    /// `--no-adapter`.
    public static func start(on bus: PrivateDBus, options: [String] = []) async throws -> MockBlueZ {
        let python = ProcessInfo.processInfo.environment["PULSEGATE_MOCKBLUEZ_PYTHON"] ?? "/usr/bin/python3"
        let process = try ChildProcess(python, [script, "--address", bus.address] + options, stdin: true)
        let mock = MockBlueZ(process: process)
        do {
            try await mock.waitFor("ready", timeout: .seconds(15))
        } catch {
            process.stop()
            throw TestServiceError(
                "the mock bluetoothd did not start (it needs python3-dbus and python3-gi: scripts/deps.sh test): "
                    + process.output.text)
        }
        return mock
    }

    private init(process: ChildProcess) { self.process = process }

    deinit { process.stop() }

    /// Every line the mock printed so far.
    public var lines: [String] { process.output.lines }

    /// How many lines start with `prefix` (`call Connect AA:BB:CC:DD:EE:01`).
    public func count(_ prefix: String) -> Int { lines.filter { $0.hasPrefix(prefix) }.count }

    /// Runs one control command and waits for its answer; an `error` answer throws.
    public func send(_ command: String, timeout: Duration = .seconds(10)) async throws {
        let seen = process.output.lines.count
        process.write(command + "\n")
        let answer = try await process.output.wait(timeout: timeout) { lines in
            lines.dropFirst(seen).first { $0 == "ok \(command)" || $0.hasPrefix("error \(command):") }
        }
        if answer.hasPrefix("error") { throw TestServiceError("mock: \(answer)") }
    }

    /// Waits until at least `count` lines start with `prefix`.
    public func waitFor(_ prefix: String, count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        _ = try await process.output.wait(timeout: timeout) { lines in
            let matching = lines.filter { $0.hasPrefix(prefix) }
            return matching.count >= count ? matching.last : nil
        }
    }

    /// Stops the mock (as bluetoothd stopping would: its name leaves the bus).
    public func stop() { process.stop() }
}

/// A child process whose stdout and stderr are collected line by line.
final class ChildProcess: Sendable {
    let output = LineLog()
    private let process: Mutex<Process?>
    private let stdin: FileHandle?

    init(_ executable: String, _ arguments: [String], stdin wantsInput: Bool = false) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        var input: Pipe?
        if wantsInput {
            input = Pipe()
            process.standardInput = input
        }
        let log = output
        do {
            try process.run()
        } catch {
            throw TestServiceError("cannot run \(executable): \(error)")
        }
        self.stdin = input?.fileHandleForWriting
        self.process = Mutex(process)
        // A plain reading thread: FileHandle's readabilityHandler crashed libdispatch when the pipe
        // went away with the process. The thread owns the pipe until end of file.
        let reader = Thread {
            let fd = pipe.fileHandleForReading.fileDescriptor
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(fd, &buffer, buffer.count)
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                log.append(Data(buffer[0..<count]))
            }
            log.close()
            try? pipe.fileHandleForReading.close()
        }
        reader.name = "test-child-output"
        reader.start()
    }

    func write(_ text: String) {
        try? stdin?.write(contentsOf: Data(text.utf8))
    }

    /// Ends the process: closes its stdin (the mock exits on end of input) and, if it is still there
    /// after a moment, SIGKILLs it (SIGTERM may be blocked: children inherit the test runner's mask).
    func stop() {
        guard
            let process = self.process.withLock({ process in
                defer { process = nil }; return process
            })
        else { return }
        try? stdin?.close()
        var deadline = ContinuousClock.now + .seconds(stdin == nil ? 0 : 1)
        while process.isRunning && ContinuousClock.now < deadline { usleep(5_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning && ContinuousClock.now < deadline { usleep(5_000) }
    }
}

/// Lines of a child's output, with waiters for the line a test expects.
final class LineLog: Sendable {
    /// Looks at all lines so far and gives the one waited for, or `nil` to keep waiting.
    typealias Condition = @Sendable ([String]) -> String?

    private struct State {
        var partial = Data()
        var lines: [String] = []
        var closed = false
        var waiters: [UInt64: (condition: Condition, continuation: CheckedContinuation<String?, Never>)] = [:]
        var next: UInt64 = 0
    }

    private let state = Mutex(State())
    private let firstLine = DispatchSemaphore(value: 0)

    var lines: [String] { state.withLock { $0.lines } }
    var text: String { lines.joined(separator: "\n") }

    func append(_ data: Data) {
        var resumed = [(CheckedContinuation<String?, Never>, String)]()
        let signalFirst = state.withLock { state -> Bool in
            let hadLines = !state.lines.isEmpty
            state.partial.append(data)
            while let newline = state.partial.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: state.partial[state.partial.startIndex..<newline], as: UTF8.self)
                state.partial.removeSubrange(state.partial.startIndex...newline)
                state.lines.append(line)
            }
            for (id, waiter) in state.waiters {
                if let line = waiter.condition(state.lines) {
                    resumed.append((waiter.continuation, line))
                    state.waiters[id] = nil
                }
            }
            return !hadLines && !state.lines.isEmpty
        }
        if signalFirst { firstLine.signal() }
        for (continuation, line) in resumed { continuation.resume(returning: line) }
    }

    func close() {
        let waiting = state.withLock { state in
            state.closed = true
            defer { state.waiters.removeAll() }
            return state.waiters.values.map(\.continuation)
        }
        firstLine.signal()
        for continuation in waiting { continuation.resume(returning: nil) }
    }

    /// The first line, waiting up to `timeout` seconds for it (a synchronous start-up only).
    func waitForFirstLineBlocking(timeout: Double) -> String? {
        _ = firstLine.wait(timeout: .now() + timeout)
        return lines.first
    }

    /// The line `condition` picks, once it picks one.
    func wait(timeout: Duration, _ condition: @escaping Condition) async throws -> String {
        let id = state.withLock { state in
            state.next += 1
            return state.next
        }
        let found: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
                        let now: String?? = self.state.withLock { state in
                            if let line = condition(state.lines) { return .some(line) }
                            if state.closed { return .some(nil) }
                            state.waiters[id] = (condition, continuation)
                            return .none
                        }
                        if case .some(let line) = now { continuation.resume(returning: line) }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                    waiter?.continuation.resume(returning: nil)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let found else {
            throw TestServiceError("timed out after \(timeout) waiting for a line; output so far:\n\(text)")
        }
        return found
    }
}

import Foundation
import NIOPosix
import PulseGateCore
import PulseGateStore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Appends NDJSON to a file, `fsync`s, then acknowledges; rotates by size.
///
/// On open, a torn last line (a crash in the middle of a write) is cut off: its batch was never
/// acknowledged and will be written again, so keeping the fragment would only leave garbage in the
/// middle of the file. A failed write (full disk, file-size limit) is rolled back to the previous
/// length before the error is reported, for the same reason.
public final class FileSink: Sink {
    public let id: String
    public var kind: String { "file" }
    public let path: String
    public let rotateBytes: Int64
    public let keepFiles: Int

    private struct State {
        var fd: Int32 = -1
        var size: Int64 = 0
    }
    private let state = Mutex(State())
    private let pool: NIOThreadPool

    public init(id: String, path: String, rotateBytes: Int64, keepFiles: Int, threadPool: NIOThreadPool = .singleton) {
        self.id = id
        self.path = path
        self.rotateBytes = rotateBytes
        self.keepFiles = keepFiles
        self.pool = threadPool
    }

    public func deliver(_ batch: OutboxBatch, batchID: String) async throws(SinkError) {
        do {
            try await pool.runIfActive { try self.write(batch.body) }
        } catch let error as SinkError {
            throw error
        } catch {
            throw .retryable("\(path): \(error)")
        }
    }

    /// Blocking: runs on the thread pool.
    private func write(_ body: [UInt8]) throws(SinkError) {
        try state.withLock { s throws(SinkError) in
            if s.fd < 0 { try open(&s) }
            if s.size > 0, s.size + Int64(body.count) > rotateBytes { try rotate(&s) }
            let before = s.size
            var offset = 0
            while offset < body.count {
                let n = body.withUnsafeBytes { Glibc.write(s.fd, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0 {
                    let err = errno
                    if err == EINTR { continue }
                    _ = ftruncate(s.fd, off_t(before))
                    throw .retryable("\(path): write failed: \(String(cString: strerror(err)))")
                }
                offset += n
            }
            if fsync(s.fd) != 0 {
                let err = errno
                _ = ftruncate(s.fd, off_t(before))
                throw .retryable("\(path): fsync failed: \(String(cString: strerror(err)))")
            }
            s.size = before + Int64(body.count)
        }
    }

    private func open(_ s: inout State) throws(SinkError) {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw .retryable("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        var size = Int64(lseek(fd, 0, SEEK_END))
        if size > 0 {
            size = Self.lengthWithoutTornTail(fd: fd, size: size)
            if ftruncate(fd, off_t(size)) != 0 {
                close(fd)
                throw .retryable("\(path): cannot cut a torn last line: \(String(cString: strerror(errno)))")
            }
        }
        s.fd = fd
        s.size = size
    }

    /// The length up to and including the last newline.
    private static func lengthWithoutTornTail(fd: Int32, size: Int64) -> Int64 {
        var end = size
        var buffer = [UInt8](repeating: 0, count: 4096)
        while end > 0 {
            let start = max(0, end - Int64(buffer.count))
            let count = Int(end - start)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, count, off_t(start)) }
            guard n == count else { return size }
            if let i = buffer[0..<count].lastIndex(of: UInt8(ascii: "\n")) {
                return start + Int64(i) + 1
            }
            end = start
        }
        return 0
    }

    private func rotate(_ s: inout State) throws(SinkError) {
        close(s.fd)
        s.fd = -1
        let url = URL(fileURLWithPath: path)
        let stem = url.deletingPathExtension().lastPathComponent
        let ext = url.pathExtension.isEmpty ? "ndjson" : url.pathExtension
        let dir = url.deletingLastPathComponent().path
        let stamp = Self.stamp()
        var target = "\(dir)/\(stem)-\(stamp).\(ext)"
        var n = 1
        while FileManager.default.fileExists(atPath: target) {
            target = "\(dir)/\(stem)-\(stamp)-\(n).\(ext)"
            n += 1
        }
        if rename(path, target) != 0 {
            throw .retryable("\(path): rotation failed: \(String(cString: strerror(errno)))")
        }
        try open(&s)
        let dfd = Glibc.open(dir, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
        prune(dir: dir, stem: stem, ext: ext)
    }

    private func prune(dir: String, stem: String, ext: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        let rotated = names.filter { $0.hasPrefix(stem + "-") && $0.hasSuffix("." + ext) }.sorted()
        for name in rotated.dropLast(max(0, keepFiles)) {
            unlink("\(dir)/\(name)")
        }
    }

    /// `20261123T101500.123Z`: sorts by time and has no `:` (awkward in file names).
    static func stamp() -> String {
        Timestamp.now.description.filter { $0 != "-" && $0 != ":" }
    }

    public func healthCheck() async -> String? {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return access(dir, W_OK) == 0 ? nil : "\(dir) is not writable"
    }

    public func shutdown() async {
        state.withLock { s in
            if s.fd >= 0 { close(s.fd) }
            s.fd = -1
        }
    }
}

/// Writes the NDJSON lines to standard output (logs go to standard error). Useful for piping the
/// stream into another process in development.
public final class StdoutSink: Sink {
    public let id: String
    public var kind: String { "stdout" }
    private let lock = Mutex(())
    private let pool: NIOThreadPool

    public init(id: String, threadPool: NIOThreadPool = .singleton) {
        self.id = id
        self.pool = threadPool
    }

    /// A reader that stops reading blocks the write: it runs on the thread pool, never on the
    /// concurrency pool's few threads.
    public func deliver(_ batch: OutboxBatch, batchID: String) async throws(SinkError) {
        do {
            try await pool.runIfActive { try self.write(batch) }
        } catch let error as SinkError {
            throw error
        } catch {
            throw .retryable("stdout: \(error)")
        }
    }

    private func write(_ batch: OutboxBatch) throws(SinkError) {
        try lock.withLock { _ throws(SinkError) in
            var offset = 0
            while offset < batch.body.count {
                let n = batch.body.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw .retryable("stdout: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    public func healthCheck() async -> String? { nil }
    public func shutdown() async {}
}

import ArgumentParser
import Foundation
import PulseGateDaemon
import PulseGateStore

/// `pulsegate outbox …`: reads the store file directly, so it works with the daemon running or not.
struct OutboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox", abstract: "Inspect the outbox and its dead letters.",
        subcommands: [Status.self, DeadLetters.self, Replay.self])

    static func openStore(_ config: DaemonConfiguration) -> SQLiteStore {
        guard FileManager.default.fileExists(atPath: config.storePath) else {
            ConfigOptions.fail(
                "pulsegate: no store at \(config.storePath) (has the daemon run with this configuration?)", code: 1)
        }
        do {
            return try SQLiteStore(path: config.storePath, synchronous: config.synchronous)
        } catch {
            ConfigOptions.fail("pulsegate: \(error.message)", code: 1)
        }
    }

    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func time(_ ms: Int64) -> String {
        Date(timeIntervalSince1970: Double(ms) / 1000).formatted(.iso8601)
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Depth, per-sink cursors and lag, dead letters.")
        @OptionGroup var options: ConfigOptions
        @Flag(help: "Machine-readable output.") var json = false

        func run() throws {
            let store = OutboxCommand.openStore(try options.load())
            let status: OutboxStatus
            do { status = try store.outboxStatus() } catch { ConfigOptions.fail("pulsegate: \(error)", code: 1) }
            if json { return try OutboxCommand.printJSON(status) }
            print("outbox: \(status.depth) samples waiting, last seq \(status.lastSeq)")
            if let oldest = status.oldestEnqueuedAt { print("oldest waiting since \(OutboxCommand.time(oldest))") }
            for sink in status.sinks {
                print(
                    "sink \(sink.sink): acknowledged through \(sink.ackedSeq), \(sink.lag) behind, updated \(OutboxCommand.time(sink.updatedAt))"
                )
            }
            print("dead letters: \(status.deadLetters) (\(status.replaysPending) queued for replay)")
        }
    }

    struct DeadLetters: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dead-letters", abstract: "List poison batches with their reason.")
        @OptionGroup var options: ConfigOptions
        @Option(help: "Only this sink's dead letters.") var sink: String?
        @Flag(help: "Machine-readable output.") var json = false

        func run() throws {
            let store = OutboxCommand.openStore(try options.load())
            let letters: [DeadLetter]
            do { letters = try store.deadLetters(sink: sink) } catch {
                ConfigOptions.fail("pulsegate: \(error)", code: 1)
            }
            if json { return try OutboxCommand.printJSON(letters) }
            if letters.isEmpty { print("no dead letters") }
            for l in letters {
                print(
                    "#\(l.id) sink \(l.sink), \(l.sampleCount) samples (seq \(l.firstSeq)-\(l.lastSeq)), \(OutboxCommand.time(l.createdAt)), attempts \(l.attempts)\(l.replayRequested ? ", replay queued" : "")"
                )
                print("    \(l.reason)")
            }
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue dead letters for another delivery; the running daemon (or the next start) sends them.")
        @OptionGroup var options: ConfigOptions
        @Flag(help: "Every dead letter (of --sink, if given).") var all = false
        @Option(help: "Only this sink's dead letters.") var sink: String?
        @Argument(help: "Dead letter ids.") var ids: [Int64] = []

        func validate() throws {
            if all == !ids.isEmpty { throw ValidationError("give dead letter ids or --all") }
        }

        func run() throws {
            let store = OutboxCommand.openStore(try options.load())
            let count: Int
            do { count = try store.requestReplay(ids: all ? nil : ids, sink: sink) } catch {
                ConfigOptions.fail("pulsegate: \(error)", code: 1)
            }
            print("queued \(count) dead letter(s) for replay")
            if !all, count < ids.count {
                // A typo in an id must not look like success.
                ConfigOptions.fail(
                    "pulsegate: \(ids.count - count) of \(ids.count) ids are not dead letters\(sink.map { " of sink \($0)" } ?? "") or were already queued",
                    code: 1)
            }
        }
    }
}

/// The configuration that turns a freshly opened stick into a scanner for every ANT+ device in range:
/// channel 0 in continuous scan mode, with extended data so each broadcast names its sender.
///
/// One stick then hears any number of sensors (a gym floor of straps and power meters) instead of the
/// eight a stick has channels for, and no sensor has to be paired first. The sequence, each command
/// confirmed by a Channel Response (0x40) with code 0 before the next is sent:
/// Reset System (0x4A) and wait for Startup (0x6F); Set Network Key (0x46) on network 0; Assign
/// Channel (0x42, bidirectional receive); Set Channel ID (0x51, all wildcards); Set Channel RF
/// Frequency (0x45, 57 = 2457 MHz); Lib Config (0x6E, 0x80 = channel ID in every data message);
/// Open Rx Scan Mode (0x5B).
struct ANTChannelSetup: Sendable {
    /// One configuration command and the name an operator reads when the stick refuses it.
    struct Step: Sendable, Equatable {
        let name: String
        let message: ANTMessage
    }

    /// Scan mode works on channel 0 only, with every other channel closed.
    static let channel: UInt8 = 0
    static let network: UInt8 = 0
    /// Channel type 0x00, bidirectional receive (slave), as ANT's scan-mode examples assign it.
    static let receiveChannelType: UInt8 = 0x00
    /// Lib Config flag asking for the sender's channel ID (device number, type, transmission type)
    /// after every data page.
    static let channelIDFlag: UInt8 = 0x80

    static let reset = ANTMessage(id: ANTMessage.ID.resetSystem, payload: [0])

    let networkKey: ANTNetworkKey
    let rfFrequency: UInt8

    init(networkKey: ANTNetworkKey, rfFrequency: UInt8 = 57) {
        self.networkKey = networkKey
        self.rfFrequency = rfFrequency
    }

    /// The commands after the reset, in the order they are sent.
    var steps: [Step] {
        typealias ID = ANTMessage.ID
        let ch = Self.channel
        return [
            Step(
                name: "Set Network Key", message: .init(id: ID.networkKey, payload: [Self.network] + networkKey.bytes)),
            Step(
                name: "Assign Channel",
                message: .init(id: ID.assignChannel, payload: [ch, Self.receiveChannelType, Self.network])),
            // Device number 0, device type 0, transmission type 0: all wildcards.
            Step(name: "Set Channel ID", message: .init(id: ID.channelID, payload: [ch, 0, 0, 0, 0])),
            Step(name: "Set Channel RF Frequency", message: .init(id: ID.rfFrequency, payload: [ch, rfFrequency])),
            Step(name: "Lib Config", message: .init(id: ID.libConfig, payload: [0, Self.channelIDFlag])),
            // The second byte asks for synchronous channel packets only, as openant sends it: ANT+
            // sensors broadcast on a fixed period, so nothing wanted is filtered out.
            Step(name: "Open Rx Scan Mode", message: .init(id: ID.openRxScanMode, payload: [ch, 1])),
        ]
    }

    /// Runs the whole sequence. Frames the stick sent before its reset (broadcasts left over from a
    /// previous process) are dropped while waiting for Startup. A stick that never sends Startup is
    /// still tried: the next step's response proves whether it listens.
    func run(on stick: inout ANTStick, responseTimeout: Duration, startupTimeout: Duration)
        async throws(ANTSessionFailure)
    {
        try await send(Self.reset, on: &stick)
        let startupDeadline = ContinuousClock.now + startupTimeout
        while let message = try await next(on: &stick, before: startupDeadline) {
            if message.id == ANTMessage.ID.startup { break }
        }
        for step in steps {
            if Task.isCancelled { throw .cancelled }
            try await send(step.message, on: &stick)
            let code = try await response(to: step, on: &stick, timeout: responseTimeout)
            guard code == 0 else { throw .refused(step: step, code: code) }
        }
    }

    /// The code of the Channel Response to `step`, skipping anything else the stick says meanwhile.
    private func response(to step: Step, on stick: inout ANTStick, timeout: Duration)
        async throws(ANTSessionFailure) -> UInt8
    {
        let deadline = ContinuousClock.now + timeout
        while true {
            guard let message = try await next(on: &stick, before: deadline) else {
                if Task.isCancelled { throw .cancelled }
                throw .noAnswer(step: step, after: timeout)
            }
            let p = message.payload
            if message.id == ANTMessage.ID.channelResponse, p.count >= 3, p[1] == step.message.id {
                return p[2]
            }
        }
    }

    private func send(_ message: ANTMessage, on stick: inout ANTStick) async throws(ANTSessionFailure) {
        do { try await stick.send(message) } catch { throw .transport(error) }
    }

    private func next(on stick: inout ANTStick, before deadline: ContinuousClock.Instant)
        async throws(ANTSessionFailure) -> ANTMessage?
    {
        do { return try await stick.next(before: deadline) } catch { throw .transport(error) }
    }
}

/// Why a session with an open stick ended.
enum ANTSessionFailure: Error, Sendable {
    /// The task was cancelled: not a failure, the backend stops.
    case cancelled
    /// USB I/O failed; `.noDevice` means the stick was pulled out.
    case transport(ANTTransportError)
    /// A configuration command was answered with a non-zero Channel Response code.
    case refused(step: ANTChannelSetup.Step, code: UInt8)
    /// A configuration command got no Channel Response in time.
    case noAnswer(step: ANTChannelSetup.Step, after: Duration)
    /// While scanning, the stick reported channel 0 closed (event 7) or restarted (Startup 0x6F):
    /// it has to be configured again.
    case stopped(String)

    /// The operator-facing sentence, naming the step and the code where there is one.
    var message: String {
        switch self {
        case .cancelled:
            "cancelled"
        case .transport(let error):
            "ANT stick I/O failed: \(error.message)"
        case .refused(let step, let code):
            "the ANT stick refused \(step.name) (\(Self.hex(step.message.id))) with code \(code)"
                + (Self.responseCodeNames[code].map { " (\($0))" } ?? "")
        case .noAnswer(let step, let after):
            "the ANT stick did not answer \(step.name) (\(Self.hex(step.message.id))) within \(after)"
        case .stopped(let why):
            why
        }
    }

    /// Channel Response codes from the ANT Message Protocol, named as it names them.
    static let responseCodeNames: [UInt8: String] = [
        21: "channel in wrong state",
        22: "channel not opened",
        24: "channel ID not set",
        25: "close all channels first",
        40: "invalid message",
        41: "invalid network number",
        49: "invalid scan TX channel",
        51: "invalid parameter",
    ]

    /// `0x42`: how ANT documents message ids.
    static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return "0x" + String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}

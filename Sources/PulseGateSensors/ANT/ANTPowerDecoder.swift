import PulseGateCore

/// ANT+ bicycle power meter (device type 11), profile `ant:power`.
///
/// Pages decoded (every other page, such as 0x13 torque effectiveness or the common pages 0x50–0x52,
/// is accepted and yields nothing; common page 0x52 reports voltage and a status, not a percentage,
/// so it gives no `.battery`):
/// - **0x10 standard power**: `power` = instantaneous power (bytes 6–7) and `cadence` = instantaneous
///   cadence (byte 3, 0xFF = invalid), both as the meter sent them. The average power over the
///   update events, Δaccumulated power (uint16) / Δevent count (uint8), both with rollover, is not
///   emitted, so one payload never yields two `power` samples; it is kept in ``averagePower``.
/// - **0x11 wheel torque** and **0x12 crank torque**: when the event count advanced and the period
///   (1/2048 s) moved, `power` = 128π·Δtorque/Δperiod (torque in 1/32 N·m), quality `.derived`. On
///   0x12 `cadence` = 60·Δevent count·2048/Δperiod, `.derived` (the ANT+ profile and GoldenCheetah
///   divide the event count, not the crank ticks, by the accumulated period); on 0x11 byte 3 is the
///   meter's instantaneous cadence (0xFF = invalid).
/// - **0x20 crank torque frequency** (big-endian fields): `cadence` = 60·Δevent count·2000/Δtime and
///   `power` = π/30 · cadence · 10·(Δticks/Δtime·2000 − offset)/slope, both `.derived`; negative
///   torque (below the offset, back-pedalling) gives 0 W. The offset (Hz) is the meter's zero-torque
///   frequency: pass it as `ctfOffset`, or leave it `nil` to learn it from the meter's calibration
///   page (0x01, calibration id 0x10, CTF id 0x01, offset big-endian in bytes 6–7). There is no
///   universal default (it differs per meter and temperature), so until an offset is known only
///   cadence is reported.
///
/// Interleaved pages (a torque meter that also sends 0x10) keep separate state per page, and each
/// yields its own readings. No event (the count unchanged, a coasting crank) yields no derived
/// reading; the decoder does not synthesise 0 W after a silence.
public struct ANTPowerDecoder: ProfileDecoder {
    public let profile = "ant:power"

    /// The crank torque frequency offset in Hz in use: the init parameter, or the latest calibration.
    public private(set) var ctfOffset: UInt16?
    /// The average power in W over the last two 0x10 pages whose event counts differed.
    public private(set) var averagePower: Double?

    private struct Standard: Equatable {
        var event: UInt8
        var accumulatedPower: UInt16
    }
    private struct Torque: Equatable {
        var event: UInt8
        var period: UInt16
        var accumulatedTorque: UInt16
    }
    private struct CrankTorqueFrequency: Equatable {
        var event: UInt8
        var timeStamp: UInt16
        var torqueTicks: UInt16
    }

    private var standard: Standard?
    private var wheelTorque: Torque?
    private var crankTorque: Torque?
    private var ctf: CrankTorqueFrequency?

    public init(ctfOffset: UInt16? = nil) {
        self.ctfOffset = ctfOffset
    }

    public mutating func decode(_ payload: [UInt8], at time: Timestamp) throws(DecodeError) -> [Reading] {
        var r = try ANTPage.reader(payload, profile: profile)
        let page = try r.u8("page number")
        switch page {
        case 0x01: return try calibration(&r)
        case 0x10: return try standardPower(&r)
        case 0x11, 0x12: return try torquePage(&r, crank: page == 0x12)
        case 0x20: return try crankTorqueFrequency(&r)
        default: return []
        }
    }

    private mutating func calibration(_ r: inout ByteReader) throws(DecodeError) -> [Reading] {
        let calibrationID = try r.u8("calibration id")
        let ctfID = try r.u8("CTF defined id")
        try r.skip(3, "reserved")
        let offset = try ANTPage.u16BigEndian(&r, "CTF offset")
        if calibrationID == 0x10, ctfID == 0x01 {
            ctfOffset = offset
        }
        return []
    }

    private mutating func standardPower(_ r: inout ByteReader) throws(DecodeError) -> [Reading] {
        let event = try r.u8("update event count")
        _ = try r.u8("pedal power")
        let cadence = try r.u8("instantaneous cadence")
        let accumulated = try r.u16("accumulated power")
        let instantaneous = try r.u16("instantaneous power")

        var readings: [Reading] = [.measurement(.power, Double(instantaneous), unit: "W")]
        if cadence != 0xFF {
            readings.append(.measurement(.cadence, Double(cadence), unit: "/min"))
        }
        let now = Standard(event: event, accumulatedPower: accumulated)
        if let previous = standard, event != previous.event {
            let events = event &- previous.event
            averagePower = Double(accumulated &- previous.accumulatedPower) / Double(events)
        }
        standard = now
        return readings
    }

    private mutating func torquePage(_ r: inout ByteReader, crank: Bool) throws(DecodeError) -> [Reading] {
        let event = try r.u8("update event count")
        _ = try r.u8(crank ? "crank ticks" : "wheel ticks")
        let cadence = try r.u8("instantaneous cadence")
        let period = try r.u16(crank ? "crank period" : "wheel period")
        let torque = try r.u16("accumulated torque")
        let now = Torque(event: event, period: period, accumulatedTorque: torque)

        var readings: [Reading] = []
        if !crank, cadence != 0xFF {
            readings.append(.measurement(.cadence, Double(cadence), unit: "/min"))
        }
        if let previous = crank ? crankTorque : wheelTorque, event != previous.event {
            let events = Double(event &- previous.event)
            let periodTicks = Double(period &- previous.period)
            let torqueTicks = Double(torque &- previous.accumulatedTorque)
            if periodTicks > 0 {
                let power = 128 * Double.pi * torqueTicks / periodTicks
                readings.append(.measurement(.power, power, unit: "W", quality: .derived))
                if crank {
                    let rpm = 60 * events * 2048 / periodTicks
                    readings.append(.measurement(.cadence, rpm, unit: "/min", quality: .derived))
                }
            }
        }
        if crank { crankTorque = now } else { wheelTorque = now }
        return readings
    }

    private mutating func crankTorqueFrequency(_ r: inout ByteReader) throws(DecodeError) -> [Reading] {
        let event = try r.u8("update event count")
        let slope = try ANTPage.u16BigEndian(&r, "slope")
        let timeStamp = try ANTPage.u16BigEndian(&r, "time stamp")
        let ticks = try ANTPage.u16BigEndian(&r, "torque ticks stamp")
        let now = CrankTorqueFrequency(event: event, timeStamp: timeStamp, torqueTicks: ticks)

        var readings: [Reading] = []
        if let previous = ctf, event != previous.event {
            let events = Double(event &- previous.event)
            let seconds = Double(timeStamp &- previous.timeStamp) / 2000
            if seconds > 0 {
                let cadence = 60 * events / seconds
                readings.append(.measurement(.cadence, cadence, unit: "/min", quality: .derived))
                if let ctfOffset, slope > 0 {
                    let frequency = Double(ticks &- previous.torqueTicks) / seconds - Double(ctfOffset)
                    let torque = max(0, 10 * frequency / Double(slope))
                    let power = torque * cadence * Double.pi / 30
                    readings.append(.measurement(.power, power, unit: "W", quality: .derived))
                }
            }
        }
        ctf = now
        return readings
    }
}

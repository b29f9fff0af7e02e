import PulseGateCore

/// Batch ids are derived from the sink and the rows they carry, so a retried batch — even after a
/// restart — carries the same id and a receiver can recognise it.
enum BatchID {
    static func make(sink: String, firstSeq: Int64, lastSeq: Int64) -> String {
        DerivedID(fields: ["pulsegate-batch-v1", sink, String(firstSeq), String(lastSeq)]).description
    }
}

/// The vendor tests' doubles (scripted transport, in-memory state, contexts) live in
/// PulseGateTestSupport, shared with the account engine's tests.
@_exported import PulseGateTestSupport

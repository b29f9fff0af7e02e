import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import PulseGateCore
import PulseGateOAuth
import Synchronization

/// Sends one request and returns the whole answer; the real one is async-http-client, tests may use
/// another. Throws only for transport failures (no answer at all).
public protocol HTTPTransport: Sendable {
    func execute(_ request: OutboundRequest, timeout: Duration) async throws -> InboundResponse
}

/// async-http-client as a ``HTTPTransport``: redirects are not followed (a vendor redirect to another
/// host would bypass the allowed-hosts check), bodies are capped.
public struct AsyncHTTPTransport: HTTPTransport {
    public let client: HTTPClient
    public let maxBodyBytes: Int

    public init(client: HTTPClient, maxBodyBytes: Int = 64 << 20) {
        self.client = client
        self.maxBodyBytes = maxBodyBytes
    }

    public func execute(_ request: OutboundRequest, timeout: Duration) async throws -> InboundResponse {
        var r = HTTPClientRequest(url: request.url.absoluteString)
        r.method = HTTPMethod(rawValue: request.method.rawValue)
        for (name, value) in request.headers { r.headers.add(name: name, value: value) }
        if !r.headers.contains(name: "User-Agent") { r.headers.add(name: "User-Agent", value: "pulsegate") }
        if let body = request.body { r.body = .bytes(ByteBuffer(bytes: body)) }
        let seconds = max(1, Int64(timeout.components.seconds))
        let response = try await client.execute(r, timeout: .seconds(seconds))
        let body = try await response.body.collect(upTo: maxBodyBytes)
        return InboundResponse(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Array(buffer: body))
    }
}

/// The vendor HTTP client: budgets requests by the vendor's documented limits (per app and per user),
/// honours 429 + Retry-After and the vendor's rate-limit headers, times out, opens a circuit after
/// repeated failures, and retries only requests that are safe to repeat.
public final class VendorHTTP: Sendable {
    public struct Policy: Sendable {
        public var timeout: Duration = .seconds(20)
        /// Retries of idempotent requests after a transport error or 5xx.
        public var retries = 2
        /// Consecutive failures that open the circuit, and how long it stays open.
        public var breakerThreshold = 8
        public var breakerCooldown: Duration = .seconds(30)
        /// Longest a call waits for a rate budget before giving up with `.rateLimited`.
        public var maxBudgetWait: Duration = .seconds(2)
        public init() {}
    }

    /// Reads a vendor's rate-limit headers into "pause all calls until": Strava's usage/limit pairs,
    /// Polar's `RateLimit-*`. Returns nil when the headers do not demand a pause.
    public typealias HeaderReader = @Sendable (InboundResponse, Timestamp) -> Duration?

    private struct Window {
        var start: Int64
        var count: Int
        func spending() -> Window { Window(start: start, count: count + 1) }
    }

    /// The window `rule` counts in at `now`: aligned windows start at multiples of their length since the
    /// epoch, others when their first request was made.
    private static func window(_ w: Window?, _ rule: RateLimitRule, _ now: Int64) -> Window {
        let length = Int64(rule.seconds) * 1000
        if rule.aligned {
            let start = now - now % length
            return w?.start == start ? w! : Window(start: start, count: 0)
        }
        if let w, now - w.start < length { return w }
        return Window(start: now, count: 0)
    }

    private struct State {
        var appWindows: [Int: Window] = [:]
        var userWindows: [String: [Int: Window]] = [:]
        var pausedUntil: Int64 = 0
        var consecutiveFailures = 0
        var openUntil: Int64 = 0
        var probing = false
    }

    public let vendor: String
    private let transport: any HTTPTransport
    private let rules: [RateLimitRule]
    private let policy: Policy
    private let headerReader: HeaderReader?
    private let logger: Logger
    private let state = Mutex(State())
    private let requests: Counter
    private let throttled: Counter
    private let failures: Counter
    private let latency: Timer

    public init(
        vendor: String, transport: any HTTPTransport, rules: [RateLimitRule], policy: Policy = Policy(),
        headerReader: HeaderReader? = nil, logger: Logger, metricsFactory: (any MetricsFactory)? = nil
    ) {
        self.vendor = vendor
        self.transport = transport
        self.rules = rules
        self.policy = policy
        self.headerReader = headerReader
        self.logger = logger
        let factory = metricsFactory ?? MetricsSystem.factory
        requests = Counter(label: "pulsegate_vendor_requests_total", dimensions: [("vendor", vendor)], factory: factory)
        throttled = Counter(
            label: "pulsegate_vendor_rate_limited_total", dimensions: [("vendor", vendor)], factory: factory)
        failures = Counter(
            label: "pulsegate_vendor_request_failures_total", dimensions: [("vendor", vendor)], factory: factory)
        latency = Timer(
            label: "pulsegate_vendor_request_duration_seconds", dimensions: [("vendor", vendor)],
            preferredDisplayUnit: .seconds, factory: factory)
    }

    static func nowMillis() -> Int64 { Timestamp.now.millisecondsSinceEpoch }

    /// Sends `request` on behalf of `user` (a connection id; `nil` for app-level calls).
    ///
    /// - Parameter budgeted: whether the call spends from the vendor's API request budgets. Token
    ///   endpoint calls do not: vendors count API calls, and a refresh starved by a data backlog could
    ///   let tokens expire. They still respect a vendor's 429 pause and the circuit breaker.
    public func send(_ request: OutboundRequest, user: String?, budgeted: Bool = true) async throws(VendorError)
        -> InboundResponse
    {
        var attempt = 0
        while true {
            try await admit(user: budgeted ? user : nil, budgeted: budgeted)
            let started = ContinuousClock.now
            requests.increment()
            let response: InboundResponse
            do {
                response = try await transport.execute(request, timeout: policy.timeout)
            } catch {
                failures.increment()
                recordFailure()
                let message = "\(request.method.rawValue) \(request.url.path): \(error)"
                if request.idempotent, attempt < policy.retries {
                    attempt += 1
                    try? await Task.sleep(for: .milliseconds(200 * attempt * attempt))
                    continue
                }
                throw .unavailable(message, retryAfter: nil)
            }
            latency.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
            if let pause = headerReader?(response, .now) { pauseAll(for: pause) }
            switch response.status {
            case 429:
                throttled.increment()
                let wait =
                    Self.retryAfter(response)
                    ?? headerReader?(response, .now) ?? .seconds(60)
                pauseAll(for: wait)
                recordSuccess()  // the vendor is up; it only wants us to slow down
                throw .rateLimited("\(request.url.path) answered 429", retryAfter: wait)
            case 500..<600:
                failures.increment()
                recordFailure()
                if request.idempotent, attempt < policy.retries {
                    attempt += 1
                    try? await Task.sleep(for: .milliseconds(200 * attempt * attempt))
                    continue
                }
                return response
            default:
                recordSuccess()
                return response
            }
        }
    }

    /// Parses `Retry-After` (seconds or HTTP date).
    public static func retryAfter(_ response: InboundResponse) -> Duration? {
        guard let value = response.header("Retry-After")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Int(value) { return .seconds(max(0, seconds)) }
        if let date = Timestamp(httpDate: value) {
            return .milliseconds(max(0, date.millisecondsSinceEpoch - nowMillis()))
        }
        return nil
    }

    /// Waits for the circuit and the budgets; throws when the wait would be too long.
    private func admit(user: String?, budgeted: Bool) async throws(VendorError) {
        while true {
            let now = Self.nowMillis()
            let verdict = state.withLock { s -> (wait: Int64, open: Bool) in
                if s.openUntil > now { return (s.openUntil - now, true) }
                if s.openUntil != 0 {
                    // Half-open: one probe at a time.
                    if s.probing { return (200, true) }
                    s.probing = true
                }
                if s.pausedUntil > now { return (s.pausedUntil - now, false) }
                guard budgeted else { return (0, false) }
                if s.userWindows.count > 4096 { Self.prune(&s.userWindows, rules: rules, now: now) }
                // Check every budget first, then spend from all of them: a call refused by one budget
                // must not use up the others.
                var wait: Int64 = 0
                for (i, rule) in rules.enumerated() where rule.scope == .app || user != nil {
                    let w = Self.window(rule.scope == .app ? s.appWindows[i] : s.userWindows[user!]?[i], rule, now)
                    if w.count >= rule.requests { wait = max(wait, w.start + Int64(rule.seconds) * 1000 - now) }
                }
                if wait > 0 { return (wait, false) }
                for (i, rule) in rules.enumerated() {
                    if rule.scope == .app {
                        s.appWindows[i] = Self.window(s.appWindows[i], rule, now).spending()
                    } else if let user {
                        s.userWindows[user, default: [:]][i] = Self.window(s.userWindows[user]?[i], rule, now)
                            .spending()
                    }
                }
                return (0, false)
            }
            if verdict.wait == 0 { return }
            if verdict.open && verdict.wait > 200 {
                throw .unavailable(
                    "circuit open for \(vendor) after repeated failures", retryAfter: .milliseconds(verdict.wait))
            }
            if Duration.milliseconds(verdict.wait) > policy.maxBudgetWait {
                throttled.increment()
                throw .rateLimited("\(vendor) request budget spent", retryAfter: .milliseconds(verdict.wait))
            }
            try? await Task.sleep(for: .milliseconds(verdict.wait))
        }
    }

    /// Drops per-user windows that have ended, so memory follows active users, not all users ever seen.
    private static func prune(_ windows: inout [String: [Int: Window]], rules: [RateLimitRule], now: Int64) {
        windows = windows.filter { _, byRule in
            byRule.contains { i, w in w.start + Int64(rules[i].seconds) * 1000 > now }
        }
    }

    private func pauseAll(for duration: Duration) {
        let until =
            Self.nowMillis() + Int64(duration.components.seconds) * 1000
            + Int64(duration.components.attoseconds / 1_000_000_000_000_000)
        state.withLock { $0.pausedUntil = max($0.pausedUntil, until) }
    }

    private func recordFailure() {
        let now = Self.nowMillis()
        state.withLock { s in
            s.consecutiveFailures += 1
            s.probing = false
            if s.consecutiveFailures >= policy.breakerThreshold {
                s.openUntil = now + Int64(policy.breakerCooldown.components.seconds) * 1000
                logger.warning(
                    "vendor circuit open", metadata: ["vendor": "\(vendor)", "failures": "\(s.consecutiveFailures)"])
            }
        }
    }

    private func recordSuccess() {
        state.withLock { s in
            s.consecutiveFailures = 0
            s.openUntil = 0
            s.probing = false
        }
    }

    /// Whether the circuit is open right now (for `/readyz` detail and tests).
    public var circuitOpen: Bool { state.withLock { $0.openUntil > Self.nowMillis() } }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}

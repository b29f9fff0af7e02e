import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorKit
import PulseGateVendorStrava
import Synchronization
import Testing

@Suite struct VendorHTTPTests {
    let get = OutboundRequest(method: .get, url: URL(string: "http://vendor.test/api/thing")!)
    let post = OutboundRequest(method: .post, url: URL(string: "http://vendor.test/oauth/token")!, body: [])

    func client(
        rules: [RateLimitRule] = [], policy: VendorHTTP.Policy = VendorHTTP.Policy(),
        _ handler: @escaping ScriptedTransport.Handler
    ) -> (VendorHTTP, ScriptedTransport) {
        let transport = ScriptedTransport(handler)
        return (
            VendorHTTP(vendor: "v", transport: transport, rules: rules, policy: policy, logger: Logger(label: "t")),
            transport
        )
    }

    func refusal(_ body: () async throws(VendorError) -> Void) async -> VendorError? {
        do {
            try await body()
            return nil
        } catch {
            return error
        }
    }

    @Test func appAndUserBudgetsAreSpentAndRefusedWithTheWait() async throws {
        var policy = VendorHTTP.Policy()
        policy.maxBudgetWait = .zero
        let (http, transport) = client(
            rules: [
                RateLimitRule(scope: .app, requests: 3, seconds: 60),
                RateLimitRule(scope: .user, requests: 2, seconds: 60),
            ],
            policy: policy
        ) { _ in .json(200, "{}") }
        _ = try await http.send(get, user: "a")
        _ = try await http.send(get, user: "a")
        guard
            case .rateLimited(_, let wait) = await refusal({ () throws(VendorError) in
                _ = try await http.send(get, user: "a")
            })
        else { Issue.record("user budget not enforced"); return }
        #expect(wait > .seconds(50) && wait <= .seconds(60))
        _ = try await http.send(get, user: "b")  // another user still has budget; the app has 1 left
        guard case .rateLimited = await refusal({ () throws(VendorError) in _ = try await http.send(get, user: "c") })
        else {
            Issue.record("app budget not enforced"); return
        }
        // Token endpoint calls do not spend (or wait for) the API budget.
        _ = try await http.send(post, user: "a", budgeted: false)
        #expect(transport.sent.withLock { $0.count } == 4)
    }

    @Test func a429PausesEveryCallForItsRetryAfter() async throws {
        let calls = Mutex(0)
        var policy = VendorHTTP.Policy()
        policy.maxBudgetWait = .milliseconds(100)
        let (http, transport) = client(policy: policy) { _ in
            calls.withLock { $0 += 1 }
            return InboundResponse(status: 429, headers: [("Retry-After", "30")])
        }
        guard
            case .rateLimited(_, let wait) = await refusal({ () throws(VendorError) in
                _ = try await http.send(get, user: nil)
            })
        else {
            Issue.record("429 not reported"); return
        }
        #expect(wait == .seconds(30))
        // The pause holds for every later call, without asking the vendor again.
        guard case .rateLimited = await refusal({ () throws(VendorError) in _ = try await http.send(get, user: "x") })
        else {
            Issue.record("pause not honoured"); return
        }
        #expect(transport.sent.withLock { $0.count } == 1)
        #expect(calls.withLock { $0 } == 1)
    }

    @Test func onlyIdempotentCallsAreRetried() async throws {
        let failures = Mutex(2)
        let (http, transport) = client { _ in
            try failures.withLock { left in
                if left > 0 {
                    left -= 1
                    throw TransportFailure()
                }
            }
            return .json(200, "{}")
        }
        #expect(try await http.send(get, user: nil).status == 200)
        #expect(transport.sent.withLock { $0.count } == 3)
        failures.withLock { $0 = 1 }
        guard case .unavailable = await refusal({ () throws(VendorError) in _ = try await http.send(post, user: nil) })
        else {
            Issue.record("a failed POST must not be retried blindly"); return
        }
        #expect(transport.sent.withLock { $0.count } == 4)
    }

    @Test func theCircuitOpensAfterRepeatedFailuresAndProbesAfterTheCooldown() async throws {
        let up = Mutex(false)
        var policy = VendorHTTP.Policy()
        policy.breakerThreshold = 3
        policy.breakerCooldown = .seconds(1)
        let (http, transport) = client(policy: policy) { _ in up.withLock { $0 } ? .json(200, "{}") : .json(503, "{}") }
        for _ in 0..<3 { #expect(try await http.send(post, user: nil).status == 503) }
        #expect(http.circuitOpen)
        guard
            case .unavailable(let message, _) = await refusal({ () throws(VendorError) in
                _ = try await http.send(post, user: nil)
            })
        else {
            Issue.record("open circuit let a call through"); return
        }
        #expect(message.contains("circuit open"))
        #expect(transport.sent.withLock { $0.count } == 3)
        up.withLock { $0 = true }
        try await Task.sleep(for: .milliseconds(1100))
        #expect(try await http.send(post, user: nil).status == 200)
        #expect(!http.circuitOpen)
    }

    @Test func payloadURLsMustPointAtAllowedHosts() throws {
        let context = makeContext(try StravaAdapter())
        // www.strava.com is the manifest's allowed host; vendor.test is the configured API host.
        #expect(try context.checkPayloadURL("https://www.strava.com/api/v3/activities/1").host == "www.strava.com")
        #expect(try context.checkPayloadURL("http://vendor.test/api/v3/x").host == "vendor.test")
        for bad in [
            "https://evil.example/steal", "http://www.strava.com/plain-http", "https://user:pw@www.strava.com/x",
            "http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "not a url",
            "https://www.strava.com.evil.example/x",
        ] {
            #expect(throws: VendorError.self, "\(bad)") { try context.checkPayloadURL(bad) }
        }
    }
}

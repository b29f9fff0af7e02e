import Foundation
import Logging
import PulseGateCore
import PulseGateOAuth

/// A cloud vendor's side of the engine. This protocol is the contract every `vendors/<id>/` target
/// implements; the engine (`PulseGateAccounts`) owns everything vendor-agnostic: state and PKCE,
/// token storage and encryption, refresh scheduling, the webhook inbox, jobs, retries, raw-payload
/// retention, events to the sinks.
///
/// ## Life of a connection
/// 1. **Link**: the engine builds the authorize URL from the manifest (scopes, PKCE, client
///    authentication), exchanges the code, lets ``readTokenResponse(_:client:now:previousRefreshToken:)``
///    read the vendor's answer, then calls ``didLink(grant:callback:context:)`` for the vendor's account id
///    and any registration the vendor requires (Polar `POST /v3/users`), then queues a backfill made of
///    ``backfillTasks(from:to:connection:)``.
/// 2. **Webhooks**: a request to `/v1/webhooks/<id>` first goes to ``handshake(_:context:)`` (subscription
///    challenges and pings, answered without storing anything), then ``verify(_:context:)`` (signature;
///    a rejection is a 401 and leaves no trace but a metric and a log line), then is stored durably
///    under ``dedupeKey(_:)`` and answered ``acceptedStatus``. Later, off the request path,
///    ``notifications(in:)`` turns the stored body into ``VendorNotification``s.
/// 3. **Fetch**: each ``FetchTask`` runs as a leased job through ``fetch(_:connection:context:)``,
///    which returns raw records; the engine keeps them (bounded) and maps each with
///    ``map(_:connection:now:)``. Mapping is pure and versioned (``mappingVersion``) so
///    `pulsegate replay` can re-map stored raw records after a mapping fix.
/// 4. **Silence**: when a connection hears nothing for `silence_hours`, the engine runs
///    ``reconcileTasks(since:connection:)`` (polling) and ``maintainSubscriptions(context:)``.
/// 5. **Unlink**: ``revoke(connection:context:)`` at the vendor, then the engine deletes the tokens and
///    emits a tombstone.
///
/// Errors: throw ``VendorError``; its case tells the engine whether to retry, refresh the token, wait
/// for a rate limit, or give up on the task.
public protocol VendorAdapter: Sendable {
    /// The vendor's manifest (its `vendor.yaml`).
    var manifest: VendorManifest { get }

    /// Bump when ``map(_:connection:now:)`` changes output for the same raw record.
    var mappingVersion: Int { get }

    /// Reads the token endpoint's answer. Default: RFC 6749 via `client`. Override for vendors that
    /// wrap it (Withings) or answer errors in their own shape (Strava).
    func readTokenResponse(
        _ response: InboundResponse, client: OAuthClient, now: Timestamp, previousRefreshToken: Secret?
    ) throws(OAuthError) -> TokenGrant

    /// After the code exchange: returns the vendor's id for this user (webhooks name users by it) and
    /// performs any registration the vendor requires before data flows. `callback` is the query the
    /// vendor sent the user back with (Strava reports the scopes actually granted there); throw
    /// ``VendorError/rejected(_:)`` to refuse a link that cannot work (a needed scope unticked).
    func didLink(grant: TokenGrant, callback: [String: String], context: VendorContext) async throws(VendorError)
        -> String

    /// Withdraws the grant at the vendor (unlink).
    func revoke(connection: ConnectionContext, context: VendorContext) async throws(VendorError)

    /// Subscription handshakes and pings: the answer to send, or `nil` when `request` is a notification.
    func handshake(_ request: WebhookRequest, context: VendorContext) async -> WebhookAnswer?

    /// Whether `request` really comes from the vendor (signature, shared secret, timestamp tolerance).
    func verify(_ request: WebhookRequest, context: VendorContext) async -> WebhookVerdict

    /// Identifies a delivery so a retried or replayed one is absorbed. Default: SHA-256 of the body.
    func dedupeKey(_ request: WebhookRequest) -> String

    /// The status a stored notification is answered with (Strava 200, Google 204, …). Default 200.
    var acceptedStatus: Int { get }

    /// Reads a stored notification body (off the request path). Throws ``VendorError/malformed(_:)``
    /// for a body that cannot be understood; it is then kept as failed, not retried.
    func notifications(in body: [UInt8]) throws(VendorError) -> [VendorNotification]

    /// Fetches what a task names and returns the vendor's records, unmapped.
    func fetch(_ task: FetchTask, connection: ConnectionContext, context: VendorContext) async throws(VendorError)
        -> FetchOutcome

    /// Maps one raw record to canonical samples (pure; no I/O).
    func map(_ record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError) -> [Sample]

    /// The samples of one raw record as a stream the engine drains in bounded batches. Default: the
    /// whole of ``map(_:connection:now:)``. Adapters whose records can be long (a FIT file, a pushed
    /// 10-hour activity) override it so memory follows the batch size, not the activity's length; the
    /// stream must yield exactly what ``map(_:connection:now:)`` returns, in the same order.
    func samples(of record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError)
        -> any SampleSource

    /// Tasks that fetch `from..<to` for a newly linked connection (bounded by the vendor's horizon).
    func backfillTasks(from: Timestamp, to: Timestamp, connection: ConnectionContext) -> [FetchTask]

    /// Tasks that poll what may have been missed since `since` (the silence watchdog).
    func reconcileTasks(since: Timestamp, connection: ConnectionContext) -> [FetchTask]

    /// Makes sure the vendor's webhook subscription exists and is not about to expire. Default: nothing.
    func maintainSubscriptions(context: VendorContext) async throws(VendorError)

    /// Reads the vendor's rate-limit headers (beyond 429 + Retry-After). Default: none.
    var rateLimitHeaders: VendorHTTP.HeaderReader? { get }
}

extension VendorAdapter {
    public var id: String { manifest.id }
    public var acceptedStatus: Int { 200 }

    public func readTokenResponse(
        _ response: InboundResponse, client: OAuthClient, now: Timestamp, previousRefreshToken: Secret?
    ) throws(OAuthError) -> TokenGrant {
        try client.parseTokenResponse(response, now: now, previousRefreshToken: previousRefreshToken)
    }

    public func dedupeKey(_ request: WebhookRequest) -> String { request.bodyDigest }

    public func maintainSubscriptions(context: VendorContext) async throws(VendorError) {}

    public func samples(of record: RawRecord, connection: ConnectionContext, now: Timestamp) throws(VendorError)
        -> any SampleSource
    {
        ArraySampleSource(try map(record, connection: connection, now: now))
    }

    public var rateLimitHeaders: VendorHTTP.HeaderReader? { nil }
}

/// What the adapter knows about the connection it works for. Tokens are already decrypted; the
/// engine refreshes before handing out an access token that is about to expire.
public struct ConnectionContext: Sendable {
    public var id: String
    public var subject: String
    public var vendorUserID: String?
    public var scopes: [String]
    public var accessToken: Secret
    /// The adapter's own state (JSON), saved by the engine when a fetch returns a new one.
    public var cursor: JSONValue

    public init(
        id: String, subject: String, vendorUserID: String?, scopes: [String], accessToken: Secret,
        cursor: JSONValue = .null
    ) {
        self.id = id
        self.subject = subject
        self.vendorUserID = vendorUserID
        self.scopes = scopes
        self.accessToken = accessToken
        self.cursor = cursor
    }
}

/// What a stored notification asks for.
public struct VendorNotification: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Fetch something for the user.
        case fetch(FetchTask)
        /// The user withdrew consent at the vendor: stop, delete tokens, emit a tombstone.
        case deauthorized
        /// The vendor deleted a record: emit a tombstone for it.
        case deleted(recordID: String)
        /// Nothing to do (an update pulsegate does not map); the reason goes to the debug log.
        case ignore(String)
        /// The notification carries the data itself (Garmin push): each record is kept as a raw payload
        /// and mapped by a job, the same path as a fetched record (bounded batches, replayable).
        case records([RawRecord])
    }

    /// The vendor's id of the user (Strava athlete id, Polar user id …).
    public var vendorUserID: String
    public var action: Action

    public init(vendorUserID: String, action: Action) {
        self.vendorUserID = vendorUserID
        self.action = action
    }
}

/// One unit of fetching, stored as a job payload. `key` identifies the work so the same announcement
/// twice is one job (`activity:123`).
public struct FetchTask: Sendable, Equatable, Codable {
    public var kind: String
    public var key: String
    public var parameters: JSONValue

    public init(kind: String, key: String, parameters: JSONValue = .null) {
        self.kind = kind
        self.key = key
        self.parameters = parameters
    }
}

/// A vendor record exactly as fetched (body bytes) with the key it is kept under.
public struct RawRecord: Sendable, Equatable {
    /// `activity:123`, `heartrate:2026-11-20`; the same record fetched again replaces the kept copy.
    public var key: String
    public var body: [UInt8]

    public init(key: String, body: [UInt8]) {
        self.key = key
        self.body = body
    }
}

/// One record's samples, pulled in batches (see ``VendorAdapter/samples(of:connection:now:)``).
public protocol SampleSource {
    /// Up to `max` next samples; an empty array when the record is exhausted.
    mutating func next(max: Int) throws(VendorError) -> [Sample]
}

/// A record mapped all at once: fine for records of bounded size (a daily summary, a measure group).
public struct ArraySampleSource: SampleSource {
    private var samples: ArraySlice<Sample>

    public init(_ samples: [Sample]) { self.samples = samples[...] }

    public mutating func next(max: Int) throws(VendorError) -> [Sample] {
        let batch = samples.prefix(Swift.max(1, max))
        samples = samples.dropFirst(batch.count)
        return Array(batch)
    }
}

extension SampleSource {
    /// Drains the stream (tests and small records).
    public mutating func all(batch: Int = 4096) throws(VendorError) -> [Sample] {
        var out = [Sample]()
        while true {
            let next = try next(max: batch)
            if next.isEmpty { return out }
            out += next
        }
    }
}

/// What a fetch produced.
public struct FetchOutcome: Sendable {
    public var records: [RawRecord]
    /// More work discovered (the next page, each activity of a listing).
    public var followUps: [FetchTask]
    /// New adapter state for the connection, or `nil` to keep it.
    public var cursor: JSONValue?
    /// Records the vendor says were deleted.
    public var deletedRecordIDs: [String]

    public init(
        records: [RawRecord] = [], followUps: [FetchTask] = [], cursor: JSONValue? = nil,
        deletedRecordIDs: [String] = []
    ) {
        self.records = records
        self.followUps = followUps
        self.cursor = cursor
        self.deletedRecordIDs = deletedRecordIDs
    }
}

/// Why a vendor call or a payload failed, sorted by what the engine does next.
public enum VendorError: Error, Sendable, CustomStringConvertible {
    /// The access token was refused (401): refresh and try once more.
    case unauthorized(String)
    /// Over a rate limit: wait at least this long.
    case rateLimited(String, retryAfter: Duration)
    /// Network, 5xx, timeout, open circuit: retry with backoff.
    case unavailable(String, retryAfter: Duration?)
    /// The vendor refused the request for good (404 of a deleted record, 403 of a missing scope).
    case rejected(String)
    /// A payload we cannot read: kept and reported, not retried.
    case malformed(String)
    /// A URL from a payload points outside the vendor's allowed hosts (SSRF guard).
    case forbiddenURL(String)
    /// The grant is gone (the vendor says so outside the token endpoint).
    case grantRevoked(String)

    public var description: String {
        switch self {
        case .unauthorized(let m): "unauthorized: \(m)"
        case .rateLimited(let m, let d): "rate limited: \(m) (retry after \(d))"
        case .unavailable(let m, _): "unavailable: \(m)"
        case .rejected(let m): "rejected: \(m)"
        case .malformed(let m): "malformed: \(m)"
        case .forbiddenURL(let m): "forbidden URL: \(m)"
        case .grantRevoked(let m): "grant revoked: \(m)"
        }
    }

    public static func missing(_ error: JSONValue.Missing) -> VendorError { .malformed(error.description) }
}

extension JSONValue {
    /// Parses a vendor payload; unreadable JSON is a ``VendorError/malformed(_:)``.
    public static func vendorPayload(_ bytes: some Collection<UInt8>) throws(VendorError) -> JSONValue {
        do {
            return try JSONValue.parse(bytes)
        } catch {
            throw .missing(error)
        }
    }
}

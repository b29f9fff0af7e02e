/// A linked vendor account of one subject. Tokens are sealed by the engine (AES-GCM) before they get
/// here; the store never sees them in clear.
public struct ConnectionRecord: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable {
        /// Tokens valid (or refreshable); data flows.
        case active
        /// The vendor refused the grant for good; the user must link again. Tokens are gone.
        case needsRelink = "needs_relink"
        /// The user withdrew consent at the vendor. Tokens are gone.
        case revoked
    }

    public var id: String
    public var vendor: String
    public var subject: String
    public var vendorUserID: String?
    public var status: Status
    public var statusReason: String?
    public var scopes: [String]
    public var accessToken: [UInt8]?
    public var refreshToken: [UInt8]?
    /// Milliseconds since the epoch; `nil` when the vendor gave no lifetime.
    public var accessExpiresAt: Int64?
    /// When the scheduler should refresh next; `nil` when this connection never refreshes (Polar).
    public var refreshDueAt: Int64?
    /// Set durably before a refresh request leaves and cleared with the answer's tokens: a value here
    /// after a restart means the process died between the two (see ``AccountStore/beginRefresh``).
    public var refreshInFlightSince: Int64?
    public var refreshFailures: Int
    /// Bumped on every token write: a refresh only stores its answer over the generation it started
    /// from, so two refreshers can never both win.
    public var tokenGeneration: Int64
    public var linkedAt: Int64
    public var updatedAt: Int64
    public var lastWebhookAt: Int64?
    public var lastSyncAt: Int64?
    public var lastSampleAt: Int64?
    /// The adapter's own JSON state (fetch cursors, subscription ids).
    public var cursor: [UInt8]?

    public init(
        id: String, vendor: String, subject: String, vendorUserID: String?, status: Status = .active,
        statusReason: String? = nil, scopes: [String], accessToken: [UInt8]?, refreshToken: [UInt8]?,
        accessExpiresAt: Int64?, refreshDueAt: Int64?, refreshInFlightSince: Int64? = nil, refreshFailures: Int = 0,
        tokenGeneration: Int64 = 0, linkedAt: Int64, updatedAt: Int64, lastWebhookAt: Int64? = nil,
        lastSyncAt: Int64? = nil, lastSampleAt: Int64? = nil, cursor: [UInt8]? = nil
    ) {
        self.id = id
        self.vendor = vendor
        self.subject = subject
        self.vendorUserID = vendorUserID
        self.status = status
        self.statusReason = statusReason
        self.scopes = scopes
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.accessExpiresAt = accessExpiresAt
        self.refreshDueAt = refreshDueAt
        self.refreshInFlightSince = refreshInFlightSince
        self.refreshFailures = refreshFailures
        self.tokenGeneration = tokenGeneration
        self.linkedAt = linkedAt
        self.updatedAt = updatedAt
        self.lastWebhookAt = lastWebhookAt
        self.lastSyncAt = lastSyncAt
        self.lastSampleAt = lastSampleAt
        self.cursor = cursor
    }
}

/// A pending authorization: what the `state` parameter stands for until the vendor sends the user back.
public struct OAuthStateRecord: Sendable, Equatable {
    public var vendor: String
    public var subject: String
    public var linkSession: String?
    /// Sealed PKCE verifier, when the vendor uses PKCE.
    public var pkceVerifier: [UInt8]?
    public var returnTo: String?
    public var createdAt: Int64
    public var expiresAt: Int64

    public init(
        vendor: String, subject: String, linkSession: String?, pkceVerifier: [UInt8]?, returnTo: String?,
        createdAt: Int64, expiresAt: Int64
    ) {
        self.vendor = vendor
        self.subject = subject
        self.linkSession = linkSession
        self.pkceVerifier = pkceVerifier
        self.returnTo = returnTo
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    /// Why a state could not be used; each gets its own message on the callback page. A known state
    /// comes with its record, so the person can still be sent back to the app that started the link.
    public enum Refusal: Error, Sendable, Equatable {
        case unknown
        case expired(OAuthStateRecord)
        case alreadyUsed(OAuthStateRecord)
    }
}

/// A webhook notification as received, kept until processed and then (as a dedupe marker) for the
/// retention window.
public struct InboxEntry: Sendable, Equatable {
    public var id: Int64
    public var vendor: String
    public var receivedAt: Int64
    public var body: [UInt8]
    /// Request facts the adapter may need later (JSON: selected headers, query).
    public var meta: [UInt8]
    public var attempts: Int
}

/// Background work for one connection: fetch what a webhook announced, backfill, reconcile, revoke.
public struct JobRecord: Sendable, Equatable {
    public var id: Int64
    public var connectionID: String?
    public var vendor: String
    public var kind: String
    public var payload: [UInt8]
    public var attempts: Int
    public var dueAt: Int64
}

/// A job to create. `dedupeKey` makes creation idempotent: the same announcement twice is one job.
public struct JobSpec: Sendable, Equatable {
    public var connectionID: String?
    public var vendor: String
    public var kind: String
    public var payload: [UInt8]
    public var dedupeKey: String
    public var dueAt: Int64

    public init(connectionID: String?, vendor: String, kind: String, payload: [UInt8], dedupeKey: String, dueAt: Int64)
    {
        self.connectionID = connectionID
        self.vendor = vendor
        self.kind = kind
        self.payload = payload
        self.dedupeKey = dedupeKey
        self.dueAt = dueAt
    }
}

/// A vendor record as fetched, kept (bounded) with the mapping version that turned it into samples.
public struct RawPayload: Sendable, Equatable {
    public var vendor: String
    public var connectionID: String
    public var subject: String
    public var recordKey: String
    public var mappingVersion: Int
    public var fetchedAt: Int64
    public var body: [UInt8]

    public init(
        vendor: String, connectionID: String, subject: String, recordKey: String, mappingVersion: Int,
        fetchedAt: Int64, body: [UInt8]
    ) {
        self.vendor = vendor
        self.connectionID = connectionID
        self.subject = subject
        self.recordKey = recordKey
        self.mappingVersion = mappingVersion
        self.fetchedAt = fetchedAt
        self.body = body
    }
}

import Foundation
import Logging
import Metrics
import PulseGateCore
import PulseGateOAuth
import PulseGateStore
import PulseGateVendorKit

extension AccountEngine {
    // MARK: webhook intake

    /// Takes one webhook request: handshake, verification, durable store, answer. Nothing here calls
    /// the vendor, so the answer stays within the vendor's deadline; processing happens later.
    public func receiveWebhook(vendor id: String, request: WebhookRequest) async -> WebhookAnswer {
        guard let vendor = vendors[id] else {
            metrics.webhooks(id, "unknown_vendor").increment()
            return .json(404, .object(["error": .string("not_found"), "message": .string("no vendor '\(id)' here")]))
        }
        if let answer = await vendor.adapter.handshake(request, context: vendor.context) {
            metrics.webhooks(id, "handshake").increment()
            logger.info("webhook handshake", metadata: ["vendor": "\(id)", "status": "\(answer.status)"])
            return answer
        }
        guard request.body.count <= vendor.manifest.webhook.maxBodyBytes else {
            metrics.webhooks(id, "too_large").increment()
            return .json(413, .object(["error": .string("payload_too_large")]))
        }
        switch await vendor.adapter.verify(request, context: vendor.context) {
        case .authentic:
            break
        case .rejected(let reason, let label):
            // No trace but this counter and one log line: the body is not stored.
            metrics.webhooks(id, "rejected_\(label)").increment()
            logger.warning("webhook rejected", metadata: ["vendor": "\(id)", "reason": "\(reason)"])
            return .json(401, .object(["error": .string("unauthorized")]))
        }
        let entry = AccountStore.InboxInsert(
            vendor: id, dedupeKey: vendor.adapter.dedupeKey(request), body: request.body, meta: [],
            receivedAt: request.receivedAt.millisecondsSinceEpoch)
        do {
            let fresh = try await accounts.receive(entry)
            metrics.webhooks(id, fresh ? "accepted" : "duplicate").increment()
            if fresh { inboxBell.ring() }
        } catch {
            metrics.webhooks(id, "store_failed").increment()
            logger.error("webhook could not be stored", metadata: ["vendor": "\(id)", "error": "\(error)"])
            // 503: the vendor retries; nothing was acknowledged.
            return .json(503, .object(["error": .string("unavailable")]))
        }
        return WebhookAnswer(status: vendor.adapter.acceptedStatus)
    }

    // MARK: inbox

    /// Processes stored notifications: each becomes jobs, a revocation or a tombstone. A claimed batch
    /// is completed in one transaction (plus one outbox append for its events), so processing keeps up
    /// with intake instead of paying a commit per notification. Returns how many were handled.
    public func processInbox(limit: Int = 500) async -> Int {
        guard let entries = try? await accounts.claimInbox(now: Self.nowMillis, limit: limit, leaseMillis: 60_000),
            !entries.isEmpty
        else { return 0 }
        var batch = InboxBatch()
        for entry in entries { await collect(entry, into: &batch) }
        do {
            try await emit(batch.events)
            try await accounts.completeInbox(
                ids: batch.done, jobs: batch.jobs, raws: batch.raws, touched: batch.touched,
                deactivate: batch.deactivate, now: Self.nowMillis)
            if !batch.jobs.isEmpty { jobBell.ring() }
            for (vendor, id) in batch.revoked {
                logger.notice(
                    "connection revoked by the vendor", metadata: ["vendor": "\(vendor)", "connection": "\(id)"])
            }
        } catch {
            // Nothing of the batch is marked done: it is claimed again when the lease ends.
            logger.error("completing webhook notifications failed", metadata: ["error": "\(error)"])
        }
        return entries.count
    }

    /// What a batch of notifications amounts to, written together.
    struct InboxBatch {
        var done: [Int64] = []
        var jobs: [JobSpec] = []
        /// Records delivered inside notifications, kept for their map jobs.
        var raws: [RawPayload] = []
        var events: [DataEvent] = []
        var touched: [String: Int64] = [:]
        var deactivate: [(id: String, status: ConnectionRecord.Status, reason: String)] = []
        var revoked: [(String, String)] = []
        /// Connections by vendor user, read once per batch.
        var connections: [String: [ConnectionRecord]] = [:]
    }

    func collect(_ entry: InboxEntry, into batch: inout InboxBatch) async {
        guard let vendor = vendors[entry.vendor] else {
            try? await accounts.failInbox(id: entry.id, reason: "vendor \(entry.vendor) not configured", retryAt: nil)
            return
        }
        let notifications: [VendorNotification]
        do {
            notifications = try vendor.adapter.notifications(in: entry.body)
        } catch {
            metrics.webhooks(vendor.id, "unreadable").increment()
            logger.error("stored webhook unreadable", metadata: ["vendor": "\(vendor.id)", "error": "\(error)"])
            try? await accounts.failInbox(id: entry.id, reason: "\(error)", retryAt: nil)
            return
        }
        let received = Timestamp(millisecondsSinceEpoch: entry.receivedAt)
        for n in notifications {
            let key = "\(vendor.id)\u{1F}\(n.vendorUserID)"
            let connections: [ConnectionRecord]
            if let cached = batch.connections[key] {
                connections = cached
            } else {
                do {
                    connections = try await accounts.connections(vendor: vendor.id, vendorUserID: n.vendorUserID)
                } catch {
                    // Leave the entry unfinished: it is claimed again when its lease ends.
                    logger.error("webhook processing cannot read connections", metadata: ["error": "\(error)"])
                    return
                }
                batch.connections[key] = connections
            }
            if connections.isEmpty {
                logger.debug("webhook for an unknown user", metadata: ["vendor": "\(vendor.id)"])
            }
            for c in connections {
                batch.touched[c.id] = max(batch.touched[c.id] ?? 0, entry.receivedAt)
                switch n.action {
                case .fetch(let task):
                    if c.status == .active { batch.jobs.append(jobSpec(task, connection: c, due: Self.nowMillis)) }
                case .deauthorized:
                    // Also after a failed refresh marked it needs_relink: withdrawn consent is the
                    // stronger fact, and downstream must get the tombstone.
                    guard c.status != .revoked else { continue }
                    let reason = "deauthorized at the vendor"
                    batch.events.append(
                        DataEvent(kind: .revoked, subject: c.subject, vendor: c.vendor, at: received, reason: reason))
                    batch.events.append(
                        DataEvent(kind: .tombstone, subject: c.subject, vendor: c.vendor, at: received, reason: reason))
                    batch.deactivate.append((c.id, .revoked, reason))
                    batch.revoked.append((vendor.id, c.id))
                case .deleted(let recordID):
                    batch.events.append(
                        DataEvent(
                            kind: .tombstone, subject: c.subject, vendor: c.vendor, recordID: recordID, at: received,
                            reason: "deleted at the vendor"))
                case .ignore(let why):
                    logger.debug("webhook ignored", metadata: ["vendor": "\(vendor.id)", "why": "\(why)"])
                case .records(let records):
                    guard c.status == .active else { continue }
                    for record in records {
                        batch.raws.append(
                            RawPayload(
                                vendor: vendor.id, connectionID: c.id, subject: c.subject, recordKey: record.key,
                                mappingVersion: vendor.adapter.mappingVersion, fetchedAt: entry.receivedAt,
                                body: record.body))
                        batch.jobs.append(mapJobSpec(record.key, connection: c, due: Self.nowMillis))
                    }
                }
            }
        }
        batch.done.append(entry.id)
    }

    // MARK: jobs

    /// Claims due jobs and runs them with bounded concurrency; returns how many ran.
    public func runJobs(limit: Int = 32) async -> Int {
        guard let jobs = try? await accounts.claimJobs(now: Self.nowMillis, limit: limit, leaseMillis: 120_000),
            !jobs.isEmpty
        else { return 0 }
        await Self.forEach(jobs, width: settings.jobConcurrency) { job in await self.run(job) }
        return jobs.count
    }

    func run(_ job: JobRecord) async {
        guard let vendor = vendors[job.vendor] else {
            await park(job, reason: "vendor \(job.vendor) is not configured")
            return
        }
        switch job.kind {
        case "fetch": await runFetch(job, vendor: vendor)
        case "map": await runMap(job, vendor: vendor)
        case "revoke": await runRevoke(job, vendor: vendor)
        default: await park(job, reason: "unknown job kind \(job.kind)")
        }
    }

    func runFetch(_ job: JobRecord, vendor: VendorRuntime) async {
        guard let task = try? JSONDecoder().decode(FetchTask.self, from: Data(job.payload)) else {
            await park(job, reason: "unreadable fetch task")
            return
        }
        guard let id = job.connectionID, var connection = try? await accounts.connection(id: id),
            connection.status == .active
        else {
            // Unlinked or revoked meanwhile: the work has no owner any more.
            try? await accounts.completeJob(id: job.id, followUps: [], now: Self.nowMillis)
            return
        }
        do {
            var outcome: FetchOutcome
            var token: Secret
            (token, connection) = try await accessToken(for: connection)
            do {
                outcome = try await vendor.adapter.fetch(
                    task, connection: connectionContext(connection, token: token), context: vendor.context)
            } catch let error as VendorError {
                guard case .unauthorized = error else { throw error }
                // The vendor refused the token before its expiry: refresh once and retry once.
                (token, connection) = try await accessToken(for: connection, force: true)
                outcome = try await vendor.adapter.fetch(
                    task, connection: connectionContext(connection, token: token), context: vendor.context)
            }
            let now = Timestamp.now
            let context = try connectionContext(connection, token: token)
            // Samples first, then the job's end: a crash in between repeats the fetch, and the
            // deterministic ids make the repeat harmless downstream.
            let raws = outcome.records.map {
                RawPayload(
                    vendor: vendor.id, connectionID: connection.id, subject: connection.subject, recordKey: $0.key,
                    mappingVersion: vendor.adapter.mappingVersion, fetchedAt: now.millisecondsSinceEpoch, body: $0.body)
            }
            var sampled: Bool
            do {
                sampled = try await emitSamples(of: outcome.records, vendor: vendor, connection: context, now: now) > 0
            } catch let error as VendorError {
                // A record that cannot be mapped (a corrupt FIT file) is kept all the same, so nothing
                // the vendor gave is lost: `pulsegate replay` maps it after a fix. The job is parked.
                try? await accounts.keepRaw(raws)
                throw error
            }
            let tombstones = outcome.deletedRecordIDs.map {
                DataEvent(
                    kind: .tombstone, subject: connection.subject, vendor: vendor.id, recordID: $0, at: now,
                    reason: "deleted at the vendor"
                ).line
            }
            if !tombstones.isEmpty {
                _ = try await outbox.enqueue(tombstones)
                sampled = true
            }
            try await accounts.completeFetch(
                jobID: job.id, connectionID: connection.id,
                raws: raws,
                cursor: outcome.cursor?.bytes,
                followUps: outcome.followUps.map {
                    jobSpec($0, connection: connection, due: now.millisecondsSinceEpoch)
                },
                sampled: sampled, now: now.millisecondsSinceEpoch)
            if !outcome.followUps.isEmpty { jobBell.ring() }
            metrics.jobs(vendor.id, "done").increment()
        } catch {
            await failed(job, error, vendor: vendor, connection: connection)
        }
    }

    /// Maps a record a notification delivered (kept as a raw payload when the notification was
    /// processed) into the outbox, like a fetched one.
    func runMap(_ job: JobRecord, vendor: VendorRuntime) async {
        guard let id = job.connectionID, let connection = try? await accounts.connection(id: id),
            connection.status == .active
        else {
            try? await accounts.completeJob(id: job.id, followUps: [], now: Self.nowMillis)
            return
        }
        let key = String(decoding: job.payload, as: UTF8.self)
        do {
            guard let raw = try await accounts.rawPayload(vendor: vendor.id, connectionID: id, recordKey: key) else {
                // Purged or replaced by an unlink meanwhile: nothing left to map.
                try await accounts.completeJob(id: job.id, followUps: [], now: Self.nowMillis)
                return
            }
            let now = Timestamp.now
            // Mapping needs no token: the data came with the notification.
            let context = ConnectionContext(
                id: connection.id, subject: connection.subject, vendorUserID: connection.vendorUserID,
                scopes: connection.scopes, accessToken: Secret(""))
            let count = try await emitSamples(
                of: [RawRecord(key: raw.recordKey, body: raw.body)], vendor: vendor, connection: context, now: now)
            try await accounts.completeFetch(
                jobID: job.id, connectionID: connection.id, raws: [], cursor: nil, followUps: [], sampled: count > 0,
                now: now.millisecondsSinceEpoch)
            metrics.jobs(vendor.id, "done").increment()
        } catch {
            await failed(job, error, vendor: vendor, connection: connection)
        }
    }

    /// Streams the samples of `records` into the outbox in bounded batches, so a record's size (a
    /// 10-hour activity) never decides the memory held. Returns how many samples went out.
    func emitSamples(of records: [RawRecord], vendor: VendorRuntime, connection: ConnectionContext, now: Timestamp)
        async throws -> Int
    {
        var total = 0
        for record in records {
            var source = try vendor.adapter.samples(of: record, connection: connection, now: now)
            while true {
                let batch = try source.next(max: Self.sampleBatch)
                if batch.isEmpty { break }
                _ = try await outbox.enqueue(batch.map(SampleCodec.line))
                total += batch.count
                metrics.samples(vendor.id).increment(by: batch.count)
            }
        }
        return total
    }

    /// Samples per outbox append while mapping a record.
    public static let sampleBatch = 5000

    /// What a fetch or map job does when it fails: the vendor's error decides (``handle(_:job:vendor:connection:)``),
    /// a store error retries (later when the outbox is full), anything else retries with backoff.
    func failed(_ job: JobRecord, _ error: any Error, vendor: VendorRuntime, connection: ConnectionRecord) async {
        switch error {
        case let error as VendorError:
            await handle(error, job: job, vendor: vendor, connection: connection)
        case let error as StoreError:
            metrics.jobs(vendor.id, "store_failed").increment()
            await retry(job, after: error.code == .outboxFull ? .seconds(10) : nil, reason: error.message)
        default:
            await retry(job, after: nil, reason: "\(error)")
        }
    }

    func handle(_ error: VendorError, job: JobRecord, vendor: VendorRuntime, connection: ConnectionRecord) async {
        switch error {
        case .rateLimited(_, let wait):
            metrics.jobs(vendor.id, "rate_limited").increment()
            await retry(job, after: wait, reason: "\(error)", counts: false)
        case .unavailable(_, let wait):
            metrics.jobs(vendor.id, "retry").increment()
            await retry(job, after: wait, reason: "\(error)")
        case .unauthorized(let why):
            // Still refused after a fresh token: the grant is dead for data even if refresh works.
            if connection.refreshToken == nil {
                _ = await needsRelink(connection, reason: "the vendor refuses the access token (\(why))", at: .now)
                try? await accounts.completeJob(id: job.id, followUps: [], now: Self.nowMillis)
            } else {
                await retry(job, after: .seconds(300), reason: "\(error)")
            }
        case .grantRevoked(let why):
            // Re-read: a refresh during this job may have ended the connection already.
            if let current = try? await accounts.connection(id: connection.id), current.status == .active {
                _ = await needsRelink(current, reason: why, at: .now)
            }
            try? await accounts.completeJob(id: job.id, followUps: [], now: Self.nowMillis)
        case .rejected, .malformed, .forbiddenURL:
            metrics.jobs(vendor.id, "failed").increment()
            logger.error(
                "vendor job failed for good",
                metadata: ["vendor": "\(vendor.id)", "job": "\(job.id)", "error": "\(error)"])
            await park(job, reason: "\(error)")
        }
    }

    func retry(_ job: JobRecord, after wait: Duration?, reason: String, counts: Bool = true) async {
        if counts, job.attempts >= settings.jobMaxAttempts {
            await park(job, reason: "gave up after \(job.attempts) attempts: \(reason)")
            return
        }
        let backoff = min(1_800_000, 2_000 * Int64(1 << min(job.attempts, 10)))
        var delay = Int64.random(in: (backoff / 2)...max(backoff / 2 + 1, backoff))
        if let wait { delay = max(Int64(wait.components.seconds) * 1000 + 100, counts ? delay : 0) }
        try? await accounts.retryJob(id: job.id, at: Self.nowMillis + delay, reason: String(reason.prefix(500)))
    }

    /// Keeps a job that cannot succeed (with its reason) without running it again, for an operator.
    func park(_ job: JobRecord, reason: String) async {
        metrics.jobs(job.vendor, "parked").increment()
        logger.error("job parked", metadata: ["vendor": "\(job.vendor)", "job": "\(job.id)", "reason": "\(reason)"])
        try? await accounts.retryJob(id: job.id, at: Int64.max / 2, reason: "parked: \(String(reason.prefix(500)))")
    }

    func runRevoke(_ job: JobRecord, vendor: VendorRuntime) async {
        guard let payload = try? JSONValue.parse(job.payload), let hex = payload["token"]?.string,
            let sealed = [UInt8](hex: hex), let connectionID = payload["connection_id"]?.string,
            let token = try? cipher.open(sealed, context: "revoke:\(connectionID)")
        else {
            await park(job, reason: "unreadable revoke job")
            return
        }
        let context = ConnectionContext(
            id: connectionID, subject: payload["subject"]?.string ?? "",
            vendorUserID: payload["vendor_user_id"]?.string, scopes: [], accessToken: token)
        do {
            try await vendor.adapter.revoke(connection: context, context: vendor.context)
            metrics.revocations(vendor.id, "revoked").increment()
            try? await accounts.completeJob(id: job.id, followUps: [], now: Self.nowMillis)
        } catch .rejected {
            try? await accounts.completeJob(id: job.id, followUps: [], now: Self.nowMillis)
        } catch {
            await retry(job, after: nil, reason: "\(error)")
        }
    }

    // MARK: silence watchdog and maintenance

    /// Finds connections that have heard nothing for their vendor's silence threshold, queues a
    /// reconciling poll for each and checks the vendor's subscription. Returns how many were queued.
    public func watchdog(limit: Int = 500) async -> Int {
        var queued = 0
        let now = Timestamp.now
        for vendor in vendors.values {
            let quietFor = Int64(vendor.settings.silenceHours * 3_600_000)
            guard quietFor > 0,
                let quiet = try? await accounts.quietConnections(
                    vendor: vendor.id, before: now.millisecondsSinceEpoch - quietFor, limit: limit),
                !quiet.isEmpty
            else { continue }
            var jobs = [JobSpec]()
            for c in quiet {
                let since = Timestamp(millisecondsSinceEpoch: max(c.lastSyncAt ?? 0, c.linkedAt) - 3_600_000)
                guard let context = try? connectionContext(c, token: Secret("")) else { continue }
                jobs += vendor.adapter.reconcileTasks(since: since, connection: context).map {
                    jobSpec($0, connection: c, due: now.millisecondsSinceEpoch)
                }
                // Counts as a sync attempt, so the same connection is not queued again every round.
                try? await accounts.markSynced(id: c.id, at: now.millisecondsSinceEpoch)
            }
            try? await accounts.enqueueJobs(jobs, now: now.millisecondsSinceEpoch)
            queued += quiet.count
            metrics.jobs(vendor.id, "reconcile_queued").increment(by: quiet.count)
            logger.notice(
                "silence watchdog: reconciling quiet connections",
                metadata: ["vendor": "\(vendor.id)", "connections": "\(quiet.count)"])
            await maintain(vendor)
        }
        if queued > 0 { jobBell.ring() }
        return queued
    }

    /// Makes sure each vendor's subscription exists and is fresh.
    public func maintainSubscriptions() async {
        for vendor in vendors.values { await maintain(vendor) }
    }

    func maintain(_ vendor: VendorRuntime) async {
        do {
            try await vendor.adapter.maintainSubscriptions(context: vendor.context)
        } catch {
            logger.warning(
                "subscription maintenance failed", metadata: ["vendor": "\(vendor.id)", "error": "\(error)"])
        }
    }

    /// Drops processed notifications and raw payloads past their retention.
    public func purge() async {
        let now = Self.nowMillis
        _ = try? await accounts.purgeInbox(before: now - Int64(settings.inboxRetention.components.seconds) * 1000)
        _ = try? await accounts.purgeRaw(before: now - Int64(settings.rawRetention.components.seconds) * 1000)
    }

    // MARK: replay

    /// Maps kept raw payloads of `vendor` fetched since `since` again with the current mapping and
    /// appends the samples to the outbox (ids are deterministic: unchanged values dedupe downstream,
    /// corrected ones replace). Returns (records, samples).
    public func replay(vendor id: String, since: Timestamp) async throws(AccountError) -> (Int, Int) {
        guard let vendor = vendors[id] else { throw AccountError(.unknownVendor, "vendor '\(id)' is not configured") }
        var afterID: Int64 = 0
        var records = 0
        var samples = 0
        let now = Timestamp.now
        while true {
            let page: [(id: Int64, payload: RawPayload)]
            do {
                page = try await accounts.rawPayloads(
                    vendor: id, since: since.millisecondsSinceEpoch, afterID: afterID, limit: 20)
            } catch {
                throw AccountError(.unavailable, error.message)
            }
            guard let last = page.last else { break }
            afterID = last.id
            for (_, raw) in page {
                let context = ConnectionContext(
                    id: raw.connectionID, subject: raw.subject, vendorUserID: nil, scopes: [], accessToken: Secret(""))
                do {
                    samples += try await emitSamples(
                        of: [RawRecord(key: raw.recordKey, body: raw.body)], vendor: vendor, connection: context,
                        now: now)
                    records += 1
                } catch let error as StoreError {
                    throw AccountError(.unavailable, error.message)
                } catch {
                    logger.warning(
                        "replay: record not mappable", metadata: ["record": "\(raw.recordKey)", "error": "\(error)"])
                }
            }
        }
        return (records, samples)
    }
}

import Crypto
import Foundation
import PulseGateCore
import PulseGateOAuth
import PulseGateVendorFitbit
import PulseGateVendorKit
import Synchronization
import Testing

@Suite struct FitbitAdapterTests {
    let adapter = try! FitbitAdapter()
    static let secret = "Bearer 8d1f0c0e-7b1a-4c55-9a52-2f6b9d3e41aa"
    static let now = Timestamp(rfc3339: "2026-11-21T00:00:00Z")!

    static func label(_ verdict: WebhookVerdict) -> String? {
        if case .rejected(_, let label) = verdict { return label }
        return nil
    }

    /// A Tink-style signature header: base64(0x01 ‖ key id ‖ DER signature), as Google sends it.
    static func tinkSignature(_ body: String, key: P256.Signing.PrivateKey, keyID: UInt32 = 0x2A1B_3C4D) throws
        -> String
    {
        let der = Array(try key.signature(for: Array(body.utf8)).derRepresentation)
        let id = [UInt8(keyID >> 24), UInt8(keyID >> 16 & 0xFF), UInt8(keyID >> 8 & 0xFF), UInt8(keyID & 0xFF)]
        return Data([0x01] + id + der).base64EncodedString()
    }

    /// Google's keyset format: a Tink JSON keyset whose `value` is a serialized `EcdsaPublicKey`.
    static func tinkKeyset(_ key: P256.Signing.PublicKey, keyID: UInt32 = 0x2A1B_3C4D) -> String {
        let point = Array(key.x963Representation)
        // Tink writes coordinates as big-endian integers: a leading zero when the top bit is set.
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] { bytes.first! >= 0x80 ? [0] + bytes : Array(bytes) }
        let x = integer(point[1...32])
        let y = integer(point[33...64])
        let params: [UInt8] = [0x08, 0x03, 0x10, 0x02, 0x18, 0x02]
        let message: [UInt8] =
            [0x12, UInt8(params.count)] + params + [0x1A, UInt8(x.count)] + x + [0x22, UInt8(y.count)] + y
        let value = Data(message).base64EncodedString()
        return #"""
            {"primaryKeyId":\#(keyID),"key":[{"keyData":{"typeUrl":"type.googleapis.com/google.crypto.tink.EcdsaPublicKey","value":"\#(value)","keyMaterialType":"ASYMMETRIC_PUBLIC"},"status":"ENABLED","keyId":\#(keyID),"outputPrefixType":"TINK"}]}
            """#
    }

    @Test func manifestLoads() throws {
        let manifest = adapter.manifest
        #expect(manifest.id == "fitbit")
        #expect(manifest.displayName == "Fitbit (Google Health API)")
        #expect(manifest.oauth.pkce)
        #expect(manifest.oauth.refreshTokens == .stable)
        #expect(manifest.oauth.clientAuthentication == .body)
        #expect(manifest.oauth.scopes.count == 3)
        #expect(manifest.oauth.scopes.allSatisfy { $0.hasPrefix("https://www.googleapis.com/auth/googlehealth.") })
        #expect(manifest.urls["api"] == "https://health.googleapis.com/v4")
        #expect(adapter.acceptedStatus == 204)
        // Without access_type=offline Google issues no refresh token; without prompt=consent only the first link gets one.
        let client = OAuthClient(settings: makeContext(adapter).settings.oauthSettings(manifest))
        let query = FormEncoding.decode(try #require(client.authorizeURL(state: "s", pkce: PKCE()).query))
        #expect(query["access_type"] == "offline")
        #expect(query["prompt"] == "consent")
        #expect(query["code_challenge_method"] == "S256")
        #expect(query["scope"]?.split(separator: " ").count == 3)
    }

    // MARK: webhooks

    static let verification = #"{"type": "verification"}"#

    @Test func verificationPostsAnswer201OnlyWithTheSecret() async throws {
        let context = makeContext(adapter, secrets: ["authorization": Secret(Self.secret)])
        let with = await adapter.handshake(
            webhook(Self.verification, headers: [("Authorization", Self.secret)]), context: context)
        #expect(with?.status == 201)
        #expect(await adapter.handshake(webhook(Self.verification), context: context)?.status == 401)
        let wrong = await adapter.handshake(
            webhook(Self.verification, headers: [("Authorization", "Bearer guess")]), context: context)
        #expect(wrong?.status == 401)
        // Not configured: nothing can match, so even Google's authorized probe is refused.
        let bare = makeContext(adapter)
        #expect(
            await adapter.handshake(
                webhook(Self.verification, headers: [("Authorization", Self.secret)]), context: bare)?
                .status == 401)
        // Notifications are not handshakes.
        #expect(
            await adapter.handshake(
                webhook(Self.upsertSteps, headers: [("Authorization", Self.secret)]), context: context) == nil)
    }

    static let upsertSteps = #"""
        {"data":{"version":"1","clientProvidedSubscriptionName":"pulsegate","healthUserId":"AbC123xyz","operation":"UPSERT","dataType":"steps","intervals":[{"physicalTimeInterval":{"startTime":"2026-11-20T06:29:00Z","endTime":"2026-11-20T06:34:00Z"},"civilDateTimeInterval":{"startDateTime":{"date":{"year":2026,"month":11,"day":20},"time":{"hours":7,"minutes":29}},"endDateTime":{"date":{"year":2026,"month":11,"day":20},"time":{"hours":7,"minutes":34}}},"civilIso8601TimeInterval":{"startTime":"2026-11-20T07:29:00","endTime":"2026-11-20T07:34:00"}}]}}
        """#

    @Test func pinnedKeyVerifiesTheSignatureOverTheRawBody() async throws {
        let key = P256.Signing.PrivateKey()
        let context = makeContext(
            adapter,
            secrets: ["authorization": Secret(Self.secret), "public_key_pem": Secret(key.publicKey.pemRepresentation)])
        let signature = try Self.tinkSignature(Self.upsertSteps, key: key)
        func headers(_ sig: String?, auth: String? = Self.secret) -> [(name: String, value: String)] {
            var h = [(name: String, value: String)]()
            if let auth { h.append(("Authorization", auth)) }
            if let sig { h.append(("X-HEALTHAPI-SIGNATURE", sig)) }
            return h
        }
        #expect(
            await adapter.verify(webhook(Self.upsertSteps, headers: headers(signature)), context: context) == .authentic
        )
        // Without Tink's prefix, and under the other documented header name.
        let plain = Data(try key.signature(for: Array(Self.upsertSteps.utf8)).derRepresentation).base64EncodedString()
        #expect(
            await adapter.verify(
                webhook(
                    Self.upsertSteps, headers: [("Authorization", Self.secret), ("GOOGLE-HEALTH-API-SIGNATURE", plain)]),
                context: context) == .authentic)
        // The same JSON re-serialized is other bytes: the signature must fail.
        let tampered = Self.upsertSteps.replacingOccurrences(of: "\"steps\"", with: "\"weight\"")
        #expect(
            Self.label(await adapter.verify(webhook(tampered, headers: headers(signature)), context: context))
                == "bad_signature")
        let other = try Self.tinkSignature(Self.upsertSteps, key: P256.Signing.PrivateKey())
        #expect(
            Self.label(await adapter.verify(webhook(Self.upsertSteps, headers: headers(other)), context: context))
                == "bad_signature")
        #expect(
            Self.label(
                await adapter.verify(webhook(Self.upsertSteps, headers: headers("not base64!")), context: context))
                == "bad_signature")
        #expect(
            Self.label(await adapter.verify(webhook(Self.upsertSteps, headers: headers(nil)), context: context))
                == "no_signature")
        #expect(
            Self.label(
                await adapter.verify(
                    webhook(Self.upsertSteps, headers: headers(signature, auth: "Bearer guess")), context: context))
                == "bad_authorization")
        #expect(
            Self.label(
                await adapter.verify(
                    webhook(Self.upsertSteps, headers: headers(signature, auth: nil)), context: context))
                == "no_authorization")
        let unconfigured = makeContext(adapter, secrets: ["public_key_pem": Secret(key.publicKey.pemRepresentation)])
        #expect(
            Self.label(
                await adapter.verify(webhook(Self.upsertSteps, headers: headers(signature)), context: unconfigured))
                == "not_configured")
        let badPEM = makeContext(
            adapter,
            secrets: ["authorization": Secret(Self.secret), "public_key_pem": Secret("-----BEGIN PUBLIC KEY-----")])
        #expect(
            Self.label(await adapter.verify(webhook(Self.upsertSteps, headers: headers(signature)), context: badPEM))
                == "bad_public_key")
    }

    @Test func severalPinnedKeysCoverARotation() async throws {
        let old = P256.Signing.PrivateKey()
        let new = P256.Signing.PrivateKey()
        let pem = old.publicKey.pemRepresentation + "\n" + new.publicKey.pemRepresentation
        let context = makeContext(
            adapter, secrets: ["authorization": Secret(Self.secret), "public_key_pem": Secret(pem)])
        for key in [old, new] {
            let headers = [
                ("Authorization", Self.secret),
                ("X-HEALTHAPI-SIGNATURE", try Self.tinkSignature(Self.upsertSteps, key: key)),
            ]
            #expect(await adapter.verify(webhook(Self.upsertSteps, headers: headers), context: context) == .authentic)
        }
    }

    static let keysetPath = "/googlehealthapi/webhooks/webhooks_public_keyset.json"

    @Test func withoutAPinnedKeyGooglesKeysetIsFetchedAndKept() async throws {
        let key = P256.Signing.PrivateKey()
        let keyset = Self.tinkKeyset(key.publicKey)
        let transport = ScriptedTransport { request in
            #expect(request.url.path == Self.keysetPath)
            #expect(request.header("Authorization") == nil)
            return .json(200, keyset)
        }
        let context = makeContext(
            adapter, transport: transport, secrets: ["authorization": Secret(Self.secret)], now: Self.now)
        let good = [
            ("Authorization", Self.secret),
            ("X-HEALTHAPI-SIGNATURE", try Self.tinkSignature(Self.upsertSteps, key: key)),
        ]
        #expect(await adapter.verify(webhook(Self.upsertSteps, headers: good), context: context) == .authentic)
        #expect(await adapter.verify(webhook(Self.upsertSteps, headers: good), context: context) == .authentic)
        #expect(transport.sent.withLock { $0.count } == 1)
        // A key id the keyset does not hold: refused, and a flood of these refetches at most once a minute.
        let forged = [
            ("Authorization", Self.secret),
            ("X-HEALTHAPI-SIGNATURE", try Self.tinkSignature(Self.upsertSteps, key: key, keyID: 7)),
        ]
        #expect(
            Self.label(await adapter.verify(webhook(Self.upsertSteps, headers: forged), context: context))
                == "bad_signature")
        #expect(
            Self.label(await adapter.verify(webhook(Self.upsertSteps, headers: forged), context: context))
                == "bad_signature")
        #expect(transport.sent.withLock { $0.count } == 1)
        let later = makeContext(
            adapter, transport: transport, secrets: ["authorization": Secret(Self.secret)],
            now: Self.now.adding(milliseconds: 61_000))
        #expect(
            Self.label(await adapter.verify(webhook(Self.upsertSteps, headers: forged), context: later))
                == "bad_signature")
        #expect(transport.sent.withLock { $0.count } == 2)
    }

    @Test func noKeyAnywhereIsItsOwnRejection() async throws {
        let context = makeContext(
            adapter, transport: ScriptedTransport { _ in .json(404, "{}") },
            secrets: ["authorization": Secret(Self.secret)], now: Self.now)
        let headers = [
            ("Authorization", Self.secret),
            ("X-HEALTHAPI-SIGNATURE", try Self.tinkSignature(Self.upsertSteps, key: P256.Signing.PrivateKey())),
        ]
        #expect(
            Self.label(await adapter.verify(webhook(Self.upsertSteps, headers: headers), context: context))
                == "no_public_key")
    }

    /// A key value from Google's published keyset (www.gstatic.com/googlehealthapi/webhooks/
    /// webhooks_public_keyset.json, as quoted in a public client's test): SHA-256, NIST P-256, DER, and
    /// 33-byte coordinates with Tink's sign byte.
    @Test func googlesPublishedKeyParses() throws {
        let keyset = #"""
            {"primaryKeyId":1,"key":[{"keyData":{"typeUrl":"type.googleapis.com/google.crypto.tink.EcdsaPublicKey","value":"EgYIAxACGAIaIQBDWg3kaiabjtrVXbSSbcn6e3QqiCLD+B4GuhC/Z1C6miIhACarm0VQv9WjNZG/AB0itXCIGFW5ddInmBFUjK/8w0v3","keyMaterialType":"ASYMMETRIC_PUBLIC"},"status":"ENABLED","keyId":1,"outputPrefixType":"TINK"},{"keyData":{"typeUrl":"type.googleapis.com/google.crypto.tink.Ed25519PublicKey","value":"AAAA"},"status":"ENABLED","keyId":2,"outputPrefixType":"TINK"}]}
            """#
        let keys = FitbitWebhookSignature.keys(tinkKeyset: try JSONValue.parse(Array(keyset.utf8)))
        #expect(keys.count == 1)
        #expect(keys.first?.keyID == 1)
        #expect(keys.first?.prefix == .tink)
        #expect(keys.first?.x963.count == 65)
        #expect(keys.first?.x963.prefix(3) == [0x04, 0x43, 0x5A])
        #expect(keys.first?.publicKey != nil)
        // The same keyset pasted into public_key_pem is accepted too.
        #expect(FitbitWebhookSignature.configuredKeys(keyset)?.count == 1)
    }

    // MARK: notifications

    @Test func notificationsBecomeListTasksOfTheAnnouncedRange() throws {
        let notes = try adapter.notifications(in: Array(Self.upsertSteps.utf8))
        #expect(
            notes == [
                VendorNotification(
                    vendorUserID: "AbC123xyz",
                    action: .fetch(
                        FitbitAdapter.listTask(.steps, from: "2026-11-20T06:29:00Z", to: "2026-11-20T06:34:00Z")))
            ])
        guard case .fetch(let task) = notes[0].action else { Issue.record("not a fetch"); return }
        #expect(task.key == "steps:2026-11-20T06:29:00Z/2026-11-20T06:34:00Z")
        #expect(task.parameters["dataType"] == .string("steps"))

        // Live traffic has been seen as a batch array with camelCase data types; a range over midnight
        // is cut into day tasks.
        let batch = #"""
            [{"data":{"healthUserId":"u-1","operation":"UPSERT","dataType":"heartRate","intervals":[{"physicalTimeInterval":{"startTime":"2026-11-19T23:50:00Z","endTime":"2026-11-20T00:10:00Z"}}]}},
             {"data":{"healthUserId":"u-1","operation":"DELETE","dataType":"weight","intervals":[]}},
             {"data":{"healthUserId":"u-2","operation":"UPSERT","dataType":"floors","intervals":[]}}]
            """#
        let actions = try adapter.notifications(in: Array(batch.utf8)).map(\.action)
        #expect(actions.count == 4)
        #expect(
            actions[0]
                == .fetch(FitbitAdapter.listTask(.heartRate, from: "2026-11-19T23:50:00Z", to: "2026-11-20T00:00:00Z")))
        // A reading at exactly the announced end is listed too.
        #expect(
            actions[1]
                == .fetch(FitbitAdapter.listTask(.heartRate, from: "2026-11-20T00:00:00Z", to: "2026-11-20T00:10:01Z")))
        guard case .ignore = actions[2], case .ignore = actions[3] else {
            Issue.record("DELETE and unmapped types must be ignored: \(actions)"); return
        }
        #expect(try adapter.notifications(in: Array(Self.verification.utf8)).isEmpty)
        #expect(throws: VendorError.self) {
            try adapter.notifications(in: Array(#"{"data":{"dataType":"steps"}}"#.utf8))
        }
        #expect(throws: VendorError.self) { try adapter.notifications(in: Array("not json".utf8)) }
    }

    @Test func civilOnlyAndDailyNotificationsAreWidenedToCoverEveryOffset() throws {
        // Only civil time: the user's offset is unknown, so UTC−12 … UTC+14 must all be covered.
        let civil = #"""
            {"data":{"healthUserId":"u-1","operation":"UPSERT","dataType":"weight","civilIso8601TimeInterval":{"startTime":"2026-11-20T07:29:00","endTime":"2026-11-20T07:34:00"}}}
            """#
        let weight = try adapter.notifications(in: Array(civil.utf8)).map(\.action)
        #expect(
            weight == [
                .fetch(FitbitAdapter.listTask(.weight, from: "2026-11-19T17:29:00Z", to: "2026-11-20T00:00:00Z")),
                .fetch(FitbitAdapter.listTask(.weight, from: "2026-11-20T00:00:00Z", to: "2026-11-20T19:34:01Z")),
            ])
        // No notification ever announces oxygen-saturation: a night's sleep brings its SpO2 along.
        let sleep = #"""
            {"data":{"healthUserId":"u-1","operation":"UPSERT","dataType":"sleep","intervals":[{"physicalTimeInterval":{"startTime":"2026-11-19T22:40:00Z","endTime":"2026-11-20T06:10:00Z"}}]}}
            """#
        #expect(
            try adapter.notifications(in: Array(sleep.utf8)).map(\.action) == [
                .fetch(FitbitAdapter.listTask(.sleep, from: "2026-11-19T22:40:00Z", to: "2026-11-20T00:00:00Z")),
                .fetch(FitbitAdapter.listTask(.sleep, from: "2026-11-20T00:00:00Z", to: "2026-11-20T06:11:00Z")),
                .fetch(
                    FitbitAdapter.listTask(.oxygenSaturation, from: "2026-11-19T22:40:00Z", to: "2026-11-20T00:00:00Z")),
                .fetch(
                    FitbitAdapter.listTask(.oxygenSaturation, from: "2026-11-20T00:00:00Z", to: "2026-11-20T06:10:01Z")),
            ])
        // A daily summary: the dates around the instant, in the user's zone whatever it is.
        let daily = #"""
            {"data":{"healthUserId":"u-1","operation":"UPSERT","dataType":"daily-resting-heart-rate","intervals":[{"physicalTimeInterval":{"startTime":"2026-11-20T08:00:00Z","endTime":"2026-11-21T08:00:00Z"}}]}}
            """#
        #expect(
            try adapter.notifications(in: Array(daily.utf8)).map(\.action) == [
                .fetch(FitbitAdapter.listTask(.dailyRestingHeartRate, from: "2026-11-19", to: "2026-11-22"))
            ])
    }

    // MARK: fetch

    static let heartRatePage = #"""
        {"dataPoints":[
          {"dataSource":{"recordingMethod":"PASSIVELY_MEASURED","device":{"displayName":"Pixel Watch 3","formFactor":"WATCH","manufacturer":"Google"},"platform":"FITBIT"},
           "heartRate":{"beatsPerMinute":"62","metadata":{"motionContext":"SEDENTARY","sensorLocation":"WRIST"},"sampleTime":{"physicalTime":"2026-11-20T06:59:58.250Z","utcOffset":"3600s","civilTime":{"date":{"year":2026,"month":11,"day":20},"time":{"hours":7,"minutes":59,"seconds":58,"nanos":250000000}}}}},
          {"dataSource":{"device":{"displayName":"Pixel Watch 3","manufacturer":"Google"}},
           "heartRate":{"beatsPerMinute":"0","sampleTime":{"physicalTime":"2026-11-20T06:59:59Z","utcOffset":"3600s"}}}
        ],"nextPageToken":"CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA3"}
        """#

    @Test func listPagesFollowNextPageToken() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.method == .get)
            #expect(request.url.path == "/v4/users/me/dataTypes/heart-rate/dataPoints")
            #expect(request.header("Authorization") == "Bearer access-1")
            let query = FormEncoding.decode(request.url.query ?? "")
            #expect(
                query["filter"]
                    == #"heart_rate.sample_time.physical_time >= "2026-11-20T00:00:00Z" AND heart_rate.sample_time.physical_time < "2026-11-21T00:00:00Z""#
            )
            #expect(query["pageSize"] == "10000")
            if query["pageToken"] == "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA3" { return .json(200, #"{"dataPoints":[]}"#) }
            #expect(query["pageToken"] == nil)
            return .json(200, Self.heartRatePage)
        }
        let context = makeContext(adapter, transport: transport)
        let first = FitbitAdapter.listTask(.heartRate, from: "2026-11-20T00:00:00Z", to: "2026-11-21T00:00:00Z")
        let outcome = try await adapter.fetch(first, connection: connection(), context: context)
        #expect(outcome.records.map(\.key) == ["heart-rate:2026-11-20T00:00:00Z/2026-11-21T00:00:00Z"])
        let next = try #require(outcome.followUps.first)
        #expect(outcome.followUps.count == 1)
        #expect(next.key == "heart-rate:2026-11-20T00:00:00Z/2026-11-21T00:00:00Z:p2")
        #expect(next.parameters["pageToken"] == .string("CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA3"))
        let last = try await adapter.fetch(next, connection: connection(), context: context)
        #expect(last.records.isEmpty)
        #expect(last.followUps.isEmpty)
        #expect(transport.sent.withLock { $0.count } == 2)
    }

    @Test func eachRecordTypeFiltersOnItsOwnTimeField() async throws {
        let transport = ScriptedTransport { _ in .json(200, "{}") }
        let context = makeContext(adapter, transport: transport)
        let cases: [(FitbitDataType, String, String, String)] = [
            (.steps, "2026-11-20T00:00:00Z", #"steps.interval.start_time >= "2026-11-20T00:00:00Z""#, "10000"),
            (.sleep, "2026-11-20T00:00:00Z", #"sleep.interval.end_time >= "2026-11-20T00:00:00Z""#, "25"),
            (.dailyRestingHeartRate, "2026-11-20", #"daily_resting_heart_rate.date >= "2026-11-20""#, "10000"),
            (
                .oxygenSaturation, "2026-11-20T00:00:00Z",
                #"oxygen_saturation.sample_time.physical_time >= "2026-11-20T00:00:00Z""#, "10000"
            ),
        ]
        for (type, from, filter, pageSize) in cases {
            _ = try await adapter.fetch(
                FitbitAdapter.listTask(type, from: from, to: nil), connection: connection(), context: context)
            let query = FormEncoding.decode(transport.sent.withLock { $0.last?.url.query } ?? "")
            #expect(query["filter"] == filter)
            #expect(query["pageSize"] == pageSize)
        }
    }

    @Test func backfillAndReconcileUseDayTasks() throws {
        let from = Timestamp(rfc3339: "2026-11-18T10:00:00Z")!
        let to = Timestamp(rfc3339: "2026-11-20T00:00:00Z")!
        let tasks = adapter.backfillTasks(from: from, to: to, connection: connection())
        #expect(
            Set(tasks.compactMap { $0.parameters["dataType"]?.string }) == Set(FitbitDataType.allCases.map(\.rawValue)))
        #expect(
            tasks.filter { $0.parameters["dataType"] == .string("heart-rate") } == [
                FitbitAdapter.listTask(.heartRate, from: "2026-11-18T10:00:00Z", to: "2026-11-19T00:00:00Z"),
                FitbitAdapter.listTask(.heartRate, from: "2026-11-19T00:00:00Z", to: "2026-11-20T00:00:00Z"),
            ])
        #expect(
            tasks.filter { $0.parameters["dataType"] == .string("daily-resting-heart-rate") } == [
                FitbitAdapter.listTask(.dailyRestingHeartRate, from: "2026-11-18", to: "2026-11-21")
            ])
        #expect(Set(tasks.map(\.key)).count == tasks.count)

        let since = Timestamp.now.adding(milliseconds: -30 * 3_600_000)
        let reconcile = adapter.reconcileTasks(since: since, connection: connection())
        let steps = reconcile.filter { $0.parameters["dataType"] == .string("steps") }
        #expect(steps.count >= 2 && steps.count <= 3)
        #expect(steps.last?.parameters["to"] == nil)
        for task in steps.dropLast() {
            let start = try #require(task.parameters["from"]?.string.flatMap(Timestamp.init(rfc3339:)))
            let end = try #require(task.parameters["to"]?.string.flatMap(Timestamp.init(rfc3339:)))
            #expect(end.millisecondsSinceEpoch - start.millisecondsSinceEpoch <= 86_400_000)
        }
    }

    // MARK: mapping

    static let fixtures = #"""
        {"dataType":"mixed","dataPoints":[
          {"dataSource":{"device":{"displayName":"Charge 6","formFactor":"FITNESS_BAND","manufacturer":"Fitbit"},"platform":"FITBIT"},
           "steps":{"count":"87","interval":{"startTime":"2026-11-20T15:00:00Z","startUtcOffset":"-28800s","endTime":"2026-11-20T15:01:00Z","endUtcOffset":"-28800s","civilStartTime":{"date":{"year":2026,"month":11,"day":20},"time":{"hours":7}}}}},
          {"dataSource":{"device":{"displayName":"Pixel Watch 3","manufacturer":"Google"}},
           "heartRateVariability":{"rootMeanSquareOfSuccessiveDifferencesMilliseconds":42.5,"standardDeviationMilliseconds":55.1,"sampleTime":{"physicalTime":"2026-11-20T03:05:00Z","utcOffset":"3600s"}}},
          {"dataSource":{"device":{"displayName":"Pixel Watch 3","manufacturer":"Google"}},
           "oxygenSaturation":{"percentage":96.5,"sampleTime":{"physicalTime":"2026-11-20T03:06:00.123456789Z","utcOffset":"3600s"}}},
          {"dataSource":{"recordingMethod":"MANUAL","platform":"FITBIT"},
           "weight":{"weightGrams":72450.0,"notes":"","sampleTime":{"physicalTime":"2026-11-20T08:15:00+01:00","utcOffset":"3600s"}}},
          {"dailyRestingHeartRate":{"beatsPerMinute":"58","date":{"year":2026,"month":11,"day":19},"dailyRestingHeartRateMetadata":{"calculationMethod":"WITH_SLEEP"}}},
          {"name":"users/AbC123xyz/dataTypes/sleep/dataPoints/8c1e7f30-2a4b-4f1c-9d1e-0b7a6c5d4e3f",
           "dataSource":{"device":{"displayName":"Charge 6","manufacturer":"Fitbit"}},
           "sleep":{"type":"STAGES","interval":{"startTime":"2026-11-19T22:40:00Z","endTime":"2026-11-20T01:10:00Z"},
             "stages":[{"type":"LIGHT","startTime":"2026-11-19T22:40:00Z","endTime":"2026-11-19T23:10:00Z"},
                       {"type":"DEEP","startTime":"2026-11-19T23:10:00Z","endTime":"2026-11-19T23:55:00Z"},
                       {"type":"REM","startTime":"2026-11-19T23:55:00Z","endTime":"2026-11-20T00:30:00Z"},
                       {"type":"AWAKE","startTime":"2026-11-20T00:30:00Z","endTime":"2026-11-20T00:34:00Z"},
                       {"type":"RESTLESS","startTime":"2026-11-20T00:34:00Z","endTime":"2026-11-20T00:40:00Z"},
                       {"type":"SLEEP_STAGE_TYPE_UNSPECIFIED","startTime":"2026-11-20T00:40:00Z","endTime":"2026-11-20T01:10:00Z"}],
             "summary":{"minutesAsleep":"110","minutesAwake":"4"}}}
        ]}
        """#

    @Test func heartRateIsMappedInUTCWithItsDevice() throws {
        let page = try JSONValue.parse(Array(Self.heartRatePage.utf8))
        let record = RawRecord(
            key: "heart-rate:x",
            body: JSONValue.object(["dataType": .string("heart-rate"), "dataPoints": page["dataPoints"]!]).bytes)
        let samples = try adapter.map(record, connection: connection(), now: Self.now)
        // The 0 bpm point is a dropout the schema refuses: skipped, not fatal.
        #expect(samples.count == 1)
        let hr = try #require(samples.first)
        #expect(hr.metric == .heartRate)
        #expect(hr.value == .number(62))
        #expect(hr.start == Timestamp(rfc3339: "2026-11-20T06:59:58.250Z"))
        #expect(hr.end == nil)
        #expect(hr.source.vendor == "fitbit")
        #expect(hr.source.device == SourceRef.Device(manufacturer: "Google", model: "Pixel Watch 3"))
        #expect(hr.source.recordID == nil)
    }

    @Test func eachDataTypeMapsToItsMetricAndUnit() throws {
        let record = RawRecord(key: "mixed", body: Array(Self.fixtures.utf8))
        let samples = try adapter.map(record, connection: connection(), now: Self.now)
        func one(_ metric: Metric) throws -> Sample { try #require(samples.first { $0.metric == metric }) }

        let steps = try one(.stepCount)
        #expect(steps.value == .number(87))
        #expect(steps.start == Timestamp(rfc3339: "2026-11-20T15:00:00Z"))
        #expect(steps.end == Timestamp(rfc3339: "2026-11-20T15:01:00Z"))
        #expect(steps.source.device?.model == "Charge 6")

        #expect(try one(.hrvRMSSD).value == .number(42.5))
        #expect(try one(.hrvSDNN).value == .number(55.1))
        #expect(try one(.hrvRMSSD).start == Timestamp(rfc3339: "2026-11-20T03:05:00Z"))

        let spo2 = try one(.spo2)
        #expect(spo2.value == .number(96.5))
        #expect(spo2.start == Timestamp(rfc3339: "2026-11-20T03:06:00.123Z"))

        // Grams to the canonical kilograms; an offset in the timestamp is resolved to UTC.
        let weight = try one(.bodyWeight)
        #expect(abs((weight.value.number ?? 0) - 72.45) < 1e-9)
        #expect(weight.start == Timestamp(rfc3339: "2026-11-20T07:15:00Z"))
        #expect(weight.source.device == nil)

        let resting = try one(.restingHeartRate)
        #expect(resting.value == .number(58))
        #expect(resting.start == Timestamp(rfc3339: "2026-11-19T12:00:00Z"))
        #expect(resting.quality.contains(.vendorComputed))

        let stages = samples.filter { $0.metric == .sleepStage }
        #expect(stages.map(\.value) == ["light", "deep", "rem", "awake", "awake"].map { Sample.Value.category($0) })
        #expect(stages[1].start == Timestamp(rfc3339: "2026-11-19T23:10:00Z"))
        #expect(stages[1].end == Timestamp(rfc3339: "2026-11-19T23:55:00Z"))
        #expect(stages.allSatisfy { $0.source.recordID == "8c1e7f30-2a4b-4f1c-9d1e-0b7a6c5d4e3f" })

        #expect(samples.count == 11)
        // Deterministic: mapping the same record again gives the same ids.
        #expect(try adapter.map(record, connection: connection(), now: Self.now).map(\.id) == samples.map(\.id))
        #expect(throws: VendorError.self) {
            try adapter.map(RawRecord(key: "x", body: Array("{}".utf8)), connection: connection(), now: Self.now)
        }
    }

    // MARK: link and unlink

    @Test func linkReadsTheHealthUserIDAndNeedsAHealthScope() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.url.path == "/v4/users/me/identity")
            #expect(request.header("Authorization") == "Bearer a")
            return .json(200, #"{"name":"users/me/identity","healthUserId":"AbC123xyz","legacyUserId":"7QX9KZ"}"#)
        }
        let context = makeContext(adapter, transport: transport)
        let granted = TokenGrant(
            accessToken: Secret("a"), refreshToken: Secret("r"), expiresAt: nil,
            scopes: ["https://www.googleapis.com/auth/googlehealth.sleep.readonly"])
        #expect(try await adapter.didLink(grant: granted, callback: [:], context: context) == "AbC123xyz")
        let none = TokenGrant(
            accessToken: Secret("a"), refreshToken: Secret("r"), expiresAt: nil,
            scopes: ["openid", "https://www.googleapis.com/auth/userinfo.email"])
        await #expect(throws: VendorError.self) {
            _ = try await adapter.didLink(grant: none, callback: [:], context: context)
        }
        #expect(transport.sent.withLock { $0.count } == 1)
    }

    @Test func revokePostsTheTokenAsAForm() async throws {
        let transport = ScriptedTransport { request in
            #expect(request.method == .post)
            #expect(request.url.path == "/revoke")
            #expect(request.header("Content-Type") == "application/x-www-form-urlencoded")
            #expect(request.body == Array("token=access-1".utf8))
            return .json(200, "{}")
        }
        try await adapter.revoke(connection: connection(), context: makeContext(adapter, transport: transport))
        #expect(transport.sent.withLock { $0.count } == 1)
        // Already dead at Google: what unlinking wanted anyway.
        let dead = ScriptedTransport { _ in
            .json(400, #"{"error":"invalid_token","error_description":"Token expired or revoked"}"#)
        }
        try await adapter.revoke(connection: connection(), context: makeContext(adapter, transport: dead))
        let refused = ScriptedTransport { _ in .json(403, #"{"error":"forbidden"}"#) }
        await #expect(throws: VendorError.self) {
            try await adapter.revoke(connection: connection(), context: makeContext(adapter, transport: refused))
        }
    }
}

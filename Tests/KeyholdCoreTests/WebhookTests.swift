import Crypto
import Foundation
import KeyholdCore
import Testing

/// The pure parts of webhooks: which audit entries are events, the signature (a vector computed independently in
/// Python), the SSRF guard's address table and URL rules, the retry schedule, the payload and the secret's seal.
@Suite struct WebhookTests {
    static func entry(_ action: String, _ details: [String: JSONValue] = [:]) -> AuditEntry {
        AuditEntry(
            orgID: UUID(), actorType: .user, actorID: UUID().wire, action: action, resourceType: "secret",
            resourceID: "db/password", details: details, ipAddress: "127.0.0.1")
    }

    @Test(arguments: [
        ("secret.write", ["version": JSONValue.number(1)], WebhookEvent?.some(.secretCreated)),
        ("secret.write", ["version": .number(2)], .secretUpdated),
        ("secret.write", [:], nil),
        ("secret.delete", [:], .secretDeleted),
        ("secret.rotate", ["version": .number(3)], .secretRotated),
        ("secret.rotate", [:], nil),
        ("secret.version_disable", ["version": .number(1)], .secretVersionDisabled),
        ("share.create", [:], .shareCreated),
        ("share.access", [:], .shareAccessed),
        ("agent.register", [:], .agentCreated),
        ("agent.rotate_key", [:], .agentKeyRotated),
        ("policy.create", [:], .policyChanged),
        ("policy.update", [:], .policyChanged),
        ("policy.delete", [:], .policyChanged),
        ("approval.request", [:], .approvalRequested),
        ("approval.decide", [:], .approvalDecided),
        ("audit.verify_failed", [:], .auditVerifyFailed),
        ("webhook.test", [:], .test),
        // Reads, lists, refusals and everything else are not events.
        ("secret.read", ["version": .number(1)], nil),
        ("secret.list", [:], nil),
        ("secret.versions", [:], nil),
        ("env_var.resolve", [:], nil),
        ("auth.success", [:], nil),
        ("vault.create", [:], nil),
        ("webhook.create", [:], nil),
        ("secret.write", ["version": .number(1), "outcome": "denied"], nil),
        ("secret.delete", ["outcome": "denied", "reason": "policy"], nil),
        ("share.access", ["outcome": "denied"], nil),
        ("policy.create", ["outcome": "failed"], nil),
    ] as [(String, [String: JSONValue], WebhookEvent?)])
    func auditEntriesMapToEvents(action: String, details: [String: JSONValue], expected: WebhookEvent?) {
        #expect(WebhookEvent(auditEntry: Self.entry(action, details)) == expected)
    }

    @Test func everyEventButTheTestIsSubscribableAndStarMeansAll() {
        #expect(WebhookEvent.subscribable.count == WebhookEvent.allCases.count)  // minus webhook.test, plus *
        #expect(WebhookEvent.subscribable.contains("*"))
        #expect(!WebhookEvent.subscribable.contains("webhook.test"))
    }

    /// `python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test-secret-0123456789",
    /// b"1767225600." + body, hashlib.sha256).hexdigest())'`
    @Test func signatureMatchesAnIndependentVector() {
        let body = Data(#"{"data":{"path":"db/password","version":2},"event":"secret.updated","id":"d"}"#.utf8)
        let header = WebhookSignature.header(secret: "whsec_test-secret-0123456789", timestamp: 1_767_225_600, body: body)
        #expect(header == "t=1767225600,v1=34e80456aaca40317b858c53280ec4bd4507ef565b44936d77e2e02163edbdaa")
        #expect(WebhookSignature.v1(secret: "another-secret-0123", timestamp: 1_767_225_600, body: body)
            != "34e80456aaca40317b858c53280ec4bd4507ef565b44936d77e2e02163edbdaa")
    }

    @Test(arguments: [
        ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("10.0.0.1", "private"), ("172.16.0.1", "private"),
        ("172.31.255.255", "private"), ("192.168.1.1", "private"), ("169.254.1.1", "link-local"),
        ("169.254.169.254", "metadata"), ("100.64.0.1", "CGNAT"), ("100.127.255.254", "CGNAT"),
        ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"), ("255.255.255.255", "broadcast"), ("::1", "loopback"),
        ("::", "unspecified"), ("fc00::1", "private"), ("fd12:3456::1", "private"), ("fd00:ec2::254", "metadata"),
        ("fe80::1", "link-local"), ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"), ("::127.0.0.1", "loopback"), ("64:ff9b::a9fe:a9fe", "NAT64"),
    ])
    func forbiddenAddressesAreRefused(address: String, kind: String) throws {
        let ip = try #require(IPAddress(address))
        let reason = try #require(WebhookDestination.refusal(ip))
        #expect(reason.contains(kind), "\(address): \(reason)")
    }

    @Test(arguments: [
        "8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "172.15.255.255", "100.63.255.255", "100.128.0.1",
        "169.253.255.255", "192.167.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8",
    ])
    func publicAddressesPass(address: String) throws {
        let ip = try #require(IPAddress(address))
        #expect(WebhookDestination.refusal(ip) == nil)
    }

    @Test func urlsAreHTTPSWithAPublicLiteralUnlessPrivateIsAllowed() throws {
        #expect(try WebhookDestination.validate("https://hooks.example.com/x?y=1", allowPrivate: false) != "")
        #expect(try WebhookDestination.validate("https://8.8.8.8/x", allowPrivate: false) != "")
        for url in [
            "http://hooks.example.com/x", "ftp://example.com/", "https://127.0.0.1/", "https://[::1]:8443/",
            "https://169.254.169.254/latest/meta-data", "https://10.0.0.5/", "https://localhost/", "https://a.localhost/",
            "https://user:pw@example.com/", "https:///nohost", "not a url", "",
            "https://example.com/" + String(repeating: "x", count: 2100),
        ] {
            #expect(throws: KeyholdError.self, "\(url)") { try WebhookDestination.validate(url, allowPrivate: false) }
        }
        // With the operator's flag: private and loopback destinations, and plain http to them, but not to a public one.
        #expect(try WebhookDestination.validate("http://127.0.0.5:9000/hook", allowPrivate: true) != "")
        #expect(try WebhookDestination.validate("https://[::1]/hook", allowPrivate: true) != "")
        #expect(try WebhookDestination.validate("http://receiver.internal/hook", allowPrivate: true) != "")
        #expect(throws: KeyholdError.self) { try WebhookDestination.validate("http://8.8.8.8/", allowPrivate: true) }
        #expect(throws: KeyholdError.self) { try WebhookDestination.validate("ftp://10.0.0.1/", allowPrivate: true) }
    }

    @Test func backoffDoublesFromOneSecondCappedAtAnHourWithJitter() {
        #expect((1...6).map { WebhookBackoff.delay(afterAttempt: $0, jitter: 0.5) } == [1000, 2000, 4000, 8000, 16000, 32000])
        #expect(WebhookBackoff.delay(afterAttempt: 12, jitter: 0.5) == 2_048_000)
        #expect(WebhookBackoff.delay(afterAttempt: 13, jitter: 0.5) == 3_600_000)
        #expect(WebhookBackoff.delay(afterAttempt: 500, jitter: 0.5) == 3_600_000)
        #expect(WebhookBackoff.delay(afterAttempt: 1, jitter: 0) == 750)
        #expect(WebhookBackoff.delay(afterAttempt: 1, jitter: 1) == 1250)
        #expect(WebhookBackoff.delay(afterAttempt: 20, jitter: 1) == 4_500_000)
        let first = Timestamp(milliseconds: 1_000_000)
        #expect(
            WebhookBackoff.next(afterAttempt: 3, firstAttempt: first, now: first.adding(seconds: 10), jitter: 0.5)
                == first.adding(seconds: 14))
        // The window is 24 hours from the first attempt: a retry that would fall after it is not scheduled.
        let late = first.adding(seconds: 24 * 3600 - 1800)
        #expect(WebhookBackoff.next(afterAttempt: 20, firstAttempt: first, now: late, jitter: 0.5) == nil)
        #expect(WebhookBackoff.next(afterAttempt: 20, firstAttempt: first, now: first.adding(seconds: 3600), jitter: 0.5) != nil)
    }

    @Test func payloadNamesIdsPathAndActorFromTheAuditEvent() throws {
        let entry = AuditEntry(
            orgID: UUID(), actorType: .agent, actorID: "agent-1", action: "secret.write", resourceType: "secret",
            resourceID: "db/password", details: ["vault_id": "v-1", "version": .number(2)], ipAddress: "10.0.0.1")
        let event = AuditChain(key: SymmetricKey(size: .bits256)).seal(entry, after: nil)
        let deliveryID = WebhookDelivery.id(eventID: event.id, webhookID: UUID())
        let body = WebhookPayload.body(deliveryID: deliveryID, event: "secret.updated", audit: event)
        let payload = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        #expect(payload["id"] as? String == deliveryID.wire)
        #expect(payload["event"] as? String == "secret.updated")
        #expect(payload["org_id"] as? String == entry.orgID.wire)
        #expect(payload["created_at"] as? String == event.createdAt.iso8601)
        let data = try #require(payload["data"] as? [String: Any])
        #expect(data["path"] as? String == "db/password")
        #expect(data["vault_id"] as? String == "v-1")
        #expect(data["version"] as? Double == 2)
        #expect(data["audit_event_id"] as? String == event.id.wire)
        #expect((data["actor"] as? [String: Any])?["id"] as? String == "agent-1")
        #expect(data["ip_address"] == nil)
    }

    @Test func deliveryIDsAreStablePerEventAndWebhook() {
        let (event, hook) = (UUID(), UUID())
        #expect(WebhookDelivery.id(eventID: event, webhookID: hook) == WebhookDelivery.id(eventID: event, webhookID: hook))
        #expect(WebhookDelivery.id(eventID: event, webhookID: hook) != WebhookDelivery.id(eventID: event, webhookID: UUID()))
        #expect(WebhookDelivery.id(eventID: event, webhookID: hook) != WebhookDelivery.id(eventID: UUID(), webhookID: hook))
    }

    @Test func secretsAreGeneratedAndSealedBoundToTheWebhook() throws {
        let secret = WebhookSecret.generate()
        #expect(secret.hasPrefix("whsec_") && secret.count == 6 + 43)
        #expect(WebhookSecret.generate() != secret)
        let key = SymmetricKey(size: .bits256)
        let id = UUID()
        let sealed = try WebhookSecret.seal(secret, webhookID: id, key: key)
        #expect(sealed.range(of: Data(secret.utf8)) == nil)
        #expect(try WebhookSecret.open(sealed, webhookID: id, key: key) == secret)
        #expect(throws: (any Error).self) { try WebhookSecret.open(sealed, webhookID: UUID(), key: key) }
    }
}

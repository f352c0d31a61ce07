import CoreMetrics
import Crypto
import Foundation
import Logging

/// Webhooks (contract §1.11): registration by an org's owners and admins (people with an unscoped credential; never
/// an agent), and the signed delivery of the events the outbox queued (`WebhookDispatcher`).
public final class WebhookService: Sendable {
    let store: any WebhookStore
    let audit: AuditLog
    let secretKey: SymmetricKey
    /// `--webhook-allow-private`: private, loopback and link-local destinations, and plain http to them.
    public let allowPrivate: Bool

    public static let maxDescription = 500
    public static let maxEvents = 32
    public static let secretLengths = 16...256
    public static let deliveriesShown = 100

    public init(store: any WebhookStore, audit: AuditLog, secretKey: SymmetricKey, allowPrivate: Bool) {
        self.store = store
        self.audit = audit
        self.secretKey = secretKey
        self.allowPrivate = allowPrivate
    }

    /// The server key the signing secrets are sealed under (created on first start, sealed by the keystore).
    public static func loadSecretKey(system: any SystemStore, keystore: any Keystore) async throws -> SymmetricKey {
        try await keystore.serverKey("webhook-secret-key", in: system)
    }

    public static let notFound = KeyholdError.notFound("Webhook not found")

    /// Creates a webhook; returns it with its signing secret (the caller's, or a generated `whsec_…`), shown once.
    public func create(
        url: String, events: [String], description: String?, secret: String?, by caller: Caller
    ) async throws -> (Webhook, String) {
        try await authorize(caller, "webhook.create", nil)
        let url = try WebhookDestination.validate(url, allowPrivate: allowPrivate)
        let events = try Self.normalize(events)
        let description = try Self.validate(description: description)
        if let secret {
            guard Self.secretLengths.contains(secret.count), !secret.contains(where: { $0.isNewline || $0 == "\0" }) else {
                throw KeyholdError.badRequest(
                    "secret must be \(Self.secretLengths.lowerBound) to \(Self.secretLengths.upperBound) characters")
            }
        }
        let signingSecret = secret ?? WebhookSecret.generate()
        let id = UUID()
        let now = Timestamp.now
        let webhook = Webhook(
            id: id, orgID: caller.principal.orgID, url: url, events: events, description: description, isActive: true,
            sealedSecret: try WebhookSecret.seal(signingSecret, webhookID: id, key: secretKey),
            createdBy: caller.principal.id, createdAt: now, updatedAt: now)
        try await store.createWebhook(
            webhook,
            audit: audit.record(
                caller, "webhook.create", "webhook", id.wire,
                ["host": .string(Self.host(of: url)), "events": .array(events.map(JSONValue.string)),
                 "secret_source": secret == nil ? "generated" : "caller"]))
        return (webhook, signingSecret)
    }

    public func list(by caller: Caller) async throws -> [Webhook] {
        try await authorize(caller, "webhook.list", nil)
        return try await store.webhooks(orgID: caller.principal.orgID)
    }

    public func get(_ id: UUID, by caller: Caller, action: String = "webhook.read") async throws -> Webhook {
        try await authorize(caller, action, id)
        guard let webhook = try await store.webhook(id: id, orgID: caller.principal.orgID) else { throw Self.notFound }
        return webhook
    }

    /// Changes the fields given; the rest stay.
    public func update(
        _ id: UUID, url: String?, events: [String]?, isActive: Bool?, description: String??, by caller: Caller
    ) async throws -> Webhook {
        var webhook = try await get(id, by: caller, action: "webhook.update")
        var changed: [String: JSONValue] = [:]
        if let url {
            webhook.url = try WebhookDestination.validate(url, allowPrivate: allowPrivate)
            changed["host"] = .string(Self.host(of: webhook.url))
        }
        if let events {
            webhook.events = try Self.normalize(events)
            changed["events"] = .array(webhook.events.map(JSONValue.string))
        }
        if let isActive {
            webhook.isActive = isActive
            changed["is_active"] = .bool(isActive)
        }
        if let description {
            webhook.description = try Self.validate(description: description)
            changed["description"] = true
        }
        webhook.updatedAt = .now
        guard try await store.updateWebhook(
            webhook, audit: audit.record(caller, "webhook.update", "webhook", id.wire, changed))
        else { throw Self.notFound }
        return webhook
    }

    public func delete(_ id: UUID, by caller: Caller) async throws {
        try await authorize(caller, "webhook.delete", id)
        guard try await store.deleteWebhook(
            id: id, orgID: caller.principal.orgID, audit: audit.record(caller, "webhook.delete", "webhook", id.wire))
        else { throw Self.notFound }
    }

    public func deliveries(_ id: UUID, by caller: Caller) async throws -> [WebhookDelivery] {
        let webhook = try await get(id, by: caller)
        return try await store.webhookDeliveries(webhookID: webhook.id, limit: Self.deliveriesShown)
    }

    /// Queues a `webhook.test` delivery to the webhook; returns its delivery id. 409 when the webhook is inactive.
    public func test(_ id: UUID, by caller: Caller) async throws -> UUID {
        let webhook = try await get(id, by: caller, action: "webhook.test")
        guard webhook.isActive else { throw KeyholdError(.conflict, "The webhook is not active; activate it first") }
        return try await store.queueWebhookTest(audit: audit.record(caller, "webhook.test", "webhook", id.wire))
    }

    /// People who own or administer the org, with an unscoped credential. A refusal is recorded.
    private func authorize(_ caller: Caller, _ action: String, _ id: UUID?) async throws {
        let principal = caller.principal
        let reason: String? =
            if principal.kind == .agent { "agents cannot manage webhooks" }
            else if principal.isScoped { "a scoped API key cannot manage webhooks" }
            else if !principal.isOrgAdmin { "only the org's owners and admins manage webhooks" }
            else { nil }
        guard let reason else { return }
        try await audit.append(
            audit.record(caller, action, "webhook", id?.wire, ["outcome": "denied", "reason": .string(reason)]))
        throw KeyholdError.forbidden("Only the org's owners and admins manage webhooks, with an unscoped credential")
    }

    /// Known names only, at least one; `*` alone when present; sorted, without duplicates.
    static func normalize(_ events: [String]) throws -> [String] {
        guard !events.isEmpty, events.count <= maxEvents else {
            throw KeyholdError.badRequest("events must list 1 to \(maxEvents) event names (or \"*\")")
        }
        for event in events where !WebhookEvent.subscribable.contains(event) {
            throw KeyholdError.badRequest(
                "Unknown event '\(event.prefix(64))'; known: " + WebhookEvent.subscribable.sorted().joined(separator: ", "))
        }
        return events.contains("*") ? ["*"] : Set(events).sorted()
    }

    /// The URL's host alone, for audit events: a receiver's path or query may hold a token of its own.
    static func host(of url: String) -> String { URLComponents(string: url)?.host ?? "" }

    static func validate(description: String?) throws -> String? {
        guard let description else { return nil }
        guard description.count <= maxDescription else {
            throw KeyholdError.badRequest("description must be at most \(maxDescription) characters")
        }
        return description
    }

    func openSecret(_ sealed: Data, webhookID: UUID) throws -> String {
        try WebhookSecret.open(sealed, webhookID: webhookID, key: secretKey)
    }
}

/// Sends one signed request. The implementation resolves the host, refuses destinations the SSRF guard forbids
/// (connecting to the address it checked), never follows redirects and gives up after `timeout`.
public protocol WebhookTransport: Sendable {
    func post(url: String, headers: [(String, String)], body: Data) async -> WebhookTransportResult
}

public struct WebhookTransportResult: Sendable {
    /// The response's status, when one came.
    public let statusCode: Int?
    /// Why the attempt did not deliver (a short, safe text), nil for a 2xx.
    public let error: String?

    public init(statusCode: Int?, error: String?) {
        self.statusCode = statusCode
        self.error = error
    }

    public var delivered: Bool { statusCode.map { (200...299).contains($0) } ?? false }
}

/// Sends what the outbox holds: claims due deliveries in batches (leased, so another node does not send them too),
/// sends each outside any transaction, records the outcome. Wakes when a transaction of this process queued
/// deliveries, and polls every `pollInterval` for those of other nodes and for retries.
public final class WebhookDispatcher: Sendable {
    let service: WebhookService
    let store: any WebhookStore
    let transport: any WebhookTransport
    let logger: Logger
    /// Fields a delivery adds to its payload's `data` as it is sent (the quick-decide links of an
    /// `approval.requested` event: derived tokens, never stored in the outbox).
    let extras: @Sendable (_ event: String, _ audit: AuditEvent) -> [String: JSONValue]
    public static let batchSize = 16
    public static let pollInterval = Duration.seconds(1)
    /// Longer than a request's timeout: a node that dies mid-send leaves its claims to others after this.
    public static let lease: Int64 = 60
    /// Delivered and failed deliveries are kept this long (for the deliveries list), then purged, once an hour.
    public static let retention: Int64 = 7 * 24 * 3600
    static let purgeEvery: Int64 = 3600

    public init(
        service: WebhookService, store: any WebhookStore, transport: any WebhookTransport, logger: Logger,
        extras: @escaping @Sendable (_ event: String, _ audit: AuditEvent) -> [String: JSONValue] = { _, _ in [:] }
    ) {
        self.extras = extras
        self.service = service
        self.store = store
        self.transport = transport
        self.logger = logger
    }

    /// Runs until the task is cancelled.
    public func run() async {
        var purged = Timestamp(milliseconds: 0)
        while !Task.isCancelled {
            if Timestamp.now.seconds - purged.seconds >= Self.purgeEvery {
                purged = .now
                do {
                    _ = try await store.purgeWebhookDeliveries(before: purged.adding(seconds: -Self.retention))
                } catch {
                    logger.error("Old webhook deliveries could not be purged", metadata: ["error": "\(error)"])
                }
            }
            let sent = await dispatchOnce()
            if sent < Self.batchSize { await store.webhookWakeup.wait(timeout: Self.pollInterval) }
        }
    }

    /// One batch: returns how many deliveries were claimed.
    @discardableResult
    public func dispatchOnce() async -> Int {
        let now = Timestamp.now
        let claimed: [ClaimedWebhookDelivery]
        do {
            claimed = try await store.claimWebhookDeliveries(
                now: now, leaseUntil: now.adding(seconds: Self.lease), limit: Self.batchSize)
        } catch {
            logger.error("Webhook deliveries could not be claimed", metadata: ["error": "\(error)"])
            return 0
        }
        await withTaskGroup(of: Void.self) { group in
            for delivery in claimed { group.addTask { await self.send(delivery) } }
        }
        return claimed.count
    }

    func send(_ claimed: ClaimedWebhookDelivery) async {
        let delivery = claimed.delivery
        let result: WebhookTransportResult
        do {
            let secret = try service.openSecret(claimed.sealedSecret, webhookID: delivery.webhookID)
            let body = WebhookPayload.body(
                deliveryID: delivery.id, event: delivery.event, audit: claimed.audit,
                extra: extras(delivery.event, claimed.audit))
            let timestamp = Timestamp.now.seconds
            result = await transport.post(
                url: claimed.url,
                headers: [
                    ("Content-Type", "application/json"), ("User-Agent", "Keyhold-Webhooks/1"),
                    ("Keyhold-Event", delivery.event), ("Keyhold-Delivery", delivery.id.wire),
                    ("Keyhold-Signature", WebhookSignature.header(secret: secret, timestamp: timestamp, body: body)),
                ],
                body: body)
        } catch {
            result = WebhookTransportResult(statusCode: nil, error: "the webhook's secret cannot be opened")
        }
        let at = Timestamp.now
        Counter(label: "keyhold_webhook_deliveries_total", dimensions: [("outcome", result.delivered ? "delivered" : "failed")])
            .increment()
        let outcome = WebhookAttemptOutcome(
            webhookID: delivery.webhookID, eventID: delivery.eventID, delivered: result.delivered,
            statusCode: result.statusCode, error: result.delivered ? nil : (result.error ?? "HTTP \(result.statusCode ?? 0)"),
            at: at,
            nextAttemptAt: result.delivered
                ? nil : WebhookBackoff.next(afterAttempt: delivery.attempts, firstAttempt: claimed.firstAttemptAt, now: at))
        let deactivation = AuditRecord(
            AuditEntry(
                orgID: claimed.orgID, actorType: .system, actorID: nil, action: "webhook.deactivate",
                resourceType: "webhook", resourceID: delivery.webhookID.wire,
                details: ["reason": "no successful delivery for 24 hours", "last_error": .string(outcome.error ?? "")],
                ipAddress: nil),
            chain: service.audit.chain)
        do {
            if try await store.recordWebhookAttempt(outcome, deactivation: deactivation) {
                logger.warning("A webhook was deactivated after failing for 24 hours", metadata: ["webhook_id": "\(delivery.webhookID.wire)"])
            }
        } catch {
            logger.error("A webhook attempt could not be recorded", metadata: ["error": "\(error)"])
        }
    }
}

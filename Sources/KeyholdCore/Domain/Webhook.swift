import Crypto
import Foundation

/// The events a webhook can subscribe to (contract §1.11 names none; these are Keyhold's). Each comes from an audit
/// action the services already record, so an event exists exactly when its change committed.
public enum WebhookEvent: String, Sendable, Hashable, CaseIterable {
    case secretCreated = "secret.created"
    case secretUpdated = "secret.updated"
    case secretDeleted = "secret.deleted"
    case secretRotated = "secret.rotated"
    case secretVersionDisabled = "secret.version_disabled"
    case shareCreated = "share.created"
    case shareAccessed = "share.accessed"
    case agentCreated = "agent.created"
    case agentKeyRotated = "agent.key_rotated"
    case policyChanged = "policy.changed"
    case approvalRequested = "approval.requested"
    case approvalDecided = "approval.decided"
    case auditVerifyFailed = "audit.verify_failed"
    /// `POST /v1/webhooks/{id}/test`: delivered to that webhook only, whatever it subscribes to.
    case test = "webhook.test"

    /// Every name a webhook may subscribe to: the events, and `*` for all of them.
    public static let subscribable: Set<String> = Set(allCases.filter { $0 != .test }.map(\.rawValue)).union(["*"])

    /// The event an audit entry stands for, or nil when it stands for none (reads, lists, refusals, failures, and
    /// every action that is not a change others subscribe to). A secret write is `secret.created` at version 1 and
    /// `secret.updated` after. Pure: the outbox calls it inside the transaction that appends the entry.
    public init?(auditEntry entry: AuditEntry) {
        // A refused or failed attempt is recorded under the action it attempted, with an outcome; a change is not.
        if let outcome = entry.details["outcome"], outcome != .string("completed") { return nil }
        switch entry.action {
        case "secret.write":
            guard case .number(let version)? = entry.details["version"] else { return nil }
            self = version == 1 ? .secretCreated : .secretUpdated
        case "secret.delete": self = .secretDeleted
        case "secret.rotate":
            guard entry.details["version"] != nil else { return nil }
            self = .secretRotated
        case "secret.version_disable": self = .secretVersionDisabled
        case "share.create": self = .shareCreated
        case "share.access": self = .shareAccessed
        case "agent.register": self = .agentCreated
        case "agent.rotate_key": self = .agentKeyRotated
        case "policy.create", "policy.update", "policy.delete": self = .policyChanged
        case "approval.request": self = .approvalRequested
        // Cancelling a pending request and ending an approved lease early are decisions too (status `cancelled`).
        case "approval.decide", "approval.cancel", "approval.revoke": self = .approvalDecided
        case "audit.verify_failed": self = .auditVerifyFailed
        case "webhook.test": self = .test
        default: return nil
        }
    }
}

extension WebhookEvent {
    /// The org whose webhooks receive an entry's event when it is not the entry's own: `audit.verify_failed` is
    /// recorded in the server's chain (`AuditEntry.systemOrg`) and names the org whose chain broke.
    public func subscriberOrg(of entry: AuditEntry) -> UUID? {
        guard self == .auditVerifyFailed, entry.orgID == AuditEntry.systemOrg,
            case .string(let org)? = entry.details["org_id"]
        else { return nil }
        return UUID(uuidString: org)
    }
}

/// A registered webhook. `sealedSecret` is the signing secret sealed under the server's webhook key, bound to the
/// webhook's id (`WebhookSecret`); the database never holds it in clear.
public struct Webhook: Sendable, Hashable {
    public let id: UUID
    public let orgID: UUID
    public var url: String
    /// Sorted, without duplicates; `["*"]` alone when it subscribes to everything.
    public var events: [String]
    public var description: String?
    public var isActive: Bool
    public let sealedSecret: Data
    public let createdBy: UUID
    public let createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        id: UUID, orgID: UUID, url: String, events: [String], description: String?, isActive: Bool,
        sealedSecret: Data, createdBy: UUID, createdAt: Timestamp, updatedAt: Timestamp
    ) {
        self.id = id
        self.orgID = orgID
        self.url = url
        self.events = events
        self.description = description
        self.isActive = isActive
        self.sealedSecret = sealedSecret
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

public enum WebhookDeliveryStatus: String, Sendable, Hashable {
    case pending, delivered, failed
}

/// One event for one webhook: a row of the outbox, written in the transaction of the change.
public struct WebhookDelivery: Sendable, Hashable {
    public let webhookID: UUID
    /// The audit event the delivery reports.
    public let eventID: UUID
    public let event: String
    public let status: WebhookDeliveryStatus
    public let attempts: Int
    public let lastStatusCode: Int?
    public let lastError: String?
    public let createdAt: Timestamp
    public let deliveredAt: Timestamp?
    public let nextAttemptAt: Timestamp?

    public init(
        webhookID: UUID, eventID: UUID, event: String, status: WebhookDeliveryStatus, attempts: Int,
        lastStatusCode: Int?, lastError: String?, createdAt: Timestamp, deliveredAt: Timestamp?,
        nextAttemptAt: Timestamp?
    ) {
        self.webhookID = webhookID
        self.eventID = eventID
        self.event = event
        self.status = status
        self.attempts = attempts
        self.lastStatusCode = lastStatusCode
        self.lastError = lastError
        self.createdAt = createdAt
        self.deliveredAt = deliveredAt
        self.nextAttemptAt = nextAttemptAt
    }

    /// The delivery's id (`Keyhold-Delivery`, the payload's `id`): derived from the event and the webhook, so it is
    /// the same on every attempt and on every node, and the outbox insert needs no id from the caller.
    public var id: UUID { Self.id(eventID: eventID, webhookID: webhookID) }

    public static func id(eventID: UUID, webhookID: UUID) -> UUID {
        var bytes = Array(SHA256.hash(data: Data(("keyhold.webhook.delivery|" + eventID.wire + "|" + webhookID.wire).utf8)))
        bytes[6] = bytes[6] & 0x0F | 0x80  // version 8 (custom)
        bytes[8] = bytes[8] & 0x3F | 0x80  // RFC 4122 variant
        return UUID(uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
            bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}

/// A delivery claimed for sending, with what sending it needs: the webhook's URL and sealed secret, and the audit
/// event the payload is built from.
public struct ClaimedWebhookDelivery: Sendable {
    public let delivery: WebhookDelivery
    public let orgID: UUID
    public let url: String
    public let sealedSecret: Data
    public let firstAttemptAt: Timestamp
    public let audit: AuditEvent

    public init(
        delivery: WebhookDelivery, orgID: UUID, url: String, sealedSecret: Data, firstAttemptAt: Timestamp,
        audit: AuditEvent
    ) {
        self.delivery = delivery
        self.orgID = orgID
        self.url = url
        self.sealedSecret = sealedSecret
        self.firstAttemptAt = firstAttemptAt
        self.audit = audit
    }
}

/// What one attempt came to, as the outbox records it.
public struct WebhookAttemptOutcome: Sendable {
    public let webhookID: UUID
    public let eventID: UUID
    /// Delivered (a 2xx), or not.
    public let delivered: Bool
    public let statusCode: Int?
    /// A short, safe text (never a response body).
    public let error: String?
    public let at: Timestamp
    /// The next attempt, or nil when the delivery has failed for good (its retry window is over).
    public let nextAttemptAt: Timestamp?

    public init(
        webhookID: UUID, eventID: UUID, delivered: Bool, statusCode: Int?, error: String?, at: Timestamp,
        nextAttemptAt: Timestamp?
    ) {
        self.webhookID = webhookID
        self.eventID = eventID
        self.delivered = delivered
        self.statusCode = statusCode
        self.error = error
        self.at = at
        self.nextAttemptAt = nextAttemptAt
    }
}

/// The signing secret: the caller's (16–256 characters), or `whsec_` and 32 random bytes in base64url. Stored
/// sealed (AES-256-GCM) under the server's webhook key, with the webhook's id as associated data.
public enum WebhookSecret {
    public static func generate() -> String {
        "whsec_" + Data(KeyMaterial.bytes(of: KeyMaterial.randomKey())).base64URLEncodedString()
    }

    public static func seal(_ secret: String, webhookID: UUID, key: SymmetricKey) throws -> Data {
        try KeyMaterial.seal(Data(secret.utf8), key: key, label: label(webhookID))
    }

    public static func open(_ sealed: Data, webhookID: UUID, key: SymmetricKey) throws -> String {
        String(decoding: try KeyMaterial.open(sealed, key: key, label: label(webhookID)), as: UTF8.self)
    }

    static func label(_ id: UUID) -> String { "keyhold.webhook-secret|" + id.wire }
}

/// `Keyhold-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<raw body>">`.
public enum WebhookSignature {
    public static func header(secret: String, timestamp: Int64, body: Data) -> String {
        "t=\(timestamp),v1=" + v1(secret: secret, timestamp: timestamp, body: body)
    }

    public static func v1(secret: String, timestamp: Int64, body: Data) -> String {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: Data(secret.utf8)))
        mac.update(data: Data("\(timestamp).".utf8))
        mac.update(data: body)
        return Data(mac.finalize()).hexString
    }
}

/// Retries: 1 s, 2 s, 4 s … doubling, capped at an hour, each stretched by a jitter of ±25 %, for 24 hours from the
/// first attempt; then the delivery is failed.
public enum WebhookBackoff {
    public static let cap: Int64 = 3600
    public static let window: Int64 = 24 * 3600
    /// A webhook with no success for this long while failing is deactivated.
    public static let deactivateAfter: Int64 = 24 * 3600

    /// The delay in milliseconds after the `attempts`-th failed attempt; `jitter` in 0...1 (0.5: none).
    public static func delay(afterAttempt attempts: Int, jitter: Double) -> Int64 {
        let exponent = min(max(attempts - 1, 0), 20)
        let base = min(Int64(1) << exponent, cap) * 1000
        return Int64((Double(base) * (0.75 + 0.5 * min(max(jitter, 0), 1))).rounded())
    }

    /// The next attempt after a failure at `now`, or nil when the window from `firstAttempt` is over.
    public static func next(
        afterAttempt attempts: Int, firstAttempt: Timestamp, now: Timestamp, jitter: Double = Double.random(in: 0...1)
    ) -> Timestamp? {
        let next = Timestamp(milliseconds: now.milliseconds + delay(afterAttempt: attempts, jitter: jitter))
        return next.milliseconds - firstAttempt.milliseconds > window * 1000 ? nil : next
    }
}

/// The payload: `{id, event, created_at, org_id, data}`, built from the audit event (which never holds a value, key
/// or token): its ids, path, version and actor.
public enum WebhookPayload {
    public static func body(deliveryID: UUID, event: String, audit: AuditEvent, extra: [String: JSONValue] = [:]) -> Data {
        let entry = audit.entry
        var data = entry.details.merging(extra) { _, added in added }
        data["audit_event_id"] = .string(audit.id.wire)
        data["resource_type"] = .string(entry.resourceType)
        if let resource = entry.resourceID {
            data["resource_id"] = .string(resource)
            if entry.resourceType == "secret" { data["path"] = .string(resource) }
        }
        data["actor"] = .object([
            "type": .string(entry.actorType.rawValue), "id": entry.actorID.map(JSONValue.string) ?? .null,
        ])
        let payload: JSONValue = .object([
            "id": .string(deliveryID.wire), "event": .string(event), "created_at": .string(audit.createdAt.iso8601),
            "org_id": .string((WebhookEvent(rawValue: event)?.subscriberOrg(of: entry) ?? entry.orgID).wire),
            "data": .object(data),
        ])
        return Data(payload.jsonString().utf8)
    }
}

/// Where a webhook may send (SSRF guard): https only, and no destination that resolves to a loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast or metadata address, unless the operator allows private
/// destinations (`--webhook-allow-private`), which also allows plain `http://` to them.
public enum WebhookDestination {
    public static let maxURLLength = 2048

    /// Networks a webhook must not reach without the operator's flag, each with a name for `last_error`.
    static let forbidden: [(CIDR, String)] = [
        ("0.0.0.0/8", "unspecified"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"), ("192.168.0.0/16", "private"), ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"), ("255.255.255.255/32", "broadcast"), ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"), ("::1/128", "loopback"), ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"), ("ff00::/8", "multicast"), ("64:ff9b::/96", "NAT64"),
        ("2001:db8::/32", "documentation"),
    ].map { (CIDR($0.0)!, $0.1) }
    static let metadata: [IPAddress] = [IPAddress("169.254.169.254")!, IPAddress("fd00:ec2::254")!]

    /// Why `address` is not a public destination, or nil when it is one.
    public static func refusal(_ address: IPAddress) -> String? {
        if metadata.contains(address) { return "a cloud metadata address" }
        if let (_, name) = forbidden.first(where: { $0.0.contains(address) }) { return "a \(name) address" }
        // An IPv6 address that embeds an IPv4 one (IPv4-compatible ::a.b.c.d) is judged by the IPv4 address too.
        if !address.isIPv4, address.bytes[0..<12].allSatisfy({ $0 == 0 }),
            let embedded = IPAddress(bytes: address.bytes[12...])
        {
            return refusal(embedded)
        }
        return nil
    }

    /// A URL as given to create or PATCH: https (or http with `allowPrivate`), a host, no credentials, and a
    /// literal IP address that is public unless `allowPrivate`. Returns the URL; throws 400 with the reason.
    public static func validate(_ text: String, allowPrivate: Bool) throws -> String {
        guard !text.isEmpty, text.utf8.count <= maxURLLength else {
            throw KeyholdError.badRequest("url must be an https URL of at most \(maxURLLength) bytes")
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else { throw KeyholdError.badRequest("url must be an absolute https URL") }
        guard components.user == nil, components.password == nil else {
            throw KeyholdError.badRequest("url must not carry credentials")
        }
        switch scheme {
        case "https": break
        case "http" where allowPrivate: break
        default:
            throw KeyholdError.badRequest(
                allowPrivate ? "url must be https (or http to a private address)" : "url must be https")
        }
        if let address = literalAddress(host) {
            if let reason = refusal(address), !allowPrivate {
                throw KeyholdError.badRequest("url must not point to \(reason)")
            }
            if scheme == "http", refusal(address) == nil {
                throw KeyholdError.badRequest("plain http is allowed only to private addresses; use https")
            }
        } else if host.lowercased() == "localhost" || host.lowercased().hasSuffix(".localhost"), !allowPrivate {
            throw KeyholdError.badRequest("url must not point to a loopback address")
        }
        return text
    }

    /// The host as an IP address when it is one (`[::1]` or `127.0.0.1`).
    public static func literalAddress(_ host: String) -> IPAddress? {
        var host = Substring(host)
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return IPAddress(host)
    }
}

import Foundation
import KeyholdCore

// MARK: webhooks and their outbox

extension SQLStore {
    public func createWebhook(_ webhook: Webhook, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            try await db.query(
                """
                INSERT INTO webhooks (id, org_id, url, events, description, is_active, secret, created_by, created_at,
                    updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(webhook.id), .uuid(webhook.orgID), .text(webhook.url), .text(StoredJSON.encode(webhook.events)),
                    .optional(webhook.description), .boolean(webhook.isActive), .bytes(webhook.sealedSecret),
                    .uuid(webhook.createdBy), .time(webhook.createdAt), .time(webhook.updatedAt),
                ])
            try await db.saveWebhookEvents(webhook)
            try await db.append(audit)
        }
    }

    public func webhook(id: UUID, orgID: UUID) async throws -> Webhook? {
        try await database.reading {
            try await $0.first("SELECT * FROM webhooks WHERE id = ? AND org_id = ?", [.uuid(id), .uuid(orgID)])
                .map(StoredRecords.webhook)
        }
    }

    public func webhooks(orgID: UUID) async throws -> [Webhook] {
        try await database.reading {
            try await $0.query("SELECT * FROM webhooks WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
                .map(StoredRecords.webhook)
        }
    }

    public func updateWebhook(_ webhook: Webhook, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            // Reactivating starts its failure clock again.
            guard try await db.first(
                """
                UPDATE webhooks SET url = ?, events = ?, description = ?, is_active = ?, updated_at = ?,
                    failing_since = CASE WHEN ? THEN failing_since ELSE NULL END
                WHERE id = ? AND org_id = ? RETURNING id
                """,
                [
                    .text(webhook.url), .text(StoredJSON.encode(webhook.events)), .optional(webhook.description),
                    .boolean(webhook.isActive), .time(webhook.updatedAt), .boolean(!webhook.isActive), .uuid(webhook.id),
                    .uuid(webhook.orgID),
                ]) != nil
            else { return false }
            try await db.query("DELETE FROM webhook_events WHERE webhook_id = ?", [.uuid(webhook.id)])
            try await db.saveWebhookEvents(webhook)
            try await db.append(audit)
            return true
        }
    }

    public func deleteWebhook(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("SELECT id FROM webhooks WHERE id = ? AND org_id = ?" + db.forUpdate, [.uuid(id), .uuid(orgID)])
                != nil
            else { return false }
            try await db.query("DELETE FROM webhook_deliveries WHERE webhook_id = ?", [.uuid(id)])
            try await db.query("DELETE FROM webhook_events WHERE webhook_id = ?", [.uuid(id)])
            try await db.query("DELETE FROM webhooks WHERE id = ?", [.uuid(id)])
            try await db.append(audit)
            return true
        }
    }

    public func queueWebhookTest(audit: AuditRecord) async throws -> UUID {
        guard let webhookID = audit.entry.resourceID.flatMap(UUID.init(uuidString:)) else {
            throw KeyholdError.notFound("Webhook not found")
        }
        let eventID = try await database.inTransaction { try await $0.append(audit) }
        return WebhookDelivery.id(eventID: eventID, webhookID: webhookID)
    }

    public func webhookDeliveries(webhookID: UUID, limit: Int) async throws -> [WebhookDelivery] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, event_id DESC LIMIT ?",
                [.uuid(webhookID), .int(limit)]
            ).map(StoredRecords.webhookDelivery)
        }
    }

    public func claimWebhookDeliveries(now: Timestamp, leaseUntil: Timestamp, limit: Int) async throws
        -> [ClaimedWebhookDelivery]
    {
        try await database.inTransaction { db in
            let rows = try await db.query(
                """
                SELECT d.webhook_id, d.event_id, d.event, d.status, d.attempts, d.last_status_code, d.last_error,
                    d.created_at, d.delivered_at, d.next_attempt_at, d.first_attempt_at, w.org_id AS webhook_org,
                    w.url, w.secret, a.id, a.org_id, a.seq, a.actor_type, a.actor_id, a.action, a.resource_type,
                    a.resource_id, a.details, a.ip_address, a.created_at AS event_created_at, a.prev_event_id,
                    a.integrity_hash
                FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN audit_events a ON a.id = d.event_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND (d.locked_until IS NULL OR d.locked_until <= ?1)
                    AND w.is_active = ?2
                ORDER BY d.next_attempt_at LIMIT ?3
                """ + db.forUpdateSkipLocked(of: "d"), [.time(now), .boolean(true), .int(limit)])
            var claimed: [ClaimedWebhookDelivery] = []
            for row in rows {
                let fields = StoredFields(row, table: "webhook_deliveries")
                let delivery = try StoredRecords.webhookDelivery(row)
                let firstAttempt = try fields.optionalTimestamp("first_attempt_at") ?? now
                try await db.query(
                    """
                    UPDATE webhook_deliveries SET locked_until = ?, attempts = attempts + 1, first_attempt_at = ?
                    WHERE webhook_id = ? AND event_id = ?
                    """,
                    [.time(leaseUntil), .time(firstAttempt), .uuid(delivery.webhookID), .uuid(delivery.eventID)])
                let webhook = StoredFields(row, table: "webhooks")
                claimed.append(
                    ClaimedWebhookDelivery(
                        delivery: WebhookDelivery(
                            webhookID: delivery.webhookID, eventID: delivery.eventID, event: delivery.event,
                            status: delivery.status, attempts: delivery.attempts + 1,
                            lastStatusCode: delivery.lastStatusCode, lastError: delivery.lastError,
                            createdAt: delivery.createdAt, deliveredAt: nil, nextAttemptAt: delivery.nextAttemptAt),
                        orgID: try webhook.uuid("webhook_org"), url: try webhook.text("url"),
                        sealedSecret: try webhook.bytes("secret"), firstAttemptAt: firstAttempt,
                        audit: try StoredRecords.auditEvent(row, createdAtColumn: "event_created_at")))
            }
            return claimed
        }
    }

    public func recordWebhookAttempt(_ outcome: WebhookAttemptOutcome, deactivation: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            let key: [SQLValue] = [.uuid(outcome.webhookID), .uuid(outcome.eventID)]
            let error: SQLValue = .optional(outcome.error.map { String($0.prefix(300)) })
            if outcome.delivered {
                try await db.query(
                    """
                    UPDATE webhook_deliveries SET status = 'delivered', delivered_at = ?, last_status_code = ?,
                        last_error = NULL, locked_until = NULL WHERE webhook_id = ? AND event_id = ?
                    """, [.time(outcome.at), .optional(outcome.statusCode)] + key)
                try await db.query(
                    "UPDATE webhooks SET last_success_at = ?, failing_since = NULL WHERE id = ?",
                    [.time(outcome.at), .uuid(outcome.webhookID)])
                return false
            }
            try await db.query(
                """
                UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, last_status_code = ?, last_error = ?,
                    locked_until = NULL WHERE webhook_id = ? AND event_id = ?
                """,
                [
                    .text((outcome.nextAttemptAt == nil ? WebhookDeliveryStatus.failed : .pending).rawValue),
                    .time(outcome.nextAttemptAt ?? outcome.at), .optional(outcome.statusCode), error,
                ] + key)
            try await db.query(
                "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
                [.time(outcome.at), .uuid(outcome.webhookID)])
            // Failing with no success for a day: deactivated (the failure clock restarts when it is reactivated).
            let deadline = outcome.at.adding(seconds: -WebhookBackoff.deactivateAfter)
            guard try await db.first(
                """
                UPDATE webhooks SET is_active = ?, failing_since = NULL
                WHERE id = ? AND is_active = ? AND failing_since <= ? AND (last_success_at IS NULL OR last_success_at <= ?)
                RETURNING id
                """,
                [.boolean(false), .uuid(outcome.webhookID), .boolean(true), .time(deadline), .time(deadline)]) != nil
            else { return false }
            try await db.append(deactivation)
            return true
        }
    }
}

extension SQLStore {
    public func purgeWebhookDeliveries(before: Timestamp) async throws -> Int {
        try await database.inTransaction {
            try await $0.query(
                "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ? RETURNING event_id",
                [.time(before)]
            ).count
        }
    }
}

extension SQLConnection {
    /// The webhook's subscriptions, one row per event (`*` alone when it has it).
    func saveWebhookEvents(_ webhook: Webhook) async throws {
        for event in webhook.events {
            try await query(
                "INSERT INTO webhook_events (org_id, event, webhook_id) VALUES (?, ?, ?)",
                [.uuid(webhook.orgID), .text(event), .uuid(webhook.id)])
        }
    }
}

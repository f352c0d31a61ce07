import Foundation
import KeyholdCore

extension SQLConnection {
    /// Appends a record to its org's chain inside the caller's transaction. Any failure becomes a 503 and, since it
    /// is thrown inside the transaction, rolls back the change it was recording.
    @discardableResult
    public func append(_ record: AuditRecord) async throws -> UUID {
        do {
            let orgID = record.entry.orgID
            let event = record.chain.seal(record.entry, after: try await lockAuditHead(orgID: orgID))
            let entry = event.entry
            try await appendAuditEvent(
                """
                INSERT INTO audit_events (id, org_id, seq, actor_type, actor_id, action, resource_type, resource_id,
                    details, ip_address, created_at, prev_event_id, integrity_hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(event.id), .uuid(orgID), .integer(event.sequence), .text(entry.actorType.rawValue),
                    .optional(entry.actorID), .text(entry.action), .text(entry.resourceType),
                    .optional(entry.resourceID), .text(entry.detailsJSON), .optional(entry.ipAddress),
                    .time(event.createdAt), .optional(event.previousID), .text(event.integrityHash),
                ], orgID: orgID, head: AuditHead(eventID: event.id, sequence: event.sequence, hash: event.integrityHash))
            if let webhookEvent = WebhookEvent(auditEntry: entry) { try await queueDeliveries(of: event, as: webhookEvent) }
            return event.id
        } catch {
            throw KeyholdError.auditUnavailable
        }
    }
}

extension SQLConnection {
    /// The outbox: one delivery for each active webhook of the event's org subscribed to it (or to `*`), in one
    /// statement (an org without webhooks costs one index probe). A test event goes to its webhook only.
    func queueDeliveries(of event: AuditEvent, as webhookEvent: WebhookEvent) async throws {
        let entry = event.entry
        let queued: [StoredRow]
        let values: [SQLValue] = [.uuid(event.id), .text(webhookEvent.rawValue), .time(event.createdAt)]
        if webhookEvent == .test {
            guard let webhookID = entry.resourceID.flatMap(UUID.init(uuidString:)) else { return }
            queued = try await query(
                """
                INSERT INTO webhook_deliveries (webhook_id, org_id, event_id, event, status, attempts, next_attempt_at,
                    created_at)
                SELECT id, org_id, ?1, ?2, 'pending', 0, ?3, ?3 FROM webhooks WHERE id = ?4 AND org_id = ?5
                RETURNING webhook_id
                """,
                values + [.uuid(webhookID), .uuid(entry.orgID)])
        } else {
            queued = try await query(
                """
                INSERT INTO webhook_deliveries (webhook_id, org_id, event_id, event, status, attempts, next_attempt_at,
                    created_at)
                SELECT e.webhook_id, e.org_id, ?1, ?2, 'pending', 0, ?3, ?3
                FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id
                WHERE e.org_id = ?4 AND e.event IN (?2, '*') AND w.is_active = ?5
                RETURNING webhook_id
                """, values + [.uuid(webhookEvent.subscriberOrg(of: entry) ?? entry.orgID), .boolean(true)])
        }
        if !queued.isEmpty { queuedWebhookDeliveries() }
    }
}

extension SQLStore {
    public func appendAudit(_ record: AuditRecord) async throws {
        try await database.inTransaction { try await $0.append(record) }
    }

    public func auditEvents(orgID: UUID, filter: AuditFilter) async throws -> [AuditEvent] {
        // No stored event holds a NUL character (PostgreSQL text cannot), so a filter with one matches nothing.
        if [filter.action, filter.actorID, filter.resourceID].contains(where: { $0?.utf8.contains(0) == true }) {
            return []
        }
        var sql = "SELECT * FROM audit_events WHERE org_id = ?"
        var binds: [SQLValue] = [.uuid(orgID)]
        func condition(_ clause: String, _ value: SQLValue) {
            sql += " AND \(clause) ?"
            binds.append(value)
        }
        if let action = filter.action { condition("action =", .text(action)) }
        if let actorID = filter.actorID { condition("actor_id =", .text(actorID)) }
        if let resourceID = filter.resourceID { condition("resource_id =", .text(resourceID)) }
        if let from = filter.from { condition("created_at >=", .time(from)) }
        if let to = filter.to { condition("created_at <=", .time(to)) }
        sql += " ORDER BY seq DESC LIMIT ? OFFSET ?"
        binds += [.int(filter.limit), .int(filter.offset)]
        let (statement, values) = (sql, binds)
        return try await database.reading { try await $0.query(statement, values).map(StoredRecords.auditEvent) }
    }

    public func auditChain(orgID: UUID, afterSequence: Int64, limit: Int) async throws -> [AuditEvent] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM audit_events WHERE org_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                [.uuid(orgID), .integer(afterSequence), .int(limit)]
            ).map(StoredRecords.auditEvent)
        }
    }

    public func auditHead(orgID: UUID) async throws -> AuditHead? {
        try await database.reading {
            // PostgreSQL keeps a placeholder head (seq 0, no event) for an org without events, to have a row to lock.
            try await $0.first(
                "SELECT * FROM audit_heads WHERE org_id = ? AND seq > 0 AND event_id IS NOT NULL", [.uuid(orgID)]
            ).map(StoredRecords.auditHead)
        }
    }
}

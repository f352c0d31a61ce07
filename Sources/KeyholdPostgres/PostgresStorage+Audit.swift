import Foundation
import KeyholdCore
import PostgresNIO

extension PostgresStorage {
    /// Appends a record to its org's chain inside the caller's transaction, as its last statement. The org's head
    /// row is locked (created first if the org has none yet), so appends from every node form one linear chain.
    /// Any failure becomes a 503 and, since it is thrown inside the transaction, rolls back the change it was
    /// recording.
    static func append(_ db: DB, _ record: AuditRecord) async throws {
        do {
            let orgID = record.entry.orgID
            // A head with seq 0 stands for "no events yet"; it exists only so that there is a row to lock.
            try await db.execute(
                "INSERT INTO audit_heads (org_id, event_id, seq, hash) VALUES (\(orgID), NULL, 0, '') ON CONFLICT (org_id) DO NOTHING")
            guard let row = try await db.query(
                "SELECT event_id, seq, hash FROM audit_heads WHERE org_id = \(orgID) FOR UPDATE"
            ).first else { throw StorageError.backend("audit head vanished") }
            let head: AuditHead? =
                if try row.int("seq") > 0, let eventID = try row.optionalUUID("event_id") {
                    AuditHead(eventID: eventID, sequence: try row.int("seq"), hash: try row.text("hash"))
                } else {
                    nil
                }
            let event = record.chain.seal(record.entry, after: head)
            let entry = event.entry
            try await db.execute(
                """
                INSERT INTO audit_events (id, org_id, seq, actor_type, actor_id, action, resource_type, resource_id,
                    details, ip_address, created_at, prev_event_id, integrity_hash)
                VALUES (\(event.id), \(orgID), \(event.sequence), \(entry.actorType.rawValue), \(entry.actorID),
                    \(entry.action), \(entry.resourceType), \(entry.resourceID),
                    \(entry.detailsJSON), \(entry.ipAddress),
                    \(event.createdAt.milliseconds), \(event.previousID), \(event.integrityHash))
                """)
            try await db.execute(
                """
                UPDATE audit_heads SET event_id = \(event.id), seq = \(event.sequence), hash = \(event.integrityHash)
                WHERE org_id = \(orgID)
                """)
        } catch {
            throw KeyholdError.auditUnavailable
        }
    }

    public func appendAudit(_ record: AuditRecord) async throws {
        try await transaction { db in try await Self.append(db, record) }
    }

    public func auditEvents(orgID: UUID, filter: AuditFilter) async throws -> [AuditEvent] {
        // PostgreSQL text cannot hold NUL, so no stored event matches a filter with one.
        if [filter.action, filter.actorID, filter.resourceID].contains(where: { $0?.unicodeScalars.contains("\u{0}") == true }) {
            return []
        }
        var sql = "SELECT * FROM audit_events WHERE org_id = $1"
        var binds = PostgresBindings()
        binds.append(orgID)
        func condition(_ clause: String, _ value: some PostgresNonThrowingEncodable) {
            binds.append(value)
            sql += " AND \(clause) $\(binds.count)"
        }
        if let action = filter.action { condition("action =", action) }
        if let actorID = filter.actorID { condition("actor_id =", actorID) }
        if let resourceID = filter.resourceID { condition("resource_id =", resourceID) }
        if let from = filter.from { condition("created_at >=", from.milliseconds) }
        if let to = filter.to { condition("created_at <=", to.milliseconds) }
        binds.append(Int64(filter.limit))
        binds.append(Int64(filter.offset))
        sql += " ORDER BY seq DESC LIMIT $\(binds.count - 1) OFFSET $\(binds.count)"
        return try await read(PostgresQuery(unsafeSQL: sql, binds: binds)).map(StoredRecords.auditEvent)
    }

    public func auditChain(orgID: UUID, afterSequence: Int64, limit: Int) async throws -> [AuditEvent] {
        try await read(
            "SELECT * FROM audit_events WHERE org_id = \(orgID) AND seq > \(afterSequence) ORDER BY seq LIMIT \(Int64(limit))"
        ).map(StoredRecords.auditEvent)
    }

    public func auditHead(orgID: UUID) async throws -> AuditHead? {
        try await read(
            "SELECT event_id, seq, hash FROM audit_heads WHERE org_id = \(orgID) AND seq > 0 AND event_id IS NOT NULL"
        ).first.map {
            AuditHead(eventID: try $0.uuid("event_id"), sequence: try $0.int("seq"), hash: try $0.text("hash"))
        }
    }

}

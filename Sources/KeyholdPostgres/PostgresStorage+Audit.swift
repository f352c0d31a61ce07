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

}

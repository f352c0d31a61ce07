import Foundation
import KeyholdCore
import SQLiteNIO

extension SQLiteStorage {
    /// Appends a record to its org's chain inside the caller's transaction. Any failure becomes a 503 and, since
    /// it is thrown inside the transaction, rolls back the change it was recording.
    static func append(_ db: SQLiteDB, _ record: AuditRecord) throws {
        do {
            let orgID = record.entry.orgID
            let head = try db.auditHeads.head(of: orgID, in: db)
            let event = record.chain.seal(record.entry, after: head)
            let entry = event.entry
            try db.query(
                """
                INSERT INTO audit_events (id, org_id, seq, actor_type, actor_id, action, resource_type, resource_id,
                    details, ip_address, created_at, prev_event_id, integrity_hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(event.id), .uuid(orgID), .int64(event.sequence), .text(entry.actorType.rawValue),
                    .optionalText(entry.actorID), .text(entry.action), .text(entry.resourceType),
                    .optionalText(entry.resourceID), .text(entry.detailsJSON),
                    .optionalText(entry.ipAddress), .int64(event.createdAt.milliseconds),
                    .optionalText(event.previousID?.wire), .text(event.integrityHash),
                ])
            db.auditHeads.advance(orgID, to: AuditHead(eventID: event.id, sequence: event.sequence, hash: event.integrityHash))
        } catch {
            throw KeyholdError.auditUnavailable
        }
    }

}

/// The writer connection's copy of each org's chain head. Appending an event is then one INSERT: an org's
/// `audit_heads` row is read once (on first use, and again whenever another connection has changed the file) and
/// written once per group commit, just before COMMIT, in the same transaction as the events. A savepoint rolled
/// back, or a group that failed, rolls the copy back with the database.
struct AuditHeadCache {
    private var heads: [UUID: AuditHead] = [:]
    private var changed: Set<UUID> = []
    private var dataVersion: Int?

    /// At the start of a group: forget everything if another connection (a second process, an operator's
    /// `sqlite3`) committed to the file since this connection last looked.
    mutating func begin(_ db: SQLiteDB) throws {
        let version = try db.query("PRAGMA data_version").first?.column("data_version")?.integer
        if version != dataVersion { heads = [:] }
        dataVersion = version
        changed = []
    }

    mutating func head(of orgID: UUID, in db: SQLiteDB) throws -> AuditHead? {
        if let head = heads[orgID] { return head }
        let head = try db.query("SELECT * FROM audit_heads WHERE org_id = ?", [.uuid(orgID)]).first.map {
            AuditHead(eventID: try $0.uuid("event_id"), sequence: try $0.int("seq"), hash: try $0.text("hash"))
        }
        heads[orgID] = head
        return head
    }

    mutating func advance(_ orgID: UUID, to head: AuditHead) {
        heads[orgID] = head
        changed.insert(orgID)
    }

    /// Before COMMIT: the heads the group moved.
    func write(_ db: SQLiteDB) throws {
        for orgID in changed {
            guard let head = heads[orgID] else { continue }
            try db.query(
                """
                INSERT INTO audit_heads (org_id, event_id, seq, hash) VALUES (?, ?, ?, ?)
                ON CONFLICT (org_id) DO UPDATE SET event_id = excluded.event_id, seq = excluded.seq, hash = excluded.hash
                """, [.uuid(orgID), .uuid(head.eventID), .int64(head.sequence), .text(head.hash)])
        }
    }

    /// After a failed group: nothing of it reached the file.
    mutating func discard() {
        heads = [:]
        changed = []
        dataVersion = nil
    }
}

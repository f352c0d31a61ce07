import Foundation
import KeyholdCore
import SQLiteNIO

/// The writer connection's copy of each org's chain head. Appending an event is then one INSERT: an org's
/// `audit_heads` row is read once (on first use, and again whenever another connection has changed the file) and
/// written once per group commit, just before COMMIT, in the same transaction as the events. A savepoint rolled
/// back, or a group that failed, rolls the copy back with the database.
struct AuditHeadCache {
    private var heads: [UUID: AuditHead] = [:]
    private var changed: Set<UUID> = []
    private var dataVersion: Int64?

    /// At the start of a group: forget everything if another connection (a second process, an operator's
    /// `sqlite3`) committed to the file since this connection last looked.
    mutating func begin(_ db: SQLiteDB) throws {
        let version = try db.rows("PRAGMA data_version").first.map { try StoredFields($0, table: "pragma").int("data_version") }
        if version != dataVersion { heads = [:] }
        dataVersion = version
        changed = []
    }

    mutating func head(of orgID: UUID, in db: SQLiteDB) throws -> AuditHead? {
        if let head = heads[orgID] { return head }
        let head = try db.rows("SELECT * FROM audit_heads WHERE org_id = ?", [.uuid(orgID)]).first
            .map(StoredRecords.auditHead)
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
            try db.rows(
                """
                INSERT INTO audit_heads (org_id, event_id, seq, hash) VALUES (?, ?, ?, ?)
                ON CONFLICT (org_id) DO UPDATE SET event_id = excluded.event_id, seq = excluded.seq, hash = excluded.hash
                """, [.uuid(orgID), .uuid(head.eventID), .integer(head.sequence), .text(head.hash)])
        }
    }

    /// After a failed group: nothing of it reached the file.
    mutating func discard() {
        heads = [:]
        changed = []
        dataVersion = nil
    }
}

import Foundation
import KeyholdCore
import SQLiteNIO

extension SQLiteStorage {

    public func rotateVaultKEK(vaultID: UUID, orgID: UUID, kek: KEKHandle, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                "UPDATE vaults SET kek_id = ? WHERE id = ? AND org_id = ? RETURNING id",
                [.text(kek.id), .uuid(vaultID), .uuid(orgID)]
            ).isEmpty) else { return false }
            try db.query(
                "INSERT INTO keks (id, vault_id, material, created_at) VALUES (?, ?, ?, ?)",
                [.text(kek.id), .uuid(vaultID), .bytes(kek.material), .int64(Timestamp.now.milliseconds)])
            try Self.append(db, audit)
            return true
        }
    }

    public func staleWrappedKeys(limit: Int) async throws -> [StaleWrappedKey] {
        try await read { try $0.query(
            """
            SELECT v.secret_id, v.version, v.kek_id, v.wrapped_dek, vt.kek_id AS target
            FROM secret_versions v JOIN secrets s ON s.id = v.secret_id JOIN vaults vt ON vt.id = s.vault_id
            WHERE v.kek_id <> vt.kek_id ORDER BY v.secret_id, v.version LIMIT ?
            """, [.int64(Int64(limit))]
        ).map {
            StaleWrappedKey(
                secretID: try $0.uuid("secret_id"), version: Int(try $0.int("version")), currentKEKID: try $0.text("kek_id"),
                wrappedDataKey: try $0.bytes("wrapped_dek"), targetKEKID: try $0.text("target"))
        } }
    }

    public func rewrap(_ keys: [(StaleWrappedKey, Data)]) async throws -> Int {
        try await transaction { db in
            var changed = 0
            for (key, wrapped) in keys {
                let rows = try db.query(
                    """
                    UPDATE secret_versions SET kek_id = ?, wrapped_dek = ?
                    WHERE secret_id = ? AND version = ? AND kek_id = ? RETURNING version
                    """,
                    [.text(key.targetKEKID), .bytes(wrapped), .uuid(key.secretID), .int64(Int64(key.version)), .text(key.currentKEKID)])
                changed += rows.count
            }
            return changed
        }
    }

    public func unusedKEKs() async throws -> [KEKHandle] {
        try await read { try $0.query(
            """
            SELECT k.id, k.material FROM keks k
            WHERE NOT EXISTS (SELECT 1 FROM vaults v WHERE v.kek_id = k.id)
              AND NOT EXISTS (SELECT 1 FROM secret_versions sv WHERE sv.kek_id = k.id)
            ORDER BY k.id
            """, []
        ).map { KEKHandle(id: try $0.text("id"), material: try $0.bytes("material")) } }
    }

    public func deleteKEK(id: String) async throws -> Bool {
        try await transaction { db in
            !(try db.query(
                """
                DELETE FROM keks WHERE id = ?
                  AND NOT EXISTS (SELECT 1 FROM vaults v WHERE v.kek_id = keks.id)
                  AND NOT EXISTS (SELECT 1 FROM secret_versions sv WHERE sv.kek_id = keks.id)
                RETURNING id
                """, [.text(id)]
            ).isEmpty)
        }
    }

    public func allKEKs() async throws -> [KEKHandle] {
        try await read { try $0.query("SELECT id, material FROM keks ORDER BY id", []).map {
            KEKHandle(id: try $0.text("id"), material: try $0.bytes("material"))
        } }
    }

    public func allSystemValues() async throws -> [String: Data] {
        var values: [String: Data] = [:]
        let rows = try await read { try $0.query("SELECT key, value FROM system_values", []) }
        for row in rows {
            values[try row.text("key")] = try row.bytes("value")
        }
        return values
    }

    public func reseal(keks: [KEKHandle], systemValues: [String: Data]) async throws {
        try await transaction { db in
            for kek in keks {
                try db.query("UPDATE keks SET material = ? WHERE id = ?", [.bytes(kek.material), .text(kek.id)])
            }
            for (key, value) in systemValues {
                try db.query("UPDATE system_values SET value = ? WHERE key = ?", [.bytes(value), .text(key)])
            }
        }
    }
}

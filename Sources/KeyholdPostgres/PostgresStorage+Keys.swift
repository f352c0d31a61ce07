import Foundation
import KeyholdCore
import PostgresNIO

// MARK: key rotation

extension PostgresStorage {

    public func rotateVaultKEK(vaultID: UUID, orgID: UUID, kek: KEKHandle, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                "UPDATE vaults SET kek_id = \(kek.id) WHERE id = \(vaultID) AND org_id = \(orgID) RETURNING id"
            ).isEmpty) else { return false }
            try await db.execute(
                """
                INSERT INTO keks (id, vault_id, material, created_at)
                VALUES (\(kek.id), \(vaultID), \(kek.material), \(Timestamp.now.milliseconds))
                """)
            try await Self.append(db, audit)
            return true
        }
    }

    public func staleWrappedKeys(limit: Int) async throws -> [StaleWrappedKey] {
        try await read(
            """
            SELECT v.secret_id, v.version, v.kek_id, v.wrapped_dek, vt.kek_id AS target
            FROM secret_versions v JOIN secrets s ON s.id = v.secret_id JOIN vaults vt ON vt.id = s.vault_id
            WHERE v.kek_id <> vt.kek_id ORDER BY v.secret_id, v.version LIMIT \(Int64(limit))
            """
        ).map {
            StaleWrappedKey(
                secretID: try $0.uuid("secret_id"), version: Int(try $0.int("version")),
                currentKEKID: try $0.text("kek_id"), wrappedDataKey: try $0.bytes("wrapped_dek"),
                targetKEKID: try $0.text("target"))
        }
    }

    public func rewrap(_ keys: [(StaleWrappedKey, Data)]) async throws -> Int {
        try await transaction { db in
            var changed = 0
            for (key, wrapped) in keys {
                changed += try await db.query(
                    """
                    UPDATE secret_versions SET kek_id = \(key.targetKEKID), wrapped_dek = \(wrapped)
                    WHERE secret_id = \(key.secretID) AND version = \(Int64(key.version))
                      AND kek_id = \(key.currentKEKID)
                    RETURNING version
                    """
                ).count
            }
            return changed
        }
    }

    public func unusedKEKs() async throws -> [KEKHandle] {
        try await read(
            """
            SELECT k.id, k.material FROM keks k
            WHERE NOT EXISTS (SELECT 1 FROM vaults v WHERE v.kek_id = k.id)
              AND NOT EXISTS (SELECT 1 FROM secret_versions sv WHERE sv.kek_id = k.id)
            ORDER BY k.id
            """
        ).map { KEKHandle(id: try $0.text("id"), material: try $0.bytes("material")) }
    }

    public func deleteKEK(id: String) async throws -> Bool {
        try await transaction { db in
            // Lock first, then look for users of the key in a new statement (a new snapshot): a write that held the
            // key when this lock was granted has committed its version by then.
            guard !(try await db.query("SELECT id FROM keks WHERE id = \(id) FOR UPDATE").isEmpty) else { return false }
            return !(try await db.query(
                """
                DELETE FROM keks WHERE id = \(id)
                  AND NOT EXISTS (SELECT 1 FROM vaults v WHERE v.kek_id = keks.id)
                  AND NOT EXISTS (SELECT 1 FROM secret_versions sv WHERE sv.kek_id = keks.id)
                RETURNING id
                """
            ).isEmpty)
        }
    }

    public func allKEKs() async throws -> [KEKHandle] {
        try await read("SELECT id, material FROM keks ORDER BY id").map {
            KEKHandle(id: try $0.text("id"), material: try $0.bytes("material"))
        }
    }

    public func allSystemValues() async throws -> [String: Data] {
        var values: [String: Data] = [:]
        for row in try await read("SELECT key, value FROM system_values") {
            values[try row.text("key")] = try row.bytes("value")
        }
        return values
    }

    public func reseal(keks: [KEKHandle], systemValues: [String: Data]) async throws {
        try await transaction { db in
            for kek in keks {
                try await db.execute("UPDATE keks SET material = \(kek.material) WHERE id = \(kek.id)")
            }
            for (key, value) in systemValues {
                try await db.execute("UPDATE system_values SET value = \(value) WHERE key = \(key)")
            }
        }
    }
}

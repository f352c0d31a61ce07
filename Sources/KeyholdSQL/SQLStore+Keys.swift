import Foundation
import KeyholdCore

extension SQLStore {
    /// Records a new KEK for the vault and makes it the one new versions are written under.
    public func rotateVaultKEK(vaultID: UUID, orgID: UUID, kek: KEKHandle, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first(
                "UPDATE vaults SET kek_id = ? WHERE id = ? AND org_id = ? RETURNING id", [.text(kek.id), .uuid(vaultID), .uuid(orgID)]
            ) != nil else { return false }
            try await db.query(
                "INSERT INTO keks (id, vault_id, material, created_at) VALUES (?, ?, ?, ?)",
                [.text(kek.id), .uuid(vaultID), .bytes(kek.material), .time(.now)])
            try await db.append(audit)
            return true
        }
    }

    public func staleWrappedKeys(limit: Int) async throws -> [StaleWrappedKey] {
        try await database.reading { db in
            let versions = try await db.query(
                """
                SELECT v.secret_id, v.version, v.kek_id, v.wrapped_dek, vt.kek_id AS target
                FROM secret_versions v JOIN secrets s ON s.id = v.secret_id JOIN vaults vt ON vt.id = s.vault_id
                WHERE v.kek_id <> vt.kek_id ORDER BY v.secret_id, v.version LIMIT ?
                """, [.int(limit)]
            ).map {
                let fields = StoredFields($0, table: "secret_versions")
                return StaleWrappedKey(
                    holder: .secretVersion(secretID: try fields.uuid("secret_id"), version: try fields.count("version")),
                    currentKEKID: try fields.text("kek_id"), wrappedDataKey: try fields.bytes("wrapped_dek"),
                    targetKEKID: try fields.text("target"))
            }
            guard versions.count < limit else { return versions }
            return versions
                + (try await db.query(
                    """
                    SELECT e.id, e.version, e.kek_id, e.wrapped_dek, vt.kek_id AS target FROM env_vars e JOIN vaults vt ON vt.id = e.vault_id
                    WHERE e.kek_id <> vt.kek_id ORDER BY e.id LIMIT ?
                    """, [.int(limit - versions.count)]
                ).map {
                    let fields = StoredFields($0, table: "env_vars")
                    return StaleWrappedKey(
                        holder: .envVar(id: try fields.uuid("id"), version: try fields.count("version")), currentKEKID: try fields.text("kek_id"),
                        wrappedDataKey: try fields.bytes("wrapped_dek"), targetKEKID: try fields.text("target"))
                })
        }
    }

    /// Each key is replaced only if still wrapped by the KEK it was read under, so a concurrent run cannot undo another.
    public func rewrap(_ keys: [(StaleWrappedKey, Data)]) async throws -> Int {
        try await database.inTransaction { db in
            var changed = 0
            for (key, wrapped) in keys {
                switch key.holder {
                case .secretVersion(let secretID, let version):
                    changed += try await db.query(
                        """
                        UPDATE secret_versions SET kek_id = ?, wrapped_dek = ?
                        WHERE secret_id = ? AND version = ? AND kek_id = ? RETURNING version
                        """, [.text(key.targetKEKID), .bytes(wrapped), .uuid(secretID), .int(version), .text(key.currentKEKID)]
                    ).count
                case .envVar(let id, let version):
                    // A variable changes in place: a new version (a new data key and ciphertext) written meanwhile must
                    // not get the old version's key.
                    changed += try await db.query(
                        "UPDATE env_vars SET kek_id = ?, wrapped_dek = ? WHERE id = ? AND version = ? AND kek_id = ? RETURNING id",
                        [.text(key.targetKEKID), .bytes(wrapped), .uuid(id), .int(version), .text(key.currentKEKID)]
                    ).count
                }
            }
            return changed
        }
    }

    public func unusedKEKs() async throws -> [KEKHandle] {
        try await database.reading {
            try await $0.query(
                """
                SELECT k.id, k.material FROM keks k
                WHERE NOT EXISTS (SELECT 1 FROM vaults v WHERE v.kek_id = k.id)
                  AND NOT EXISTS (SELECT 1 FROM secret_versions sv WHERE sv.kek_id = k.id)
                  AND NOT EXISTS (SELECT 1 FROM env_vars e WHERE e.kek_id = k.id)
                ORDER BY k.id
                """, []
            ).map(StoredRecords.kek)
        }
    }

    /// Deletes a KEK if it is still unused. On PostgreSQL the key's row is locked first and its users looked for in a
    /// new statement (a new snapshot): a write that held the key when the lock was granted has committed by then.
    public func deleteKEK(id: String) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("SELECT id FROM keks WHERE id = ?" + db.forUpdate, [.text(id)]) != nil else { return false }
            return try await db.first(
                """
                DELETE FROM keks WHERE id = ?
                  AND NOT EXISTS (SELECT 1 FROM vaults v WHERE v.kek_id = keks.id)
                  AND NOT EXISTS (SELECT 1 FROM secret_versions sv WHERE sv.kek_id = keks.id)
                  AND NOT EXISTS (SELECT 1 FROM env_vars e WHERE e.kek_id = keks.id)
                RETURNING id
                """, [.text(id)]
            ) != nil
        }
    }

    public func allKEKs() async throws -> [KEKHandle] {
        try await database.reading { try await $0.query("SELECT id, material FROM keks ORDER BY id", []).map(StoredRecords.kek) }
    }

    public func allSystemValues() async throws -> [String: Data] {
        try await database.reading {
            var values: [String: Data] = [:]
            for row in try await $0.query("SELECT key, value FROM system_values", []) {
                let fields = StoredFields(row, table: "system_values")
                values[try fields.text("key")] = try fields.bytes("value")
            }
            return values
        }
    }

    /// Replaces KEK materials and system values in one transaction (re-sealing under a new master key).
    public func reseal(keks: [KEKHandle], systemValues: [String: Data]) async throws {
        try await database.inTransaction { db in
            for kek in keks {
                try await db.query("UPDATE keks SET material = ? WHERE id = ?", [.bytes(kek.material), .text(kek.id)])
            }
            for (key, value) in systemValues {
                try await db.query("UPDATE system_values SET value = ? WHERE key = ?", [.bytes(value), .text(key)])
            }
        }
    }
}

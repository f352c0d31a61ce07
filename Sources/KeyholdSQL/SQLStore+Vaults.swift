import Foundation
import KeyholdCore

extension SQLStore {
    public func createVault(_ vault: Vault, kek: KEKHandle, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.insert(
                Self.vaults,
                [
                    "id": .uuid(vault.id), "org_id": .uuid(vault.orgID), "name": .text(vault.name),
                    "description": .optional(vault.description), "created_by": .uuid(vault.createdBy),
                    "created_by_type": .text(vault.createdByType.rawValue), "kek_id": .text(vault.kekID),
                    "created_at": .time(vault.createdAt), "cmek_fingerprint": .optional(vault.cmekFingerprint),
                ], seal: seal)
            try await db.query(
                "INSERT INTO keks (id, vault_id, material, created_at) VALUES (?, ?, ?, ?)",
                [.text(kek.id), .uuid(vault.id), .bytes(kek.material), .time(vault.createdAt)])
            try await db.append(audit)
        }
    }

    public func vault(id: UUID, orgID: UUID) async throws -> Vault? {
        try await database.reading {
            try await $0.first("SELECT * FROM vaults WHERE id = ? AND org_id = ?", [.uuid(id), .uuid(orgID)])
                .map(self.vault(_:))
        }
    }

    public func vault(id: UUID) async throws -> Vault? {
        try await database.reading {
            try await $0.first("SELECT * FROM vaults WHERE id = ?", [.uuid(id)]).map(self.vault(_:))
        }
    }

    public func vaults(orgID: UUID) async throws -> [Vault] {
        try await database.reading {
            try await $0.query("SELECT * FROM vaults WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
                .map(self.vault(_:))
        }
    }


    /// Deletes the vault; foreign keys cascade to its keys, policies, shares, secrets and versions.
    public func deleteVault(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("DELETE FROM vaults WHERE id = ? AND org_id = ? RETURNING id", [.uuid(id), .uuid(orgID)])
                != nil
            else { return false }
            try await db.append(audit)
            return true
        }
    }

    public func kek(id: String) async throws -> KEKHandle? {
        try await database.reading {
            try await $0.first("SELECT id, material FROM keks WHERE id = ?", [.text(id)]).map(StoredRecords.kek)
        }
    }
}

extension SQLStore {
    public func statistics() async throws -> StorageStatistics {
        try await database.reading { db in
            guard let row = try await db.first(
                """
                SELECT (SELECT COUNT(*) FROM orgs) AS orgs, (SELECT COUNT(*) FROM vaults) AS vaults,
                (SELECT COUNT(*) FROM secrets) AS secrets, (SELECT COUNT(*) FROM secret_versions) AS versions,
                (SELECT COUNT(*) FROM audit_events) AS events
                """)
            else { throw StorageError.backend("no statistics row") }
            let fields = StoredFields(row, table: "statistics")
            return StorageStatistics(
                orgs: try fields.count("orgs"), vaults: try fields.count("vaults"), secrets: try fields.count("secrets"),
                secretVersions: try fields.count("versions"), auditEvents: try fields.count("events"))
        }
    }

    public func systemValue(_ key: String) async throws -> Data? {
        try await database.reading {
            try await $0.first("SELECT value FROM system_values WHERE key = ?", [.text(key)]).map {
                try StoredFields($0, table: "system_values").bytes("value")
            }
        }
    }

    /// Stores the value unless the key exists; returns what is stored afterwards (so concurrent starters agree).
    public func insertSystemValueIfAbsent(_ key: String, _ value: Data) async throws -> Data {
        try await database.inTransaction { db in
            try await db.query(
                "INSERT INTO system_values (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                [.text(key), .bytes(value)])
            guard let row = try await db.first("SELECT value FROM system_values WHERE key = ?", [.text(key)]) else {
                throw StorageError.backend("system value vanished")
            }
            return try StoredFields(row, table: "system_values").bytes("value")
        }
    }
}

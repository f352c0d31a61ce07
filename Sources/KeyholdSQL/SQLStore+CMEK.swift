import Foundation
import KeyholdCore

// MARK: customer-managed keys

extension SQLStore {
    public func setVaultCMEK(vaultID: UUID, orgID: UUID, fingerprint: String?, audit: AuditRecord) async throws -> Vault? {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, vault) = try await db.lockedRow(
                Self.vaults, where: "id = ? AND org_id = ?", [.uuid(vaultID), .uuid(orgID)], seal: seal, as: StoredRecords.vault)
            else { return nil }
            try await db.update(Self.vaults, row: row, set: ["cmek_fingerprint": .optional(fingerprint)], seal: seal)
            try await db.append(audit)
            return vault.with(cmekFingerprint: fingerprint)
        }
    }

    /// The versions of the vault's secrets under the key `fingerprint`, deleted and disabled ones included.
    private static let cmekVersionsWhere = """
        FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
        WHERE v.cmek_fingerprint = ? AND s.vault_id = ?
        """

    public func cmekVersionCount(vaultID: UUID, fingerprint: String) async throws -> Int {
        try await database.reading {
            guard let row = try await $0.first("SELECT COUNT(*) AS n \(Self.cmekVersionsWhere)", [.text(fingerprint), .uuid(vaultID)])
            else { return 0 }
            return try StoredFields(row, table: "secret_versions").count("n")
        }
    }

    public func cmekFingerprints(vaultID: UUID) async throws -> [String: Int] {
        try await database.reading {
            var counts: [String: Int] = [:]
            for row in try await $0.query(
                """
                SELECT v.cmek_fingerprint AS fingerprint, COUNT(*) AS n FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
                WHERE s.vault_id = ? AND v.cmek_fingerprint IS NOT NULL GROUP BY v.cmek_fingerprint
                """, [.uuid(vaultID)])
            {
                let fields = StoredFields(row, table: "secret_versions")
                counts[try fields.text("fingerprint")] = try fields.count("n")
            }
            return counts
        }
    }

    public func cmekVersions(vaultID: UUID, fingerprint: String, limit: Int) async throws -> [CMEKVersion] {
        try await database.reading {
            try await $0.query(
                """
                SELECT v.secret_id, s.path, v.version, v.kek_id, v.wrapped_dek, v.ciphertext \(Self.cmekVersionsWhere)
                ORDER BY v.secret_id, v.version LIMIT ?
                """, [.text(fingerprint), .uuid(vaultID), .int(limit)]
            ).map {
                let fields = StoredFields($0, table: "secret_versions")
                return CMEKVersion(
                    secretID: try fields.uuid("secret_id"), path: try StoredFields($0, table: "secrets").text("path"),
                    version: try fields.count("version"), kekID: try fields.text("kek_id"),
                    wrappedDataKey: try fields.bytes("wrapped_dek"), ciphertext: try fields.bytes("ciphertext"))
            }
        }
    }

    public func replaceCMEKVersions(_ replacements: [CMEKReplacement], from: String, to: String, job: CMEKRotationJob)
        async throws
    {
        try await database.inTransaction { db in
            for kekID in Set(replacements.map(\.kekID)) { try await db.holdKEK(kekID) }
            for replacement in replacements {
                let original = replacement.original
                guard try await db.first(
                    """
                    UPDATE secret_versions SET kek_id = ?, wrapped_dek = ?, ciphertext = ?, cmek_fingerprint = ?
                    WHERE secret_id = ? AND version = ? AND cmek_fingerprint = ? AND wrapped_dek = ? RETURNING version
                    """,
                    [
                        .text(replacement.kekID), .bytes(replacement.wrappedDataKey), .bytes(replacement.ciphertext),
                        .text(to), .uuid(original.secretID), .int(original.version), .text(from),
                        .bytes(original.wrappedDataKey),
                    ]) != nil
                else {
                    throw KeyholdError(.conflict, "A version changed while it was being rotated")
                }
            }
            try await db.saveCMEKJob(job)
        }
    }

    public func finishCMEKRotation(_ job: CMEKRotationJob, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            // Locked first: a write that checked the old setting either committed before (and is counted below) or
            // waits and then fails on the new one.
            guard let (row, vault) = try await db.lockedRow(
                Self.vaults, where: "id = ? AND org_id = ?", [.uuid(job.vaultID), .uuid(job.orgID)], seal: seal,
                as: StoredRecords.vault)
            else { throw KeyholdError.notFound("Vault not found") }
            guard try await db.first(
                "SELECT v.version \(Self.cmekVersionsWhere) LIMIT 1", [.text(job.oldFingerprint), .uuid(job.vaultID)]
            ) == nil else { return false }
            if vault.cmekFingerprint == job.oldFingerprint {
                try await db.update(Self.vaults, row: row, set: ["cmek_fingerprint": .text(job.newFingerprint)], seal: seal)
            } else if vault.cmekFingerprint != job.newFingerprint {
                // Another rotation (to another key) finished first: this job's versions must not be left under a key
                // the vault does not name without saying so.
                throw KeyholdError(
                    .conflict,
                    "The vault moved to another key during this rotation; rotate from that key to \(job.newFingerprint) to bring every version under one key")
            }
            try await db.saveCMEKJob(job)
            try await db.append(audit)
            return true
        }
    }

    public func createCMEKJob(_ job: CMEKRotationJob, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            // The vault's jobs left pending or running by a server that stopped: this job takes over their work.
            try await db.query(
                """
                UPDATE cmek_rotation_jobs SET status = 'failed', completed_at = ?, error = ?
                WHERE vault_id = ? AND status IN ('pending', 'running') AND id <> ?
                """,
                [
                    .time(job.createdAt),
                    .text("Interrupted before it finished (its server stopped); job \(job.id.wire) resumed the rotation"),
                    .uuid(job.vaultID), .uuid(job.id),
                ])
            try await db.query(
                """
                INSERT INTO cmek_rotation_jobs (id, vault_id, org_id, old_fingerprint, new_fingerprint, status,
                    total_secrets, processed, error, started_at, completed_at, created_by, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(job.id), .uuid(job.vaultID), .uuid(job.orgID), .text(job.oldFingerprint),
                    .text(job.newFingerprint), .text(job.status.rawValue), .int(job.totalSecrets), .int(job.processed),
                    .optional(job.error), .optional(job.startedAt), .optional(job.completedAt), .uuid(job.createdBy),
                    .time(job.createdAt),
                ])
            try await db.append(audit)
        }
    }

    public func saveCMEKJob(_ job: CMEKRotationJob) async throws {
        try await database.inTransaction { try await $0.saveCMEKJob(job) }
    }

    public func cmekJob(id: UUID, vaultID: UUID) async throws -> CMEKRotationJob? {
        try await database.reading {
            try await $0.first("SELECT * FROM cmek_rotation_jobs WHERE id = ? AND vault_id = ?", [.uuid(id), .uuid(vaultID)])
                .map(StoredRecords.cmekJob)
        }
    }
}

extension SQLConnection {
    func saveCMEKJob(_ job: CMEKRotationJob) async throws {
        try await query(
            """
            UPDATE cmek_rotation_jobs SET status = ?, total_secrets = ?, processed = ?, error = ?, started_at = ?,
                completed_at = ?
            WHERE id = ?
            """,
            [
                .text(job.status.rawValue), .int(job.totalSecrets), .int(job.processed), .optional(job.error),
                .optional(job.startedAt), .optional(job.completedAt), .uuid(job.id),
            ])
    }
}

import Foundation
import KeyholdCore

/// A version's metadata columns, from `secrets s` joined with `secret_versions v` (and its read count).
let versionColumns = """
    s.id AS secret_id, s.path, s.deleted_at, v.version, v.type, v.metadata, v.rotation_policy, v.expires_at,
    v.max_access_count, COALESCE((SELECT count FROM version_reads WHERE slot = v.read_slot), 0) AS access_count,
    v.is_disabled, v.is_deleted, v.created_by, v.created_at, v.cmek_fingerprint
    """

extension SQLStore {
    /// The next version of a path, numbered by the database: 1, 2, 3 … with no gaps or duplicates under
    /// concurrency. The common path is one statement: the UPDATE that bumps a live secret's counter (on PostgreSQL
    /// its row lock serialises the path's writers until commit). Otherwise the path's deleted secret, if any, gives
    /// way and a new one starts (a new id, version 1): two first writers meet on the unique index, where the second
    /// INSERT does nothing and its UPDATE then bumps the first's row. A writer that waited on a concurrent delete
    /// finds the row deleted and goes round again.
    public func writeVersion(
        _ new: NewSecretVersion, audit: AuditRecord, seal: @escaping @Sendable (Int) throws -> Data
    ) async throws -> SecretVersionInfo {
        let grants = try self.seal
        return try await database.inTransaction { db in
            // The vault's CMEK setting must still be the one the value was checked against: enabling, disabling or
            // finishing a rotation locks the vault's row, so a write that read the old setting waits and fails here.
            guard let vaultRow = try await db.first("SELECT * FROM vaults WHERE id = ?" + db.forKeyShare, [.uuid(new.vaultID)])
            else { throw KeyholdError.notFound("Vault not found") }
            guard try grants.verified(vaultRow, Self.vaults, StoredRecords.vault).cmekFingerprint == new.cmekFingerprint else {
                throw KeyholdError(.conflict, "The vault's customer-managed key setting changed during the write; retry the request")
            }
            // The KEK must still exist when the version commits: a concurrent retirement waits for this write and
            // then sees the version (or, if it went first, this write fails instead of losing its key).
            guard try await db.first("SELECT id FROM keks WHERE id = ?" + db.forKeyShare, [.text(new.kekID)]) != nil else {
                throw KeyholdError(.unavailable, "The vault's key changed during the write; retry the request")
            }
            let path: [SQLValue] = [.uuid(new.vaultID), .text(new.path)]
            var bumped: StoredRow?
            for _ in 0..<3 where bumped == nil {
                bumped = try await db.first(
                    """
                    UPDATE secrets SET current_version = current_version + 1
                    WHERE vault_id = ? AND path = ? AND deleted_at IS NULL RETURNING id, current_version
                    """, path)
                if bumped == nil {
                    try await db.query("DELETE FROM secrets WHERE vault_id = ? AND path = ? AND deleted_at IS NOT NULL", path)
                    try await db.query(
                        """
                        INSERT INTO secrets (id, vault_id, path, current_version) VALUES (?, ?, ?, 0)
                        ON CONFLICT (vault_id, path) DO NOTHING
                        """, [.uuid(UUID())] + path)
                }
            }
            guard let row = bumped else {
                throw KeyholdError(.unavailable, "The secret changed during the write; retry the request")
            }
            let fields = StoredFields(row, table: "secrets")
            let secretID = try fields.uuid("id")
            let version = try fields.count("current_version")
            // A version without a type keeps the previous version's.
            var type = new.type
            if type == nil, version > 1 {
                type = try await db.first(
                    "SELECT type FROM secret_versions WHERE secret_id = ? AND version = ?", [.uuid(secretID), .int(version - 1)]
                ).map { try StoredFields($0, table: "secret_versions").value("type") }
            }
            let info = SecretVersionInfo(
                secretID: secretID, path: new.path, version: version, type: type ?? .generic,
                metadata: new.metadata, rotationPolicy: new.rotationPolicy, expiresAt: new.expiresAt,
                maxAccessCount: new.maxAccessCount, accessCount: 0, isDisabled: false, isDeleted: false,
                createdBy: new.createdBy, createdAt: new.createdAt, cmekFingerprint: new.cmekFingerprint)
            guard let counter = try await db.first("INSERT INTO version_reads (count) VALUES (0) RETURNING slot", []) else {
                throw StorageError.backend("no read counter for the new version")
            }
            try await db.query(
                """
                INSERT INTO secret_versions (read_slot, secret_id, version, type, metadata, rotation_policy, expires_at,
                    max_access_count, created_by, created_at, kek_id, wrapped_dek, ciphertext, cmek_fingerprint)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .integer(try StoredFields(counter, table: "version_reads").int("slot")), .uuid(secretID),
                    .int(version), .text(info.type.rawValue), .optional(new.metadata?.jsonString()),
                    .optional(new.rotationPolicy?.jsonString()), .optional(new.expiresAt), .optional(new.maxAccessCount),
                    .uuid(new.createdBy), .time(new.createdAt), .text(new.kekID), .bytes(new.wrappedDataKey),
                    .bytes(try seal(version)), .optional(new.cmekFingerprint),
                ])
            try await db.append(audit.adding(["version": .number(Double(version))]))
            return info
        }
    }

    public func readVersion(
        vaultID: UUID, path: String, version: Int?, now: Timestamp, audit: AuditRecord,
        lease: (claim: LeaseClaim, audit: @Sendable (Approval) -> AuditRecord)?, refusing: Set<SecretType>
    ) async throws -> SealedSecretVersion {
        let seal = lease == nil ? nil : try self.seal
        return try await database.inTransaction { db in
            let condition = "s.vault_id = ? AND s.path = ? AND v.version = " + (version == nil ? "s.current_version" : "?")
            let binds: [SQLValue] = [.uuid(vaultID), .text(path)] + (version.map { [.int($0)] } ?? [])
            let missing = version == nil
                ? KeyholdError.notFound("Secret not found") : KeyholdError.notFound("Secret version not found")
            var spent: (Approval, @Sendable (Approval) -> AuditRecord)?
            if let lease, let seal {
                // A refused type is refused before a gated read asks for (or spends) an approval.
                if !refusing.isEmpty, let row = try await db.first(
                    "SELECT v.type FROM secrets s JOIN secret_versions v ON v.secret_id = s.id WHERE \(condition)", binds),
                    let type = SecretType(rawValue: try StoredFields(row, table: "secret_versions").text("type")),
                    refusing.contains(type)
                { throw KeyholdError.typeRefused }
                spent = (try await db.spendLease(lease.claim, now: now, seal: seal), lease.audit)
            }
            let sealed = try await db.countedRead(where: condition, binds, now: now, missing: missing, refusing: refusing)
            try await db.append(audit.adding(["version": .number(Double(sealed.info.version))]))
            if let (lease, record) = spent { try await db.append(record(lease)) }
            return sealed
        }
    }

    /// Keyset pagination: a page costs the same whatever the vault's size.
    public func latestVersions(vaultID: UUID, prefix: String?, after: String?, limit: Int) async throws
        -> [SecretVersionInfo]
    {
        // No stored path holds a NUL character (PostgreSQL text cannot): nothing matches one.
        if [prefix, after].contains(where: { $0?.utf8.contains(0) == true }) { return [] }
        var sql = """
            SELECT \(versionColumns) FROM secrets s
            JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version
            WHERE s.vault_id = ? AND s.deleted_at IS NULL
            """
        var binds: [SQLValue] = [.uuid(vaultID)]
        if let prefix, !prefix.isEmpty {
            // A range the (vault_id, path) index serves: stored paths use only characters below '~'.
            sql += " AND s.path >= ? AND s.path < ? AND substr(s.path, 1, CAST(? AS INTEGER)) = ?"
            binds += [.text(prefix), .text(prefix + "~"), .int(prefix.unicodeScalars.count), .text(prefix)]
        }
        if let after {
            sql += " AND s.path > ?"
            binds.append(.text(after))
        }
        sql += " ORDER BY s.path LIMIT ?"
        binds.append(.int(limit))
        let (statement, values) = (sql, binds)
        return try await database.reading { try await $0.query(statement, values).map(StoredRecords.versionInfo) }
    }

    public func versions(vaultID: UUID, path: String) async throws -> [SecretVersionInfo] {
        try await database.reading {
            try await $0.query(
                """
                SELECT \(versionColumns) FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
                WHERE s.vault_id = ? AND s.path = ? ORDER BY v.version
                """, [.uuid(vaultID), .text(path)]
            ).map(StoredRecords.versionInfo)
        }
    }

    public func disableVersion(vaultID: UUID, path: String, version: Int, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first(
                """
                UPDATE secret_versions SET is_disabled = ?
                WHERE version = ? AND secret_id = (SELECT id FROM secrets WHERE vault_id = ? AND path = ?)
                RETURNING version
                """, [.boolean(true), .int(version), .uuid(vaultID), .text(path)]
            ) != nil else { return false }
            try await db.append(audit)
            return true
        }
    }

    /// Soft-deletes every version of the path and revokes the secret's shares.
    public func deleteSecret(vaultID: UUID, path: String, at time: Timestamp, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let row = try await db.first(
                "UPDATE secrets SET deleted_at = ? WHERE vault_id = ? AND path = ? AND deleted_at IS NULL RETURNING id",
                [.time(time), .uuid(vaultID), .text(path)]
            ) else { return false }
            let secretID = try StoredFields(row, table: "secrets").uuid("id")
            try await db.query("UPDATE secret_versions SET is_deleted = ? WHERE secret_id = ?", [.boolean(true), .uuid(secretID)])
            try await db.revokeShares(where: "secret_id = ?", [.uuid(secretID)], at: time, seal: seal)
            try await db.append(audit)
            return true
        }
    }
}

extension SQLConnection {
    /// Inside a transaction: reads one version for its value, refuses it when gone (410) and counts the access
    /// against `max_access_count` atomically. On PostgreSQL the version row is locked as it is read, so a
    /// concurrent disable, delete or count is either wholly before this read or wholly after it.
    func countedRead(
        where condition: String, _ binds: [SQLValue], now: Timestamp, missing: KeyholdError, refusing: Set<SecretType>
    ) async throws -> SealedSecretVersion {
        guard let row = try await first(
            """
            SELECT \(versionColumns), v.read_slot, v.kek_id, v.wrapped_dek, v.ciphertext
            FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
            WHERE \(condition)
            """ + forUpdate(of: "v"), binds
        ) else { throw missing }
        let info = try StoredRecords.versionInfo(row)
        // Before the gone check: the answer for a refused type does not tell whether the value is still there.
        if refusing.contains(info.type) { throw KeyholdError.typeRefused }
        if let reason = info.goneReason(now: now) { throw KeyholdError.gone(reason) }
        let fields = StoredFields(row, table: "secret_versions")
        guard let counted = try await first(
            "UPDATE version_reads SET count = count + 1 WHERE slot = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR count < ?2) RETURNING count",
            [.integer(try fields.int("read_slot")), .optional(info.maxAccessCount)]
        ) else { throw KeyholdError.gone("Secret has reached its maximum access count") }
        return SealedSecretVersion(
            info: info.with(accessCount: try StoredFields(counted, table: "version_reads").count("count")),
            kekID: try fields.text("kek_id"), wrappedDataKey: try fields.bytes("wrapped_dek"),
            ciphertext: try fields.bytes("ciphertext"))
    }
}

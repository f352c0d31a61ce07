import Foundation
import KeyholdCore
import PostgresNIO

// MARK: secrets

extension PostgresStorage {
    static let versionColumns = """
        s.id AS secret_id, s.path, s.deleted_at, v.version, v.type, v.metadata, v.rotation_policy, v.expires_at,
        v.max_access_count, v.access_count, v.is_disabled, v.is_deleted, v.created_by, v.created_at
        """

    public func writeVersion(
        _ new: NewSecretVersion, audit: AuditRecord, seal: @escaping @Sendable (Int) throws -> Data
    ) async throws -> SecretVersionInfo {
        try await transaction { db in
            // The KEK must still exist when the version commits: the share lock makes a concurrent retirement wait
            // and then see this version (or, if it went first, makes this write fail instead of losing its key).
            guard !(try await db.query("SELECT id FROM keks WHERE id = \(new.kekID) FOR KEY SHARE").isEmpty) else {
                throw KeyholdError(.unavailable, "The vault's key changed during the write; retry the request")
            }
            // A deleted secret's row gives way: a write to its path creates a new secret (a new id, version 1). The
            // row lock the UPDATE takes serialises every writer of the path until commit: versions 1…N, no gaps. A
            // writer that waited on a concurrent delete finds the row deleted (`deleted_at IS NULL` no longer holds
            // when the UPDATE re-reads it) and goes round again: it removes the tombstone and starts a new secret.
            var bumped: Row?
            for _ in 0..<3 where bumped == nil {
                try await db.execute(
                    "DELETE FROM secrets WHERE vault_id = \(new.vaultID) AND path = \(new.path) AND deleted_at IS NOT NULL")
                // Two first writers of a path: the second INSERT waits on the unique index, then does nothing.
                try await db.execute(
                    """
                    INSERT INTO secrets (id, vault_id, path, current_version) VALUES (\(UUID()), \(new.vaultID), \(new.path), 0)
                    ON CONFLICT (vault_id, path) DO NOTHING
                    """)
                bumped = try await db.query(
                    """
                    UPDATE secrets SET current_version = current_version + 1
                    WHERE vault_id = \(new.vaultID) AND path = \(new.path) AND deleted_at IS NULL
                    RETURNING id, current_version
                    """
                ).first
            }
            guard let row = bumped else {
                throw KeyholdError(.unavailable, "The secret changed during the write; retry the request")
            }
            let secretID = try row.uuid("id")
            let version = Int(try row.int("current_version"))
            var type = new.type
            if type == nil, version > 1 {
                type = try await db.query(
                    "SELECT type FROM secret_versions WHERE secret_id = \(secretID) AND version = \(version - 1)"
                ).first.map { try StoredFields($0, table: "secret_versions").value("type") }
            }
            let info = SecretVersionInfo(
                secretID: secretID, path: new.path, version: version, type: type ?? .generic,
                metadata: new.metadata, rotationPolicy: new.rotationPolicy, expiresAt: new.expiresAt,
                maxAccessCount: new.maxAccessCount, accessCount: 0, isDisabled: false, isDeleted: false,
                createdBy: new.createdBy, createdAt: new.createdAt)
            let ciphertext = try seal(version)
            try await db.execute(
                """
                INSERT INTO secret_versions (secret_id, version, type, metadata, rotation_policy, expires_at,
                    max_access_count, created_by, created_at, kek_id, wrapped_dek, ciphertext)
                VALUES (\(secretID), \(version), \(info.type.rawValue), \(new.metadata?.jsonString()),
                    \(new.rotationPolicy?.jsonString()), \(new.expiresAt?.milliseconds), \(new.maxAccessCount),
                    \(new.createdBy), \(new.createdAt.milliseconds), \(new.kekID), \(new.wrappedDataKey), \(ciphertext))
                """)
            try await Self.append(db, audit.adding(["version": .number(Double(version))]))
            return info
        }
    }

    public func readVersion(vaultID: UUID, path: String, version: Int?, now: Timestamp, audit: AuditRecord) async throws
        -> SealedSecretVersion
    {
        try await transaction { db in
            var condition = "s.vault_id = $1 AND s.path = $2 AND "
            var binds = PostgresBindings()
            binds.append(vaultID)
            binds.append(path)
            if let version {
                binds.append(version)
                condition += "v.version = $3"
            } else {
                condition += "v.version = s.current_version"
            }
            let sealed = try await Self.countedRead(
                db, where: condition, binds, now: now,
                missing: version == nil
                    ? KeyholdError.notFound("Secret not found") : KeyholdError.notFound("Secret version not found"))
            try await Self.append(db, audit.adding(["version": .number(Double(sealed.info.version))]))
            return sealed
        }
    }

    /// Inside a transaction: reads one version for its value, refuses it when gone (410) and counts the access
    /// against `max_access_count` atomically. The version row is locked as it is read, so a concurrent disable,
    /// delete or count is either wholly before this read or wholly after it.
    static func countedRead(
        _ db: DB, where condition: String, _ binds: PostgresBindings, now: Timestamp, missing: KeyholdError
    ) async throws -> SealedSecretVersion {
        guard let row = try await db.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT \(Self.versionColumns), v.kek_id, v.wrapped_dek, v.ciphertext
                    FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
                    WHERE \(condition)
                    FOR UPDATE OF v
                    """, binds: binds)
        ).first else { throw missing }
        let info = try StoredRecords.versionInfo(row)
        if let reason = info.goneReason(now: now) { throw KeyholdError.gone(reason) }
        guard let counted = try await db.query(
            """
            UPDATE secret_versions SET access_count = access_count + 1
            WHERE secret_id = \(info.secretID) AND version = \(info.version)
                AND (max_access_count IS NULL OR access_count < max_access_count)
            RETURNING access_count
            """
        ).first else { throw KeyholdError.gone("Secret has reached its maximum access count") }
        return SealedSecretVersion(
            info: info.with(accessCount: Int(try counted.int("access_count"))), kekID: try row.text("kek_id"),
            wrappedDataKey: try row.bytes("wrapped_dek"), ciphertext: try row.bytes("ciphertext"))
    }

    public func latestVersions(vaultID: UUID, prefix: String?, after: String?, limit: Int) async throws
        -> [SecretVersionInfo]
    {
        var sql = """
            SELECT \(Self.versionColumns) FROM secrets s
            JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version
            WHERE s.vault_id = $1 AND s.deleted_at IS NULL
            """
        var binds = PostgresBindings()
        binds.append(vaultID)
        if let prefix, !prefix.isEmpty {
            // PostgreSQL text cannot hold NUL, and no stored path does: nothing matches.
            if prefix.unicodeScalars.contains("\u{0}") { return [] }
            // A range the (vault_id, path) index serves: stored paths use only characters below '~'.
            binds.append(prefix)
            binds.append(prefix + "~")
            sql += " AND s.path >= $2 AND s.path < $3 AND left(s.path, char_length($2)) = $2"
        }
        if let after {
            if after.unicodeScalars.contains("\u{0}") { return [] }
            binds.append(after)
            sql += " AND s.path > $\(binds.count)"
        }
        binds.append(Int64(limit))
        sql += " ORDER BY s.path LIMIT $\(binds.count)"
        return try await read(PostgresQuery(unsafeSQL: sql, binds: binds)).map(StoredRecords.versionInfo)
    }

    public func versions(vaultID: UUID, path: String) async throws -> [SecretVersionInfo] {
        try await read(
            """
            SELECT \(unescaped: Self.versionColumns) FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
            WHERE s.vault_id = \(vaultID) AND s.path = \(path) ORDER BY v.version
            """
        ).map(StoredRecords.versionInfo)
    }

    public func disableVersion(vaultID: UUID, path: String, version: Int, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                """
                UPDATE secret_versions SET is_disabled = true
                WHERE version = \(version)
                    AND secret_id = (SELECT id FROM secrets WHERE vault_id = \(vaultID) AND path = \(path))
                RETURNING version
                """
            ).isEmpty) else { return false }
            try await Self.append(db, audit)
            return true
        }
    }

    public func deleteSecret(vaultID: UUID, path: String, at time: Timestamp, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard let row = try await db.query(
                """
                UPDATE secrets SET deleted_at = \(time.milliseconds)
                WHERE vault_id = \(vaultID) AND path = \(path) AND deleted_at IS NULL
                RETURNING id
                """
            ).first else { return false }
            let secretID = try row.uuid("id")
            try await db.execute("UPDATE secret_versions SET is_deleted = true WHERE secret_id = \(secretID)")
            try await db.execute(
                "UPDATE shares SET revoked_at = \(time.milliseconds) WHERE secret_id = \(secretID) AND revoked_at IS NULL")
            try await Self.append(db, audit)
            return true
        }
    }

}

extension SecretVersionInfo {
    func with(accessCount: Int) -> SecretVersionInfo {
        SecretVersionInfo(
            secretID: secretID, path: path, version: version, type: type, metadata: metadata,
            rotationPolicy: rotationPolicy, expiresAt: expiresAt, maxAccessCount: maxAccessCount,
            accessCount: accessCount, isDisabled: isDisabled, isDeleted: isDeleted, createdBy: createdBy,
            createdAt: createdAt)
    }
}

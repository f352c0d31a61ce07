import Foundation
import KeyholdCore
import Logging
import NIOCore
import SQLiteNIO

/// The embedded default backend: one SQLite file in WAL mode with `synchronous=FULL`, so a commit is on disk
/// before the response. All writes go through one connection on one thread, in groups (see `GroupCommitter`);
/// plain reads use a small pool of reader connections, run inline on the calling task, and see the last committed
/// state.
public final class SQLiteStorage: Storage {
    let committer: GroupCommitter
    let readers: ReaderPool
    /// The database file.
    public let path: String

    public static func open(path: String, logger: Logger) async throws -> SQLiteStorage {
        let writer = try SQLiteDB(path: path, bufferedLog: true)
        try writer.execute("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON")
        let storage = SQLiteStorage(path: path, writer: writer)
        do {
            try await storage.migrate()
        } catch {
            try? await storage.close()
            throw error
        }
        return storage
    }

    init(path: String, writer: SQLiteDB) {
        self.path = path
        self.committer = GroupCommitter(connection: writer)
        self.readers = ReaderPool(path: path)
    }

    public func close() async throws {
        await committer.stop()
        readers.close()
    }

    // MARK: transactions

    /// Runs `body` in a transaction on the writer and returns once it is committed (durable), or throws after it
    /// was rolled back. Group commit: transactions that arrive while the writer is busy run together under one
    /// `BEGIN IMMEDIATE … COMMIT`, each in its own savepoint, so a whole group costs one fsync. A body that throws
    /// rolls back to its savepoint and leaves the others untouched; a failed COMMIT fails every body in the group.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (SQLiteDB) throws -> T) async throws -> T {
        let outcome = Outcome<T>()
        committer.submit { db in outcome.set(try body(db)) } completion: { error in outcome.finish(error) }
        return try await outcome.value()
    }

    /// Runs plain reads on a reader connection of the pool, inline on the calling task: a WAL read of a few rows
    /// takes microseconds from the page cache, less than the two thread hand-offs a thread-pool job costs. (Writes,
    /// which wait for fsync, run on the writer thread.)
    func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteDB) throws -> T) async throws -> T {
        let db = try readers.take()
        defer { readers.put(db) }
        return try body(db)
    }

    // MARK: migrations

    /// The schema's history, applied in order; `schema_migrations` records how far a database is.
    public static let migrations: [String] = [
        """
        CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE users (
            id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), email TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL, display_name TEXT, role TEXT NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE vaults (
            id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
            created_by TEXT NOT NULL, created_by_type TEXT NOT NULL, kek_id TEXT NOT NULL,
            created_at INTEGER NOT NULL);
        CREATE INDEX vaults_org ON vaults(org_id, created_at);
        CREATE TABLE keks (
            id TEXT PRIMARY KEY, vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            material BLOB NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE secrets (
            id TEXT PRIMARY KEY, vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            path TEXT NOT NULL, current_version INTEGER NOT NULL, deleted_at INTEGER,
            UNIQUE (vault_id, path));
        CREATE TABLE secret_versions (
            secret_id TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE, version INTEGER NOT NULL,
            type TEXT NOT NULL, metadata TEXT, rotation_policy TEXT, expires_at INTEGER,
            max_access_count INTEGER, access_count INTEGER NOT NULL DEFAULT 0,
            is_disabled INTEGER NOT NULL DEFAULT 0, is_deleted INTEGER NOT NULL DEFAULT 0,
            created_by TEXT NOT NULL, created_at INTEGER NOT NULL,
            kek_id TEXT NOT NULL, wrapped_dek BLOB NOT NULL, ciphertext BLOB NOT NULL,
            PRIMARY KEY (secret_id, version));
        CREATE TABLE system_values (key TEXT PRIMARY KEY, value BLOB NOT NULL);
        """,
        """
        CREATE TABLE agents (
            id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL, description TEXT,
            is_active INTEGER NOT NULL, scopes TEXT, vault_ids TEXT NOT NULL, token_ttl_seconds INTEGER,
            expires_at INTEGER, created_by TEXT NOT NULL, created_at INTEGER NOT NULL, key_prefix TEXT NOT NULL,
            key_digest BLOB NOT NULL, key_version INTEGER NOT NULL);
        CREATE INDEX agents_org ON agents(org_id, created_at);
        CREATE INDEX agents_key_prefix ON agents(key_prefix);
        CREATE TABLE user_api_keys (
            id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            org_id TEXT NOT NULL, name TEXT NOT NULL, key_prefix TEXT NOT NULL, key_digest BLOB NOT NULL,
            scopes TEXT, is_active INTEGER NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER);
        CREATE INDEX user_api_keys_user ON user_api_keys(user_id, created_at);
        CREATE INDEX user_api_keys_prefix ON user_api_keys(key_prefix);
        CREATE TABLE refresh_tokens (
            digest BLOB PRIMARY KEY, family TEXT NOT NULL, principal_type TEXT NOT NULL, principal_id TEXT NOT NULL,
            org_id TEXT NOT NULL, expires_at INTEGER NOT NULL, spent_at INTEGER);
        CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
        CREATE INDEX refresh_tokens_principal ON refresh_tokens(principal_type, principal_id);
        CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
        CREATE TABLE policies (
            id TEXT PRIMARY KEY, vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            pattern TEXT NOT NULL, principal_type TEXT NOT NULL, principal_id TEXT NOT NULL,
            permissions TEXT NOT NULL, conditions TEXT, expires_at INTEGER, effect TEXT NOT NULL,
            priority INTEGER NOT NULL, created_by TEXT NOT NULL, created_by_type TEXT NOT NULL,
            created_at INTEGER NOT NULL);
        CREATE INDEX policies_vault_principal ON policies(vault_id, principal_type, principal_id);
        CREATE INDEX policies_principal ON policies(principal_type, principal_id);
        CREATE TABLE invites (
            digest BLOB PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), email TEXT NOT NULL,
            role TEXT NOT NULL, created_by TEXT NOT NULL, expires_at INTEGER NOT NULL, redeemed_at INTEGER);
        """,
        """
        CREATE TABLE audit_events (
            id TEXT PRIMARY KEY, org_id TEXT NOT NULL, seq INTEGER NOT NULL, actor_type TEXT NOT NULL,
            actor_id TEXT, action TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT,
            details TEXT NOT NULL, ip_address TEXT, created_at INTEGER NOT NULL, prev_event_id TEXT,
            integrity_hash TEXT NOT NULL, UNIQUE (org_id, seq));
        CREATE INDEX audit_events_org_time ON audit_events(org_id, created_at);
        CREATE TABLE audit_heads (
            org_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL);
        """,
        """
        CREATE TABLE shares (
            id TEXT PRIMARY KEY, org_id TEXT NOT NULL, secret_id TEXT NOT NULL,
            vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE, path TEXT NOT NULL,
            created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, recipient_type TEXT NOT NULL,
            recipient_id TEXT, recipient_email TEXT, expires_at INTEGER NOT NULL, max_access_count INTEGER,
            access_count INTEGER NOT NULL DEFAULT 0, passphrase_hash TEXT, ip_allowlist TEXT NOT NULL,
            status TEXT NOT NULL, revoked_at INTEGER, created_at INTEGER NOT NULL);
        CREATE INDEX shares_creator ON shares(created_by_type, created_by, created_at);
        CREATE INDEX shares_recipient ON shares(recipient_id);
        CREATE INDEX shares_recipient_email ON shares(recipient_email);
        """,
        """
        ALTER TABLE refresh_tokens ADD COLUMN scopes TEXT;
        ALTER TABLE refresh_tokens ADD COLUMN api_key_id TEXT;
        ALTER TABLE refresh_tokens ADD COLUMN key_version INTEGER;
        """,
        // Read counts move out of the wide version rows into a narrow table keyed by a small integer: a read then
        // dirties one page shared by a few hundred versions instead of the version's own page, which cut the
        // pages each group commit writes to its WAL (and fsyncs) several times over.
        """
        CREATE TABLE version_reads (slot INTEGER PRIMARY KEY, count INTEGER NOT NULL);
        ALTER TABLE secret_versions ADD COLUMN read_slot INTEGER;
        UPDATE secret_versions SET read_slot = rowid;
        INSERT INTO version_reads (slot, count) SELECT read_slot, access_count FROM secret_versions;
        ALTER TABLE secret_versions DROP COLUMN access_count;
        CREATE TRIGGER secret_versions_reads AFTER DELETE ON secret_versions
        BEGIN DELETE FROM version_reads WHERE slot = old.read_slot; END;
        """,
        // Shares pin a version (NULL: the latest, as every share made before this did) and an `external_email`
        // share keeps its claim token's digest; the audit listing filtered by actor pages by sequence; a refresh
        // family ended by logout or reuse stays ended (no token may join it again); a share has a reference that
        // names it where its id (a link's credential) must not show.
        """
        ALTER TABLE shares ADD COLUMN version INTEGER;
        ALTER TABLE shares ADD COLUMN claim_digest BLOB;
        CREATE INDEX shares_org ON shares(org_id, created_at);
        CREATE INDEX shares_secret ON shares(secret_id);
        CREATE INDEX audit_events_org_actor ON audit_events(org_id, actor_id, seq);
        CREATE TABLE ended_refresh_families (family TEXT PRIMARY KEY, ended_at INTEGER NOT NULL);
        ALTER TABLE shares ADD COLUMN reference TEXT;
        UPDATE shares SET reference = id;
        CREATE UNIQUE INDEX shares_reference ON shares(reference);
        """,
    ]

    func migrate() async throws {
        try await transaction { db in
            try db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            let applied = try db.query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations", [])
                .first?.column("v")?.integer ?? 0
            for (index, migration) in Self.migrations.enumerated() where index + 1 > applied {
                try db.execute(migration)
                try db.query(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    [.int64(Int64(index + 1)), .int64(Timestamp.now.milliseconds)])
            }
        }
    }
}

// MARK: secrets

extension SQLiteStorage {
    static let versionColumns = """
        s.id AS secret_id, s.path, s.deleted_at, v.version, v.type, v.metadata, v.rotation_policy, v.expires_at,
        v.max_access_count, COALESCE((SELECT count FROM version_reads WHERE slot = v.read_slot), 0) AS access_count,
        v.is_disabled, v.is_deleted, v.created_by, v.created_at
        """

    public func writeVersion(
        _ new: NewSecretVersion, audit: AuditRecord, seal: @escaping @Sendable (Int) throws -> Data
    ) async throws -> SecretVersionInfo {
        try await transaction { db in
            // The KEK must still exist when the version commits (a retirement may have run since the vault was read).
            guard !(try db.query("SELECT id FROM keks WHERE id = ?", [.text(new.kekID)]).isEmpty) else {
                throw KeyholdError(.unavailable, "The vault's key changed during the write; retry the request")
            }
            // The next version of a live path (one statement on the common path; this connection is the only
            // writer), else the path's first: a deleted secret's row gives way, so a write to its path creates a
            // new secret (a new id, version 1).
            let next = try db.query(
                """
                UPDATE secrets SET current_version = current_version + 1
                WHERE vault_id = ? AND path = ? AND deleted_at IS NULL RETURNING id, current_version
                """, [.uuid(new.vaultID), .text(new.path)]
            ).first
            if next == nil {
                try db.query(
                    "DELETE FROM secrets WHERE vault_id = ? AND path = ? AND deleted_at IS NOT NULL",
                    [.uuid(new.vaultID), .text(new.path)])
            }
            guard let row = try next ?? db.query(
                "INSERT INTO secrets (id, vault_id, path, current_version) VALUES (?, ?, ?, 1) RETURNING id, current_version",
                [.uuid(UUID()), .uuid(new.vaultID), .text(new.path)]
            ).first else { throw StorageError.backend("secret row vanished") }
            let secretID = try row.uuid("id")
            let version = Int(try row.int("current_version"))
            var type = new.type
            if type == nil, version > 1 {
                type = try db.query(
                    "SELECT type FROM secret_versions WHERE secret_id = ? AND version = ?",
                    [.uuid(secretID), .int64(Int64(version - 1))]
                ).first.map { try StoredFields($0, table: "secret_versions").value("type") }
            }
            let info = SecretVersionInfo(
                secretID: secretID, path: new.path, version: version, type: type ?? .generic,
                metadata: new.metadata, rotationPolicy: new.rotationPolicy, expiresAt: new.expiresAt,
                maxAccessCount: new.maxAccessCount, accessCount: 0, isDisabled: false, isDeleted: false,
                createdBy: new.createdBy, createdAt: new.createdAt)
            guard let slot = try db.query("INSERT INTO version_reads (count) VALUES (0) RETURNING slot").first?
                .column("slot")?.integer
            else { throw StorageError.backend("no read counter for the new version") }
            try db.query(
                """
                INSERT INTO secret_versions (read_slot, secret_id, version, type, metadata, rotation_policy, expires_at,
                    max_access_count, created_by, created_at, kek_id, wrapped_dek, ciphertext)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .int64(Int64(slot)), .uuid(secretID), .int64(Int64(version)), .text(info.type.rawValue),
                    .optionalText(new.metadata?.jsonString()), .optionalText(new.rotationPolicy?.jsonString()),
                    .optionalInteger(new.expiresAt?.milliseconds), .optionalInteger(new.maxAccessCount.map(Int64.init)),
                    .uuid(new.createdBy), .int64(new.createdAt.milliseconds), .text(new.kekID),
                    .bytes(new.wrappedDataKey), .bytes(try seal(version)),
                ])
            try Self.append(db, audit.adding(["version": .number(Double(version))]))
            return info
        }
    }

    public func readVersion(vaultID: UUID, path: String, version: Int?, now: Timestamp, audit: AuditRecord) async throws
        -> SealedSecretVersion
    {
        try await transaction { db in
            let versionClause = version == nil ? "v.version = s.current_version" : "v.version = ?"
            var binds: [SQLiteData] = [.uuid(vaultID), .text(path)]
            if let version { binds.append(.int64(Int64(version))) }
            let sealed = try Self.countedRead(
                db, where: "s.vault_id = ? AND s.path = ? AND \(versionClause)", binds, now: now,
                missing: version == nil
                    ? KeyholdError.notFound("Secret not found") : KeyholdError.notFound("Secret version not found"))
            try Self.append(db, audit.adding(["version": .number(Double(sealed.info.version))]))
            return sealed
        }
    }

    /// Inside a transaction: reads one version for its value, refuses it when gone (410) and counts the access
    /// against `max_access_count` atomically.
    static func countedRead(
        _ db: SQLiteDB, where condition: String, _ binds: [SQLiteData], now: Timestamp, missing: KeyholdError
    ) throws -> SealedSecretVersion {
            guard let row = try db.query(
                """
                SELECT \(Self.versionColumns), v.read_slot, v.kek_id, v.wrapped_dek, v.ciphertext
                FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
                WHERE \(condition)
                """, binds
            ).first else { throw missing }
            let info = try StoredRecords.versionInfo(row)
            if let reason = info.goneReason(now: now) { throw KeyholdError.gone(reason) }
            let counted = try db.query(
                "UPDATE version_reads SET count = count + 1 WHERE slot = ?1 AND (?2 IS NULL OR count < ?2) RETURNING count",
                [.int64(try row.int("read_slot")), .optionalInteger(info.maxAccessCount.map(Int64.init))])
            guard let accessCount = try counted.first?.int("count") else {
                throw KeyholdError.gone("Secret has reached its maximum access count")
            }
            return SealedSecretVersion(
                info: info.with(accessCount: Int(accessCount)), kekID: try row.text("kek_id"),
                wrappedDataKey: try row.bytes("wrapped_dek"), ciphertext: try row.bytes("ciphertext"))
    }

    public func latestVersions(vaultID: UUID, prefix: String?, after: String?, limit: Int) async throws
        -> [SecretVersionInfo]
    {
        var sql = """
            SELECT \(Self.versionColumns) FROM secrets s
            JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version
            WHERE s.vault_id = ? AND s.deleted_at IS NULL
            """
        var binds: [SQLiteData] = [.uuid(vaultID)]
        if let prefix, !prefix.isEmpty {
            // A range the (vault_id, path) index serves: stored paths use only characters below '~'.
            sql += " AND s.path >= ? AND s.path < ? AND substr(s.path, 1, ?) = ?"
            binds += [.text(prefix), .text(prefix + "~"), .int64(Int64(prefix.utf8.count)), .text(prefix)]
        }
        if let after {
            sql += " AND s.path > ?"
            binds.append(.text(after))
        }
        binds.append(.int64(Int64(limit)))
        let (query, values) = (sql + " ORDER BY s.path LIMIT ?", binds)
        return try await read { try $0.query(query, values).map(StoredRecords.versionInfo) }
    }

    public func versions(vaultID: UUID, path: String) async throws -> [SecretVersionInfo] {
        try await read { try $0.query(
            """
            SELECT \(Self.versionColumns) FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
            WHERE s.vault_id = ? AND s.path = ? ORDER BY v.version
            """, [.uuid(vaultID), .text(path)]
        ).map(StoredRecords.versionInfo) }
    }

    public func disableVersion(vaultID: UUID, path: String, version: Int, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                """
                UPDATE secret_versions SET is_disabled = 1
                WHERE version = ? AND secret_id = (SELECT id FROM secrets WHERE vault_id = ? AND path = ?)
                RETURNING version
                """, [.int64(Int64(version)), .uuid(vaultID), .text(path)]
            ).isEmpty) else { return false }
            try Self.append(db, audit)
            return true
        }
    }

    public func deleteSecret(vaultID: UUID, path: String, at time: Timestamp, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard let row = try db.query(
                """
                UPDATE secrets SET deleted_at = ? WHERE vault_id = ? AND path = ? AND deleted_at IS NULL
                RETURNING id
                """, [.int64(time.milliseconds), .uuid(vaultID), .text(path)]
            ).first else { return false }
            let secretID = try row.uuid("id")
            try db.query("UPDATE secret_versions SET is_deleted = 1 WHERE secret_id = ?", [.uuid(secretID)])
            try db.query(
                "UPDATE shares SET revoked_at = ? WHERE secret_id = ? AND revoked_at IS NULL",
                [.int64(time.milliseconds), .uuid(secretID)])
            try Self.append(db, audit)
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

// MARK: row helpers

extension SQLiteData {
    static func uuid(_ id: UUID) -> SQLiteData { .text(id.wire) }
    static func optionalText(_ text: String?) -> SQLiteData { text.map(SQLiteData.text) ?? .null }
    static func int64(_ value: Int64) -> SQLiteData { .integer(Int(value)) }
    static func optionalInteger(_ value: Int64?) -> SQLiteData { value.map(SQLiteData.int64) ?? .null }
    static func bytes(_ data: Data) -> SQLiteData { .blob(ByteBuffer(bytes: data)) }
}

extension SQLiteDB.Row {
    func text(_ name: String) throws -> String {
        guard let value = column(name)?.string else { throw StorageError.backend("column \(name) is not text") }
        return value
    }

    func int(_ name: String) throws -> Int64 {
        guard let value = column(name)?.integer else { throw StorageError.backend("column \(name) is not an integer") }
        return Int64(value)
    }

    func uuid(_ name: String) throws -> UUID {
        guard let value = UUID(fast: try text(name)) else { throw StorageError.backend("column \(name) is not a UUID") }
        return value
    }

    func timestamp(_ name: String) throws -> Timestamp { Timestamp(milliseconds: try int(name)) }

    func bytes(_ name: String) throws -> Data {
        guard let buffer = column(name)?.blob else { throw StorageError.backend("column \(name) is not a blob") }
        return Data(buffer.readableBytesView)
    }
}

/// SQLite's dynamic types as the schema uses them: ids are text, flags integers 0 or 1, instants integers.
extension SQLiteDB.Row: StoredRow {
    struct WrongType: Error {}

    public func storedText(_ name: String) throws -> String? {
        switch column(name) {
        case nil, .null?: nil
        case .text(let value)?: value
        default: throw WrongType()
        }
    }

    public func storedInteger(_ name: String) throws -> Int64? {
        switch column(name) {
        case nil, .null?: nil
        case .integer(let value)?: Int64(value)
        default: throw WrongType()
        }
    }

    public func storedBoolean(_ name: String) throws -> Bool? {
        switch try storedInteger(name) {
        case nil: nil
        case 0?: false
        case 1?: true
        default: throw WrongType()
        }
    }

    public func storedUUID(_ name: String) throws -> UUID? {
        guard let text = try storedText(name) else { return nil }
        guard let id = UUID(fast: text) else { throw WrongType() }
        return id
    }

    public func storedBytes(_ name: String) throws -> Data? {
        switch column(name) {
        case nil, .null?: nil
        case .blob(let buffer)?: Data(buffer.readableBytesView)
        default: throw WrongType()
        }
    }
}

import Foundation
import KeyholdCore
import KeyholdSQL
import Logging
import NIOCore
import SQLiteNIO

/// The embedded default backend: one SQLite file in WAL mode with `synchronous=FULL`, so a commit is on disk
/// before the response. All writes go through one connection on one thread, in groups (see `GroupCommitter`);
/// plain reads use a small pool of reader connections, run inline on the calling task, and see the last committed
/// state.
public final class SQLiteStorage: SQLStore, @unchecked Sendable {
    let writer: SQLiteDatabase
    /// The database file.
    public let path: String

    public static func open(path: String, logger: Logger) async throws -> SQLiteStorage {
        let writer = try SQLiteDB(path: path, bufferedLog: true)
        try writer.execute("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON")
        writer.trackAuthorizationWrites()
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
        self.writer = SQLiteDatabase(committer: GroupCommitter(connection: writer), readers: ReaderPool(path: path))
        super.init(database: self.writer)
    }

    /// Moves when a commit may have changed what authorization reads (see `AuthorizationCache`).
    public var authorizationClock: AuthorizationClock { writer.committer.clock }

    public override func close() async throws {
        await writer.committer.stop()
        writer.readers.close()
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

    /// SQLite's own migrations (1–7), then the shared ones in SQLite's spelling.
    public static let history = migrations + Schema.migrations.map {
        Schema.migration(
            $0, types: [.uuid: "TEXT", .int: "INTEGER", .bool: "INTEGER", .blob: "BLOB", .path: "TEXT"],
            authorizationTriggers: "")
    }

    func migrate() async throws {
        try await writer.writing { db in
            try db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            let applied = try db.rows("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").first
                .map { try StoredFields($0, table: "schema_migrations").int("v") } ?? 0
            for (index, migration) in Self.history.enumerated() where index + 1 > applied {
                try db.execute(migration)
                try db.rows(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    [.int(index + 1), .time(.now)])
            }
        }
    }
}

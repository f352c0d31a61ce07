import Foundation
import KeyholdCore
import KeyholdSQL
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The shared backend: one PostgreSQL database that any number of Keyhold nodes use at once. Every change runs in
/// one READ COMMITTED transaction whose row locks give the same guarantees as the SQLite adapter's single writer:
/// version numbers 1…N per path, exact access counts, one linear audit chain per org, at most one last owner
/// demoted. Plain reads go through the pool and see the last committed state.
public final class PostgresStorage: SQLStore, @unchecked Sendable {
    let runTask: Task<Void, Never>
    /// `postgres://user@host:port/database`: the URL without its password, safe to log.
    public let url: String
    /// The database name.
    public let databaseName: String

    /// Connects, applies pending migrations and returns the storage. A wrong password or an unreachable server
    /// fails here within seconds, with an error that names the problem (never the password).
    ///
    /// The pool runs in a task of its own until `close()`.
    /// `connectTimeout` bounds each connection attempt (start-up's first one fails after it plus 2 s); a test
    /// suite that opens many databases at once on a busy machine passes a longer one.
    public static func open(
        url: String, logger: Logger, maximumConnections: Int = 20, connectTimeout: Int = connectTimeoutSeconds
    ) async throws -> PostgresStorage {
        let location = try DatabaseURL(parsing: url)
        var logger = logger
        if logger.logLevel < .debug { logger.logLevel = .debug }
        // One connection first, outside the pool (which would retry a bad password or host silently for a long
        // time); the migrations run on it, before any node serves a request.
        let connection = try await connect(location, logger: logger, timeout: connectTimeout)
        do {
            try await migrate(connection, logger: logger)
        } catch {
            try? await connection.close()
            throw translate(unwrap(error))
        }
        try? await connection.close()

        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.username, password: location.password,
            database: location.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(Int64(connectTimeout))
        configuration.options.maximumConnections = max(1, maximumConnections)
        configuration.options.additionalStartupParameters = startupParameters
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let (started, signal) = AsyncStream<Never>.makeStream()
        let runTask = Task {
            signal.finish()
            await client.run()
        }
        for await _ in started {}
        return PostgresStorage(
            database: PostgresDatabase(client: client, logger: logger), runTask: runTask, url: location.redacted,
            databaseName: location.database)
    }

    init(database: PostgresDatabase, runTask: Task<Void, Never>, url: String, databaseName: String) {
        self.runTask = runTask
        self.url = url
        self.databaseName = databaseName
        super.init(database: database)
    }

    /// Shuts the pool down and closes its connections (queries still running fail): call it once requests have
    /// drained. Calling it again does nothing. Bounded: a pool that has not wound down after `closeTimeout` (a
    /// connection attempt or a query that does not answer) is left to the process's exit, which closes its sockets,
    /// so a SIGTERM always ends the server.
    public override func close() async throws {
        runTask.cancel()
        let runTask = self.runTask
        let closed = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let first = FirstAnswer(continuation)
            Task { await runTask.value; first.resume(true) }
            Task { try? await Task.sleep(for: Self.closeTimeout); first.resume(false) }
        }
        if !closed, let logger = (database as? PostgresDatabase)?.logger {
            logger.warning(
                "The database pool did not close in time; its connections end with the process",
                metadata: ["keyhold.database": .string(url)])
        }
    }

    static let closeTimeout = Duration.seconds(10)

    /// Resumes a continuation with the first answer it is given and ignores the rest.
    final class FirstAnswer: Sendable {
        let continuation: Mutex<CheckedContinuation<Bool, Never>?>
        init(_ continuation: CheckedContinuation<Bool, Never>) { self.continuation = Mutex(continuation) }
        func resume(_ value: Bool) { continuation.withLock { $0?.resume(returning: value); $0 = nil } }
    }

    public static let connectTimeoutSeconds = 5
    /// Every session runs READ COMMITTED whatever the server's default: the locking below is written for it.
    static let startupParameters = [
        ("application_name", "keyhold"), ("default_transaction_isolation", "read committed"),
    ]

    /// One connection, made before the pool exists: the pool retries failed connections silently for a long
    /// time, so a bad password or host would otherwise only show as requests that hang.
    static func connect(_ location: DatabaseURL, logger: Logger, timeout: Int = connectTimeoutSeconds) async throws
        -> PostgresConnection
    {
        var options = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.username, password: location.password,
            database: location.database, tls: .disable)
        options.options.connectTimeout = .seconds(Int64(timeout))
        options.options.additionalStartupParameters = startupParameters
        let configuration = options
        let target = "PostgreSQL at \(location.redacted)"
        let outcome: Result<PostgresConnection, any Error>? = await withTaskGroup(
            of: Result<PostgresConnection, any Error>?.self
        ) { group in
            group.addTask {
                do {
                    return .success(
                        try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(timeout + 2))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            // A connection that arrives after the deadline is closed, not leaked.
            for await late in group { if case .success(let connection)? = late { try? await connection.close() } }
            return first
        }
        switch outcome {
        case nil:
            throw PostgresStorageError(
                "Cannot connect to \(target): no answer within \(timeout + 2) seconds")
        case .failure(let error)?:
            throw PostgresStorageError("Cannot connect to \(target): \(describeConnectFailure(error))")
        case .success(let connection)?:
            return connection
        }
    }

    static func describeConnectFailure(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let state = error.serverInfo?[.sqlState] {
            let message = error.serverInfo?[.message] ?? "the server refused the connection"
            switch state {
            case "28P01", "28000": return "authentication failed: \(message) (SQLSTATE \(state))"
            case "3D000": return "the database does not exist: \(message) (SQLSTATE \(state))"
            default: return "\(message) (SQLSTATE \(state))"
            }
        }
        switch error.code {
        case .connectionError:
            return "the server cannot be reached" + (error.underlying.map { " (\($0))" } ?? "")
        case .unsupportedAuthMechanism, .authMechanismRequiresPassword:
            return "the server asks for an authentication method that is not supported (\(error.code))"
        default:
            return "\(error.code)" + (error.underlying.map { " (\($0))" } ?? "")
        }
    }

    static func unwrap(_ error: any Error) -> any Error {
        guard let error = error as? PostgresTransactionError else { return error }
        return error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError ?? error
    }

    /// PostgreSQL failures as storage errors: a unique violation is a `conflict`, a NUL character (which
    /// PostgreSQL text cannot hold) a 400; anything else `backend`, with SQLSTATE and message for the logs.
    static func translate(_ error: any Error) -> any Error {
        if let error = error as? PSQLError {
            guard let state = error.serverInfo?[.sqlState] else {
                return StorageError.backend(
                    "PostgreSQL: \(error.code)" + (error.underlying.map { " (\($0))" } ?? ""))
            }
            switch state {
            case "23505": return StorageError.conflict
            case "22021", "22P05": return KeyholdError.badRequest("Text values must not contain NUL characters")
            default: return StorageError.backend("PostgreSQL \(state): \(error.serverInfo?[.message] ?? "")")
            }
        }
        if let error = error as? PostgresDecodingError {
            return StorageError.backend(
                "PostgreSQL: column \(error.columnName) (\(error.postgresType)) is not a \(error.targetType)")
        }
        return error
    }

    // MARK: migrations

    /// Arbitrary, fixed: "Keyhold" in ASCII. Held (per transaction) while migrating, so that nodes starting
    /// together apply each migration once: the others wait, then find nothing left to do.
    static let migrationLock: Int64 = 21_222_195_370_880_100

    /// The schema, version by version: append, never edit. Ids are `uuid`, instants `bigint` milliseconds,
    /// binary `bytea`, flags `boolean`; JSON lists and objects are `text`, exactly as the SQLite adapter keeps
    /// them. Paths and KEK ids sort bytewise (`COLLATE "C"`), as in SQLite.
    public static let migrations: [String] = [
        """
        CREATE TABLE orgs (id uuid PRIMARY KEY, name text NOT NULL, created_at bigint NOT NULL);
        CREATE TABLE users (
            id uuid PRIMARY KEY, org_id uuid NOT NULL REFERENCES orgs(id), email text NOT NULL UNIQUE,
            password_hash text NOT NULL, display_name text, role text NOT NULL, created_at bigint NOT NULL);
        CREATE INDEX users_org ON users(org_id, created_at);
        CREATE TABLE vaults (
            id uuid PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL, description text,
            created_by uuid NOT NULL, created_by_type text NOT NULL, kek_id text COLLATE "C" NOT NULL,
            created_at bigint NOT NULL);
        CREATE INDEX vaults_org ON vaults(org_id, created_at);
        CREATE INDEX vaults_kek ON vaults(kek_id);
        CREATE TABLE keks (
            id text COLLATE "C" PRIMARY KEY, vault_id uuid NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            material bytea NOT NULL, created_at bigint NOT NULL);
        CREATE INDEX keks_vault ON keks(vault_id);
        CREATE TABLE secrets (
            id uuid PRIMARY KEY, vault_id uuid NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            path text COLLATE "C" NOT NULL, current_version bigint NOT NULL, deleted_at bigint,
            UNIQUE (vault_id, path));
        CREATE TABLE secret_versions (
            secret_id uuid NOT NULL REFERENCES secrets(id) ON DELETE CASCADE, version bigint NOT NULL,
            type text NOT NULL, metadata text, rotation_policy text, expires_at bigint,
            max_access_count bigint, access_count bigint NOT NULL DEFAULT 0,
            is_disabled boolean NOT NULL DEFAULT false, is_deleted boolean NOT NULL DEFAULT false,
            created_by uuid NOT NULL, created_at bigint NOT NULL,
            kek_id text COLLATE "C" NOT NULL, wrapped_dek bytea NOT NULL, ciphertext bytea NOT NULL,
            PRIMARY KEY (secret_id, version));
        CREATE INDEX secret_versions_kek ON secret_versions(kek_id);
        CREATE TABLE system_values (key text PRIMARY KEY, value bytea NOT NULL);
        CREATE TABLE agents (
            id uuid PRIMARY KEY, org_id uuid NOT NULL REFERENCES orgs(id), name text NOT NULL, description text,
            is_active boolean NOT NULL, scopes text, vault_ids text NOT NULL, token_ttl_seconds bigint,
            expires_at bigint, created_by uuid NOT NULL, created_at bigint NOT NULL, key_prefix text NOT NULL,
            key_digest bytea NOT NULL, key_version bigint NOT NULL);
        CREATE INDEX agents_org ON agents(org_id, created_at);
        CREATE INDEX agents_key_prefix ON agents(key_prefix);
        CREATE TABLE user_api_keys (
            id uuid PRIMARY KEY, user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            org_id uuid NOT NULL, name text NOT NULL, key_prefix text NOT NULL, key_digest bytea NOT NULL,
            scopes text, is_active boolean NOT NULL, created_at bigint NOT NULL, expires_at bigint);
        CREATE INDEX user_api_keys_user ON user_api_keys(user_id, created_at);
        CREATE INDEX user_api_keys_prefix ON user_api_keys(key_prefix);
        CREATE TABLE refresh_tokens (
            digest bytea PRIMARY KEY, family uuid NOT NULL, principal_type text NOT NULL,
            principal_id uuid NOT NULL, org_id uuid NOT NULL, expires_at bigint NOT NULL, spent_at bigint,
            scopes text, api_key_id uuid, key_version bigint);
        CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
        CREATE INDEX refresh_tokens_principal ON refresh_tokens(principal_type, principal_id);
        CREATE TABLE revoked_tokens (jti text PRIMARY KEY, expires_at bigint NOT NULL);
        CREATE INDEX revoked_tokens_expiry ON revoked_tokens(expires_at);
        CREATE TABLE policies (
            id uuid PRIMARY KEY, vault_id uuid NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            pattern text NOT NULL, principal_type text NOT NULL, principal_id uuid NOT NULL,
            permissions text NOT NULL, conditions text, expires_at bigint, effect text NOT NULL,
            priority bigint NOT NULL, created_by uuid NOT NULL, created_by_type text NOT NULL,
            created_at bigint NOT NULL);
        CREATE INDEX policies_vault_principal ON policies(vault_id, principal_type, principal_id);
        CREATE INDEX policies_principal ON policies(principal_type, principal_id);
        CREATE TABLE invites (
            digest bytea PRIMARY KEY, org_id uuid NOT NULL REFERENCES orgs(id), email text NOT NULL,
            role text NOT NULL, created_by uuid NOT NULL, expires_at bigint NOT NULL, redeemed_at bigint);
        CREATE TABLE audit_events (
            id uuid PRIMARY KEY, org_id uuid NOT NULL, seq bigint NOT NULL, actor_type text NOT NULL,
            actor_id text, action text NOT NULL, resource_type text NOT NULL, resource_id text,
            details text NOT NULL, ip_address text, created_at bigint NOT NULL, prev_event_id uuid,
            integrity_hash text NOT NULL, UNIQUE (org_id, seq));
        CREATE INDEX audit_events_org_time ON audit_events(org_id, created_at);
        CREATE TABLE audit_heads (
            org_id uuid PRIMARY KEY, event_id uuid, seq bigint NOT NULL, hash text NOT NULL);
        CREATE TABLE shares (
            id uuid PRIMARY KEY, org_id uuid NOT NULL, secret_id uuid NOT NULL,
            vault_id uuid NOT NULL REFERENCES vaults(id) ON DELETE CASCADE, path text NOT NULL,
            created_by_type text NOT NULL, created_by uuid NOT NULL, recipient_type text NOT NULL,
            recipient_id uuid, recipient_email text, expires_at bigint NOT NULL, max_access_count bigint,
            access_count bigint NOT NULL DEFAULT 0, passphrase_hash text, ip_allowlist text NOT NULL,
            status text NOT NULL, revoked_at bigint, created_at bigint NOT NULL);
        CREATE INDEX shares_creator ON shares(created_by_type, created_by, created_at);
        CREATE INDEX shares_recipient ON shares(recipient_id);
        CREATE INDEX shares_recipient_email ON shares(recipient_email);
        CREATE INDEX shares_vault ON shares(vault_id)
        """,
        // Shares pin a version (NULL: the latest, as every share made before this did) and an `external_email`
        // share keeps its claim token's digest; the audit listing filtered by actor pages by sequence; a refresh
        // family ended by logout or reuse stays ended (no token may join it again); a share has a reference that
        // names it where its id (a link's credential) must not show.
        """
        ALTER TABLE shares ADD COLUMN version bigint;
        ALTER TABLE shares ADD COLUMN claim_digest bytea;
        CREATE INDEX shares_org ON shares(org_id, created_at);
        CREATE INDEX shares_secret ON shares(secret_id);
        CREATE INDEX audit_events_org_actor ON audit_events(org_id, actor_id, seq);
        CREATE TABLE ended_refresh_families (family uuid PRIMARY KEY, ended_at bigint NOT NULL);
        ALTER TABLE shares ADD COLUMN reference uuid;
        UPDATE shares SET reference = id;
        CREATE UNIQUE INDEX shares_reference ON shares(reference)
        """,
        // Read counts move out of the version rows into a narrow table, as in SQLite's migration 6, so that both
        // backends run the same statements. The trigger (one statement: it is not split) deletes a version's counter
        // with the version.
        """
        CREATE TABLE version_reads (slot bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, count bigint NOT NULL);
        ALTER TABLE secret_versions ADD COLUMN read_slot bigint;
        UPDATE secret_versions SET read_slot = nextval(pg_get_serial_sequence('version_reads', 'slot'));
        INSERT INTO version_reads (slot, count) SELECT read_slot, access_count FROM secret_versions;
        ALTER TABLE secret_versions DROP COLUMN access_count;
        CREATE FUNCTION keyhold_drop_version_reads() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN DELETE FROM version_reads WHERE slot = OLD.read_slot; RETURN OLD; END $$;
        CREATE TRIGGER secret_versions_reads AFTER DELETE ON secret_versions
            FOR EACH ROW EXECUTE FUNCTION keyhold_drop_version_reads()
        """,
    ]

    /// PostgreSQL's own migrations (1–3), nothing for 4–7 (its first migrations made what SQLite's 2–7 made), then
    /// the shared ones in PostgreSQL's spelling.
    public static let history = migrations + Array(repeating: "", count: Schema.sharedFrom - 1 - migrations.count)
        + Schema.migrations.map {
            Schema.migration(
                $0, types: [.uuid: "uuid", .int: "bigint", .bool: "boolean", .blob: "bytea", .path: #"text COLLATE "C""#],
                authorizationTriggers: authorizationTriggers)
        }

    /// Moves `authorization_epoch` in the transaction of any change to a table authorization reads. Deferred to
    /// commit, so the counter's row lock is the last one a transaction takes (no lock cycle with the rows it
    /// changed) and is held only while it commits; a TRUNCATE, which row triggers do not see, moves it too. The new
    /// value is random, not the next number: after a failover to a standby that lost commits, or a restore, the same
    /// count could name another state, while a random 64-bit value names one state (a restored epoch comes with the
    /// rows it was read with). `ENABLE ALWAYS`: the triggers fire under `session_replication_role = replica` too.
    static let authorizationTriggers = """
        CREATE FUNCTION keyhold_authorization_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE authorization_epoch SET epoch = ('x' || substr(md5(gen_random_uuid()::text), 1, 16))::bit(64)::bigint
            WHERE id = 1;
            RETURN NULL;
        END $$;
        """ + Schema.authorizationTables.map { table in
            """
            CREATE CONSTRAINT TRIGGER \(table)_authorization AFTER INSERT OR UPDATE OR DELETE ON \(table)
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keyhold_authorization_changed();
            CREATE TRIGGER \(table)_authorization_truncate AFTER TRUNCATE ON \(table)
                FOR EACH STATEMENT EXECUTE FUNCTION keyhold_authorization_changed();
            ALTER TABLE \(table) ENABLE ALWAYS TRIGGER \(table)_authorization;
            ALTER TABLE \(table) ENABLE ALWAYS TRIGGER \(table)_authorization_truncate;
            """
        }.joined(separator: "\n")

    /// A migration's statements: split at each `;` outside a `$$ … $$` body.
    public static func statements(_ migration: String) -> [Substring] {
        var statements: [Substring] = []
        var start = migration.startIndex
        var inBody = false
        var index = migration.startIndex
        while index < migration.endIndex {
            if migration[index...].hasPrefix("$$") {
                inBody.toggle()
                index = migration.index(index, offsetBy: 2)
                continue
            }
            if migration[index] == ";", !inBody {
                statements.append(migration[start..<index])
                start = migration.index(after: index)
            }
            index = migration.index(after: index)
        }
        statements.append(migration[start...])
        return statements
    }

    /// Applies the pending migrations in one transaction that holds the migration lock.
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws {
        let applied = try await connection.withTransaction(logger: logger) { connection -> Int64 in
            let db = DB(connection: connection, logger: logger)
            try await db.execute("SELECT pg_advisory_xact_lock(\(Self.migrationLock))")
            try await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, applied_at bigint NOT NULL)")
            let applied = try await db.query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
                .first.map { try StoredFields($0, table: "schema_migrations").int("v") } ?? 0
            for (index, migration) in Self.history.enumerated() where index + 1 > applied {
                for statement in Self.statements(migration) {
                    let sql = statement.trimmingCharacters(in: .whitespacesAndNewlines)
                    if !sql.isEmpty { try await db.execute(PostgresQuery(unsafeSQL: sql)) }
                }
                try await db.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (\(index + 1), \(Timestamp.now.milliseconds))")
            }
            return applied
        }
        if applied > Self.history.count {
            logger.warning(
                "The database schema is newer than this Keyhold",
                metadata: [
                    "keyhold.schema_version": "\(applied)", "keyhold.known_schema_version": "\(Self.history.count)",
                ])
        }
    }
}

/// A start-up failure of the PostgreSQL backend. Its description names the problem and never holds the password.
public struct PostgresStorageError: Error, CustomStringConvertible, LocalizedError {
    public let description: String

    init(_ description: String) { self.description = description }

    public var errorDescription: String? { description }
}

// MARK: the database URL

/// `postgres://user:password@host:port/database` (or `postgresql://`), user, password and database
/// percent-decoded. `sslmode=disable` (or `prefer`/`allow`) is accepted; TLS is not used.
struct DatabaseURL: Sendable {
    var host: String
    var port: Int
    var username: String
    var password: String?
    var database: String

    /// The URL without the password.
    var redacted: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        let user = username.addingPercentEncoding(withAllowedCharacters: Self.unreserved) ?? "?"
        let database = database.addingPercentEncoding(withAllowedCharacters: Self.unreserved) ?? "?"
        return "postgres://\(user)@\(host):\(port)/\(database)"
    }

    static let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")

    init(parsing url: String) throws {
        func invalid(_ problem: String) -> PostgresStorageError {
            PostgresStorageError("The database URL is not usable: \(problem) (expected postgres://user:password@host:port/database)")
        }
        var rest: Substring
        if url.hasPrefix("postgres://") {
            rest = url.dropFirst("postgres://".count)
        } else if url.hasPrefix("postgresql://") {
            rest = url.dropFirst("postgresql://".count)
        } else {
            throw invalid("it does not start with postgres:// or postgresql://")
        }
        // The credentials end at the last '@', so that an unencoded '@', ':' or '/' in a password still works.
        var user: Substring = ""
        var password: Substring?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = credentials[..<colon]
                password = credentials[credentials.index(after: colon)...]
            } else {
                user = credentials
            }
        }
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var host = rest
        var port = 5432
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw invalid("an IPv6 host lacks its ']'") }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()) else { throw invalid("bad port") }
                port = value
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let value = Int(host[host.index(after: colon)...]) else { throw invalid("bad port") }
            port = value
            host = host[..<colon]
        }
        guard (1...65535).contains(port) else { throw invalid("bad port") }
        guard !host.isEmpty else { throw invalid("no host") }
        guard let username = String(user).removingPercentEncoding, !username.isEmpty else {
            throw invalid("no user name, or one with a broken percent-escape")
        }
        var decodedPassword: String?
        if let password {
            guard let value = String(password).removingPercentEncoding else {
                throw invalid("the password has a broken percent-escape")
            }
            decodedPassword = value
        }
        guard let database = String(path).removingPercentEncoding else {
            throw invalid("the database name has a broken percent-escape")
        }
        for parameter in query.split(separator: "&") {
            let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.first == "sslmode" else { continue }
            let mode = pair.count > 1 ? String(pair[1]) : ""
            guard ["disable", "allow", "prefer"].contains(mode) else {
                throw invalid("sslmode=\(mode.prefix(16)) is not supported: TLS is not used, connect over loopback or a private network")
            }
        }
        self.host = String(host)
        self.port = port
        self.username = username
        self.password = decodedPassword
        self.database = database.isEmpty ? username : database
    }
}

// MARK: queries

/// A connection inside a transaction.
struct DB {
    let connection: PostgresConnection
    let logger: Logger

    func query(_ query: PostgresQuery) async throws -> [StoredRow] {
        try await connection.query(query, logger: logger).collect().map(Self.storedRow)
    }

    func execute(_ query: PostgresQuery) async throws {
        _ = try await connection.query(query, logger: logger).collect()
    }
}

import Foundation
import KeyholdCore
import KeyholdSQLite
import KeyholdPostgres
import Logging
import PostgresNIO
import SQLiteNIO
import Testing

/// Rows fail closed: a guarded field planted with SQL (an operator, a restored and edited backup) that does not
/// decode to what it must hold makes the read throw `StoredDataError` naming its table and column; it is never read
/// with a default. Run against every backend; a case whose bad value the column's type refuses (PostgreSQL's typed
/// columns) plants it on SQLite only.
extension StorageConformanceTests {
    struct Tamper: Sendable, CustomTestStringConvertible {
        let table: String
        let column: String
        /// The SQL literal planted in the column.
        let value: String
        /// Whether PostgreSQL's column type accepts the literal at all.
        var onPostgres = true

        var testDescription: String { "\(table).\(column) = \(value)" }
    }

    static let tampers: [Tamper] = [
        Tamper(table: "users", column: "role", value: "'superuser'"),
        Tamper(table: "invites", column: "role", value: "'root'"),
        Tamper(table: "vaults", column: "created_by_type", value: "'robot'"),
        Tamper(table: "agents", column: "vault_ids", value: #"'["not-a-uuid"]'"#),
        Tamper(table: "agents", column: "vault_ids", value: "'{}'"),
        Tamper(table: "agents", column: "scopes", value: #"'["prod/**", 7]'"#),
        Tamper(table: "agents", column: "is_active", value: "2", onPostgres: false),
        Tamper(table: "agents", column: "expires_at", value: "'never'", onPostgres: false),
        Tamper(table: "agents", column: "token_ttl_seconds", value: "-5"),
        Tamper(table: "agents", column: "environment", value: "'Production'"),
        Tamper(table: "agents", column: "environment", value: "'x'"),
        Tamper(table: "agents", column: "environment_locked", value: "2", onPostgres: false),
        Tamper(table: "agents", column: "api_key_expires_at", value: "'never'", onPostgres: false),
        Tamper(table: "agents", column: "intents_api_enabled", value: "2", onPostgres: false),
        Tamper(table: "agents", column: "identity_key_history", value: "'{}'"),
        Tamper(table: "agents", column: "identity_key_history", value: #"'[{"ssh_public_key": "x"}]'"#),
        Tamper(table: "user_api_keys", column: "scopes", value: "'not json'"),
        Tamper(table: "refresh_tokens", column: "principal_type", value: "'robot'"),
        Tamper(table: "policies", column: "principal_type", value: "'robot'"),
        Tamper(table: "policies", column: "effect", value: "'allow_all'"),
        Tamper(table: "policies", column: "permissions", value: #"'["read", "admin"]'"#),
        Tamper(table: "policies", column: "pattern", value: "''"),
        Tamper(table: "policies", column: "conditions", value: #"'{"ip_allowlist": ["10.0.0.0/99"]}'"#),
        Tamper(table: "policies", column: "conditions", value: #"'{"anywhere": true}'"#),
        Tamper(table: "shares", column: "recipient_type", value: "'everyone'"),
        Tamper(table: "shares", column: "status", value: "'approved'"),
        Tamper(table: "shares", column: "ip_allowlist", value: #"'["10.0.0.0/8", "anywhere"]'"#),
        Tamper(table: "shares", column: "recipient_id", value: "'nobody'", onPostgres: false),
        Tamper(table: "secret_versions", column: "type", value: "'mystery'"),
        Tamper(table: "secret_versions", column: "is_disabled", value: "7", onPostgres: false),
        Tamper(table: "audit_events", column: "actor_type", value: "'god'"),
        Tamper(table: "audit_events", column: "details", value: "'[]'"),
        Tamper(table: "ip_rules", column: "cidr", value: "'anywhere'"),
        Tamper(table: "ip_rules", column: "cidr", value: "'10.0.0.0/33'"),
        Tamper(table: "ip_rules", column: "rule_type", value: "'block'"),
        Tamper(table: "ip_rules", column: "applies_to", value: "'nobody'"),
    ]

    static var tamperCases: [(Backend, Tamper)] {
        Backend.enabled.flatMap { backend in
            tampers.filter { backend == .sqlite || $0.onPostgres }.map { (backend, $0) }
        }
    }

    @Test(arguments: tamperCases)
    func aStoredRowThatDoesNotDecodeIsRefused(_ backend: Backend, _ tamper: Tamper) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let g = try await plantGrants(f)  // one row of every guarded table

            try await backend.execute(f.storage, "UPDATE \(tamper.table) SET \(tamper.column) = \(tamper.value)")

            let expected = StoredDataError(table: tamper.table, column: tamper.column, problem: "")
            do {
                try await read(tamper.table, f, agent: g.agent, key: g.key, link: g.link)
                Issue.record("the tampered row was read")
            } catch let error as StoredDataError {
                #expect(error.table == expected.table && error.column == expected.column, "\(error)")
            }
        }
    }

    /// Reads the planted row back the way the server does.
    private func read(_ table: String, _ f: Fixture, agent: Agent, key: UserAPIKey, link: Share) async throws {
        switch table {
        case "users": _ = try await f.storage.user(id: f.owner.id)
        case "invites": _ = try await f.storage.invite(digest: Data([42]))
        case "vaults": _ = try await f.storage.vault(id: f.vault.id, orgID: f.org.id)
        case "agents": _ = try await f.storage.agent(id: agent.id)
        case "user_api_keys": _ = try await f.storage.apiKey(id: key.id)
        case "refresh_tokens": _ = try await f.storage.spendRefreshToken(digest: Data([7]), now: .now)
        case "policies": _ = try await f.storage.policies(vaultID: f.vault.id)
        case "shares": _ = try await f.storage.share(id: link.id)
        case "secret_versions": _ = try await f.storage.versions(vaultID: f.vault.id, path: "shared/key")
        case "audit_events": _ = try await f.storage.auditEvents(orgID: AuditEntry.systemOrg, filter: AuditFilter())
        case "ip_rules": _ = try await f.storage.ipRules(orgID: f.org.id)
        default: Issue.record("no reader for \(table)")
        }
    }
}

extension Backend {
    /// Runs one statement on the storage's database from outside Keyhold, as an operator with database access would.
    func execute(_ storage: any Storage, _ sql: String) async throws {
        switch self {
        case .sqlite:
            let path = try #require((storage as? SQLiteStorage)?.path)
            let connection = try await SQLiteConnection.open(storage: .file(path: path))
            do {
                _ = try await connection.query(sql, [])
            } catch {
                try await connection.close()
                throw error
            }
            try await connection.close()
        case .postgres:
            let url = try #require(Self.databaseURL)
            try await Self.postgresAdmin(url, database: try #require((storage as? PostgresStorage)?.databaseName)) {
                _ = try await $0.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test"))
            }
        }
    }
}

import Foundation
import KeyholdCore
import KeyholdPostgres
import Logging
import PostgresNIO
import Testing

/// A PostgreSQL database made by an earlier release opens with the current one and keeps what it held.
@Suite struct PostgresMigrationTests {
    /// Read counts moved from `secret_versions.access_count` to `version_reads` (migration 3, as SQLite's 6): the
    /// counts a database had survive, keep counting, still stop at `max_access_count`, and go with their version.
    @Test(.enabled(if: Backend.databaseURL != nil)) func readCountsSurviveTheMoveToVersionReads() async throws {
        let url = try #require(Backend.databaseURL)
        let name = "kh_migration_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let logger = Logger(label: "test")
        try await Backend.postgresAdmin(url, database: "postgres") {
            _ = try await $0.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        do {
            try await migrateFromRelease2(url: url, name: name, logger: logger)
        } catch {
            try? await drop(name, url: url, logger: logger)
            throw error
        }
        try await drop(name, url: url, logger: logger)
    }

    func drop(_ name: String, url: String, logger: Logger) async throws {
        try await Backend.postgresAdmin(url, database: "postgres") {
            _ = try await $0.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
        }
    }

    func migrateFromRelease2(url: String, name: String, logger: Logger) async throws {
        let (org, vault, secret, user) = (UUID(), UUID(), UUID(), UUID())
        try await Backend.postgresAdmin(url, database: name) { old in
            func run(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) async throws {
                _ = try await old.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
            }
            try await run("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, applied_at bigint NOT NULL)")
            for (index, migration) in PostgresStorage.migrations.prefix(2).enumerated() {
                for statement in PostgresStorage.statements(migration) where !statement.allSatisfy(\.isWhitespace) {
                    try await run(String(statement))
                }
                try await run("INSERT INTO schema_migrations VALUES (\(index + 1), 0)")
            }
            var ids = PostgresBindings()
            for id in [org, vault, secret, user] { ids.append(id) }
            try await run(
                """
                WITH o AS (INSERT INTO orgs VALUES ($1, 'o', 0)),
                     v AS (INSERT INTO vaults VALUES ($2, $1, 'v', NULL, $4, 'user', 'kek-1', 0))
                INSERT INTO secrets VALUES ($3, $2, 'db/password', 2, NULL)
                """, ids)
            for (version, count, limit) in [(1, 7, nil), (2, 3, 4)] as [(Int64, Int64, Int64?)] {
                var binds = PostgresBindings()
                binds.append(secret)
                binds.append(version)
                binds.append(limit)
                binds.append(count)
                binds.append(user)
                try await run(
                    """
                    INSERT INTO secret_versions (secret_id, version, type, max_access_count, access_count, created_by,
                        created_at, kek_id, wrapped_dek, ciphertext) VALUES ($1, $2, 'password', $3, $4, $5, 0, 'kek-1', '\\x00', '\\x00')
                    """, binds)
            }
        }
        var components = try #require(URLComponents(string: url))
        components.path = "/" + name
        let storage = try await PostgresStorage.open(
            url: try #require(components.string), logger: logger, maximumConnections: 4, connectTimeout: 60)
        do {
            try await SQLiteMigrationTests.expectMovedReadCounts(storage, org: org, vault: vault)
        } catch {
            try? await storage.close()
            throw error
        }
        try await storage.close()
        // A deleted version takes its counter with it (the trigger).
        try await Backend.postgresAdmin(url, database: name) { db in
            _ = try await db.query("DELETE FROM secrets", logger: logger)
            let rows = try await db.query("SELECT count(*) AS n FROM version_reads", logger: logger)
            for try await n in rows.decode(Int64.self) { #expect(n == 0) }
        }
    }
}

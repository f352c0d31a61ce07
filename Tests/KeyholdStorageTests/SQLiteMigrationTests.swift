import Foundation
import KeyholdCore
import KeyholdSQLite
import KeyholdPostgres
import KeyholdSQL
import Logging
import SQLiteNIO
import Testing

/// A database made by an earlier release opens with the current one and keeps what it held.
@Suite struct SQLiteMigrationTests {
    /// Read counts moved from `secret_versions.access_count` to `version_reads` (migration 6): the counts a
    /// database had survive, keep counting, and still stop at `max_access_count`.
    @Test func readCountsSurviveTheMoveToVersionReads() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-migration-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/keyhold.sqlite"
        let (org, vault, secret, user) = (UUID(), UUID(), UUID(), UUID())

        let old = try await SQLiteConnection.open(storage: .file(path: path))
        _ = try await old.query("PRAGMA journal_mode=WAL", [])
        _ = try await old.query(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)", [])
        for (index, migration) in SQLiteStorage.migrations.prefix(5).enumerated() {
            for statement in migration.split(separator: ";") where !statement.allSatisfy(\.isWhitespace) {
                _ = try await old.query(String(statement), [])
            }
            _ = try await old.query("INSERT INTO schema_migrations VALUES (?, 0)", [.integer(index + 1)])
        }
        let ids = [org, vault, secret, user].map { SQLiteData.text($0.uuidString.lowercased()) }
        _ = try await old.query("INSERT INTO orgs VALUES (?, 'o', 0)", [ids[0]])
        _ = try await old.query(
            "INSERT INTO vaults VALUES (?, ?, 'v', NULL, ?, 'user', 'kek-1', 0)", [ids[1], ids[0], ids[3]])
        _ = try await old.query("INSERT INTO secrets VALUES (?, ?, 'db/password', 2, NULL)", [ids[2], ids[1]])
        for (version, count, limit) in [(1, 7, nil), (2, 3, 4)] as [(Int, Int, Int?)] {
            _ = try await old.query(
                """
                INSERT INTO secret_versions (secret_id, version, type, max_access_count, access_count, created_by,
                    created_at, kek_id, wrapped_dek, ciphertext) VALUES (?, ?, 'password', ?, ?, ?, 0, 'kek-1', x'00', x'00')
                """, [ids[2], .integer(version), limit.map { .integer($0) } ?? .null, .integer(count), ids[3]])
        }
        try await old.close()

        let storage = try await SQLiteStorage.open(path: path, logger: Logger(label: "test"))
        do {
            try await Self.expectMovedReadCounts(storage, org: org, vault: vault)
        } catch {
            try? await storage.close()
            throw error
        }
        try await storage.close()
    }

    /// A database holding `db/password` with version 1 read 7 times (no limit) and version 2 read 3 times (limit 4),
    /// as it reads after the move: the counts, one more read of version 2, then 410, and version 1 counting on.
    static func expectMovedReadCounts(_ storage: any Storage, org: UUID, vault: UUID) async throws {
        #expect(try await storage.versions(vaultID: vault, path: "db/password").map(\.accessCount) == [7, 3])
        let audit = AuditRecord(
            AuditEntry(orgID: org, actorType: .user, actorID: nil, action: "secret.read", resourceType: "secret",
                       resourceID: "db/password", ipAddress: nil),
            chain: AuditChain(key: .init(size: .bits256)))
        let read = try await storage.readVersion(vaultID: vault, path: "db/password", version: nil, now: .now, audit: audit)
        #expect(read.info.version == 2 && read.info.accessCount == 4)
        await #expect(throws: KeyholdError.gone("")) {
            _ = try await storage.readVersion(vaultID: vault, path: "db/password", version: nil, now: .now, audit: audit)
        }
        let first = try await storage.readVersion(vaultID: vault, path: "db/password", version: 1, now: .now, audit: audit)
        #expect(first.info.accessCount == 8)
        // The vault row predates sealed grants: the first start-up with a seal key seals it.
        try await storage.sealGrants(with: GrantSeal(key: .init(size: .bits256)))
        #expect(try await storage.vault(id: vault)?.orgID == org)
    }
}

/// From the version where both backends hold the same tables on, they apply the same migrations, version for version.
@Suite struct SharedSchemaTests {
    @Test func bothBackendsNumberTheSharedMigrationsAlike() {
        #expect(SQLiteStorage.migrations.count == Schema.sharedFrom - 1)
        #expect(PostgresStorage.migrations.count < Schema.sharedFrom)
        #expect(SQLiteStorage.history.count == PostgresStorage.history.count)
        #expect(SQLiteStorage.history.count == Schema.sharedFrom - 1 + Schema.migrations.count)
        for version in Schema.sharedFrom...SQLiteStorage.history.count {
            #expect(!SQLiteStorage.history[version - 1].contains("{"), "every type spelled")
            #expect(!PostgresStorage.history[version - 1].contains("{"), "every type spelled")
        }
    }
}

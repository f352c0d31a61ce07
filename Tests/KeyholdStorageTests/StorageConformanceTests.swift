import Crypto
import Foundation
import KeyholdCore
import KeyholdSQLite
import KeyholdPostgres
import Logging
import PostgresNIO
import SQLiteNIO
import Testing

/// Every storage backend, freshly created for one test. PostgreSQL joins when `KEYHOLD_TEST_DATABASE_URL`
/// names a cluster to create scratch databases in (`scripts/test` starts one).
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    static let databaseURL = ProcessInfo.processInfo.environment["KEYHOLD_TEST_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let enabled: [Backend] = databaseURL == nil ? [.sqlite] : [.sqlite, .postgres]

    /// Makes every later audit append fail, from outside Keyhold, as a full disk or a revoked grant would.
    func breakAuditLog(_ storage: any Storage) async throws {
        switch self {
        case .sqlite:
            let path = try #require((storage as? SQLiteStorage)?.path)
            let connection = try await SQLiteConnection.open(storage: .file(path: path))
            _ = try await connection.query(
                "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'refused'); END",
                [])
            try await connection.close()
        case .postgres:
            let url = try #require((storage as? PostgresStorage).map { _ in Self.databaseURL })
            try await Self.postgresAdmin(try #require(url), database: try #require((storage as? PostgresStorage)?.databaseName)) {
                connection in
                _ = try await connection.query(
                    "CREATE FUNCTION audit_refused() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql",
                    logger: Logger(label: "test"))
                _ = try await connection.query(
                    "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_refused()",
                    logger: Logger(label: "test"))
            }
        }
    }

    /// Runs `body` on a connection to `database` of the test cluster.
    static func postgresAdmin(
        _ url: String, database: String, _ body: (PostgresConnection) async throws -> Void
    ) async throws {
        var components = try #require(URLComponents(string: url))
        let configuration = PostgresConnection.Configuration(
            host: try #require(components.host), port: components.port ?? 5432,
            username: try #require(components.user), password: components.password, database: database, tls: .disable)
        components.path = ""
        let connection = try await PostgresConnection.connect(
            configuration: configuration, id: 1, logger: Logger(label: "test"))
        do {
            try await body(connection)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    /// A fresh store of this backend whose grants are sealed with `seal` (a new random key unless given).
    func open(seal: GrantSeal = GrantSeal(key: SymmetricKey(size: .bits256))) async throws
        -> (any Storage, cleanup: @Sendable () async -> Void)
    {
        let (storage, cleanup) = try await openUnsealed()
        do {
            try await storage.sealGrants(with: seal)
        } catch {
            await cleanup()
            throw error
        }
        return (storage, cleanup)
    }

    func openUnsealed() async throws -> (any Storage, cleanup: @Sendable () async -> Void) {
        switch self {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-storage-\(UUID())").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let storage = try await SQLiteStorage.open(path: dir + "/keyhold.sqlite", logger: Logger(label: "test"))
            return (storage, {
                try? await storage.close()
                try? FileManager.default.removeItem(atPath: dir)
            })
        case .postgres:
            // Swift Testing starts every test at once; at most `PostgresSlots.count` stores are open together, so
            // the connections (a pool of 4, a reopened store's 4, an admin connection) stay under the test
            // cluster's 200.
            await PostgresSlots.shared.acquire()
            do {
                let url = try #require(Self.databaseURL)
                let name = "kh_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
                try await Self.postgresAdmin(url, database: "postgres") { connection in
                    _ = try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: Logger(label: "test"))
                }
                var components = try #require(URLComponents(string: url))
                components.path = "/" + name
                // The tests run in parallel on a machine that may have two cores: a connection may wait its turn
                // for longer than a server's start-up would.
                let storage = try await PostgresStorage.open(
                    url: try #require(components.string), logger: Logger(label: "test"), maximumConnections: 4,
                    connectTimeout: 60)
                return (storage, {
                    try? await storage.close()
                    try? await Self.postgresAdmin(url, database: "postgres") { connection in
                        _ = try await connection.query(
                            PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: Logger(label: "test"))
                    }
                    await PostgresSlots.shared.release()
                })
            } catch {
                await PostgresSlots.shared.release()
                throw error
            }
        }
    }
}

/// A counting semaphore for the PostgreSQL stores the tests hold open at once.
actor PostgresSlots {
    static let shared = PostgresSlots()
    static let count = 16
    private var free = count
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}

/// One conformance suite, run against every backend.
@Suite struct StorageConformanceTests {
    struct Fixture {
        let storage: any Storage
        let org: Org
        let owner: User
        let vault: Vault
    }

    func withFixture(
        _ backend: Backend, seal: GrantSeal = GrantSeal(key: SymmetricKey(size: .bits256)),
        _ body: (Fixture) async throws -> Void
    ) async throws {
        let (storage, cleanup) = try await backend.open(seal: seal)
        do {
            let now = Timestamp.now
            let org = Org(id: UUID(), name: "acme", createdAt: now)
            let owner = User(
                id: UUID(), orgID: org.id, email: "\(UUID())@example.com", passwordHash: "$2b$hash", displayName: nil,
                role: .owner, createdAt: now)
            try await storage.createOrg(org, owner: owner, audit: testAudit)
            let vault = Vault(
                id: UUID(), orgID: org.id, name: "prod", description: nil, createdBy: owner.id, createdByType: .user,
                kekID: "kek-\(UUID())", createdAt: now)
            try await storage.createVault(vault, kek: KEKHandle(id: vault.kekID, material: Data([1, 2, 3])), audit: testAudit)
            try await body(Fixture(storage: storage, org: org, owner: owner, vault: vault))
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()
    }

    func newVersion(_ f: Fixture, path: String, type: SecretType? = .apiKey, maxAccessCount: Int? = nil,
                    expiresAt: Timestamp? = nil) -> NewSecretVersion {
        NewSecretVersion(
            vaultID: f.vault.id, path: path, type: type, metadata: .object(["k": .string("v")]), rotationPolicy: nil,
            expiresAt: expiresAt, maxAccessCount: maxAccessCount, createdBy: f.owner.id, createdAt: .now,
            kekID: f.vault.kekID, wrappedDataKey: Data([9, 9]))
    }

    @discardableResult
    func write(_ f: Fixture, _ path: String, type: SecretType? = .apiKey, maxAccessCount: Int? = nil,
               expiresAt: Timestamp? = nil) async throws -> SecretVersionInfo {
        try await f.storage.writeVersion(newVersion(f, path: path, type: type, maxAccessCount: maxAccessCount, expiresAt: expiresAt), audit: testAudit) {
            Data("sealed-v\($0)".utf8)
        }
    }

    @Test(arguments: Backend.enabled)
    func identities(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            #expect(try await f.storage.user(email: f.owner.email)?.id == f.owner.id)
            #expect(try await f.storage.user(id: f.owner.id)?.email == f.owner.email)
            #expect(try await f.storage.user(email: "missing@example.com") == nil)
            let again = User(
                id: UUID(), orgID: UUID(), email: f.owner.email, passwordHash: "x", displayName: nil, role: .owner,
                createdAt: .now)
            await #expect(throws: StorageError.conflict) {
                try await f.storage.createOrg(Org(id: again.orgID, name: "b", createdAt: .now), owner: again, audit: testAudit)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func vaultsAreScopedToTheirOrg(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            #expect(try await f.storage.vault(id: f.vault.id, orgID: f.org.id) == f.vault)
            #expect(try await f.storage.vault(id: f.vault.id, orgID: UUID()) == nil)
            #expect(try await f.storage.vaults(orgID: f.org.id).map(\.id) == [f.vault.id])
            #expect(try await f.storage.vaults(orgID: UUID()).isEmpty)
            #expect(try await f.storage.kek(id: f.vault.kekID)?.material == Data([1, 2, 3]))
            #expect(try await !f.storage.deleteVault(id: f.vault.id, orgID: UUID(), audit: testAudit))
        }
    }

    @Test(arguments: Backend.enabled)
    func deletingAVaultRemovesItsSecretsAndKeys(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "a/b")
            #expect(try await f.storage.deleteVault(id: f.vault.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.vault(id: f.vault.id, orgID: f.org.id) == nil)
            #expect(try await f.storage.kek(id: f.vault.kekID) == nil)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "a/b").isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func versionsAreSequentialAndSealedWithTheirNumber(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let first = try await write(f, "db/password")
            let second = try await write(f, "db/password", type: nil)
            #expect(first.version == 1 && second.version == 2)
            #expect(first.secretID == second.secretID)
            #expect(second.type == .apiKey, "a missing type keeps the previous version's")
            let latest = try await f.storage.readVersion(vaultID: f.vault.id, path: "db/password", version: nil, now: .now, audit: testAudit)
            #expect(latest.info.version == 2)
            #expect(latest.ciphertext == Data("sealed-v2".utf8))
            #expect(latest.wrappedDataKey == Data([9, 9]))
            #expect(latest.info.metadata == .object(["k": .string("v")]))
            let old = try await f.storage.readVersion(vaultID: f.vault.id, path: "db/password", version: 1, now: .now, audit: testAudit)
            #expect(old.ciphertext == Data("sealed-v1".utf8))
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "db/password").map(\.version) == [1, 2])
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentWritersGetExactlyOneToN(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let versions = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<40 { group.addTask { try await write(f, "hot/path").version } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(versions.sorted() == Array(1...40))
        }
    }

    @Test(arguments: Backend.enabled)
    func accessCountIsExactUnderConcurrency(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "limited", maxAccessCount: 7)
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<30 {
                    group.addTask {
                        (try? await f.storage.readVersion(vaultID: f.vault.id, path: "limited", version: nil, now: .now, audit: testAudit)) != nil
                    }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 7)
            await #expect(throws: KeyholdError.gone("")) {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "limited", version: nil, now: .now, audit: testAudit)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func missingExpiredDisabledAndDeleted(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            await #expect(throws: KeyholdError.notFound("")) {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "nope", version: nil, now: .now, audit: testAudit)
            }
            try await write(f, "exp", expiresAt: Timestamp.now.adding(seconds: 60))
            await #expect(throws: KeyholdError.gone("")) {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "exp", version: nil, now: Timestamp.now.adding(seconds: 61), audit: testAudit)
            }
            try await write(f, "dis")
            try await write(f, "dis")
            #expect(try await f.storage.disableVersion(vaultID: f.vault.id, path: "dis", version: 1, audit: testAudit))
            #expect(try await !f.storage.disableVersion(vaultID: f.vault.id, path: "dis", version: 9, audit: testAudit))
            await #expect(throws: KeyholdError.gone("")) {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "dis", version: 1, now: .now, audit: testAudit)
            }
            #expect(try await f.storage.readVersion(vaultID: f.vault.id, path: "dis", version: 2, now: .now, audit: testAudit).info.version == 2)
            await #expect(throws: KeyholdError.notFound("")) {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "dis", version: 3, now: .now, audit: testAudit)
            }

            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "dis", at: .now, audit: testAudit))
            #expect(try await !f.storage.deleteSecret(vaultID: f.vault.id, path: "dis", at: .now, audit: testAudit))
            await #expect(throws: KeyholdError.gone("")) {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "dis", version: nil, now: .now, audit: testAudit)
            }
            #expect(try await !f.storage.latestVersions(vaultID: f.vault.id, prefix: nil, after: nil, limit: 100).contains { $0.path == "dis" })
            // A write to a deleted path makes a new secret (as AWS Secrets Manager does after a deletion): a new
            // id, version 1, and none of the deleted secret's versions.
            let revived = try await write(f, "dis")
            #expect(revived.version == 1)
            #expect(try await f.storage.readVersion(vaultID: f.vault.id, path: "dis", version: nil, now: .now, audit: testAudit).info.version == 1)
            await #expect(throws: KeyholdError.notFound(""), "the deleted secret's versions are gone with it") {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "dis", version: 2, now: .now, audit: testAudit)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func listsLatestPerPathByPrefix(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            for path in ["api-keys/openai", "api-keys/openai", "api-keys/stripe", "db/main", "api-keys_x", "api%keys"] {
                try await write(f, path)
            }
            let all = try await f.storage.latestVersions(vaultID: f.vault.id, prefix: nil, after: nil, limit: 100)
            #expect(all.map(\.path) == ["api%keys", "api-keys/openai", "api-keys/stripe", "api-keys_x", "db/main"])
            #expect(all.first { $0.path == "api-keys/openai" }?.version == 2)
            let prefixed = try await f.storage.latestVersions(vaultID: f.vault.id, prefix: "api-keys/", after: nil, limit: 100)
            #expect(prefixed.map(\.path) == ["api-keys/openai", "api-keys/stripe"])
            #expect(try await f.storage.latestVersions(vaultID: f.vault.id, prefix: "api%", after: nil, limit: 100).map(\.path) == ["api%keys"])
            let firstPage = try await f.storage.latestVersions(vaultID: f.vault.id, prefix: nil, after: nil, limit: 2)
            #expect(firstPage.map(\.path) == ["api%keys", "api-keys/openai"])
            let secondPage = try await f.storage.latestVersions(vaultID: f.vault.id, prefix: nil, after: firstPage.last?.path, limit: 2)
            #expect(secondPage.map(\.path) == ["api-keys/stripe", "api-keys_x"])
            #expect(try await f.storage.latestVersions(vaultID: f.vault.id, prefix: "api-keys/", after: "api-keys/openai", limit: 5).map(\.path) == ["api-keys/stripe"])
        }
    }

    @Test(arguments: Backend.enabled)
    func statisticsCountWhatIsStored(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let before = try await f.storage.statistics()
            #expect(before.orgs >= 1 && before.vaults >= 1)
            _ = try await write(f, "stats/one")
            _ = try await write(f, "stats/one")
            _ = try await write(f, "stats/two")
            let after = try await f.storage.statistics()
            #expect(after.secrets == before.secrets + 2)
            #expect(after.secretVersions == before.secretVersions + 3)
            #expect(after.auditEvents == before.auditEvents + 3)
            #expect(after.orgs == before.orgs && after.vaults == before.vaults)
        }
    }

    @Test(arguments: Backend.enabled)
    func systemValuesAreWrittenOnce(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            #expect(try await f.storage.systemValue("k") == nil)
            #expect(try await f.storage.insertSystemValueIfAbsent("k", Data([1])) == Data([1]))
            #expect(try await f.storage.insertSystemValueIfAbsent("k", Data([2])) == Data([1]))
            #expect(try await f.storage.systemValue("k") == Data([1]))
        }
    }

    @Test(arguments: Backend.enabled)
    func failedWriteLeavesNothingBehind(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "atomic")
            struct SealFailure: Error {}
            await #expect(throws: SealFailure.self) {
                try await f.storage.writeVersion(newVersion(f, path: "atomic"), audit: testAudit) { _ in throw SealFailure() }
            }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "atomic").map(\.version) == [1])
            #expect(try await write(f, "atomic").version == 2)
        }
    }
}

/// A record in one fixed test org's chain; the conformance cases about the audit log read that chain back.
let testChainKey = SymmetricKey(size: .bits256)
let testChain = AuditChain(key: testChainKey)
let testAudit = AuditRecord(
    AuditEntry(
        orgID: AuditEntry.systemOrg, actorType: .user, actorID: "tester", action: "test.event", resourceType: "test",
        resourceID: nil, ipAddress: "127.0.0.1"),
    chain: testChain)

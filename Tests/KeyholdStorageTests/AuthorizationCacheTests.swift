import Foundation
import KeyholdCore
import KeyholdPostgres
import KeyholdSQLite
import Logging
import PostgresNIO
import Testing

/// Authorization lookups inside a request (`AuthorizationObservation`): on every backend a change is seen by the next
/// lookup; on SQLite, which serves them from memory, each of the request's transactions checks what it was served.
extension StorageConformanceTests {
    /// Runs `body` as one request would: inside its own observation.
    func request<T>(_ body: () async throws -> T) async throws -> T {
        try await AuthorizationObservation.$current.withValue(AuthorizationObservation()) { try await body() }
    }

    @Test(arguments: Backend.enabled)
    func aRevocationOrAPolicyChangeHoldsOnTheNextLookup(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let agent = agent(f)
            try await f.storage.createAgent(agent, audit: testAudit)
            let granted = try policy(f, kind: .agent, id: agent.id)
            try await f.storage.createPolicy(granted, audit: testAudit)
            for _ in 0..<2 {  // the second time from memory on SQLite
                let subject = try await request { try await f.storage.tokenSubject(kind: .agent, id: agent.id, tokenID: "jti-a") }
                guard case .agent(let found) = subject else { Issue.record("no subject: \(String(describing: subject))"); return }
                #expect(found.id == agent.id)
                let access = try await request {
                    try await f.storage.vaultAndPolicies(id: f.vault.id, orgID: f.org.id, principalKind: .agent, principalID: agent.id)
                }
                #expect(access?.1.map(\.id) == [granted.id])
            }
            try await f.storage.revokeToken(id: "jti-a", expiresAt: Timestamp.now.adding(seconds: 60), refreshFamily: nil, audit: testAudit)
            #expect(try await request { try await f.storage.tokenSubject(kind: .agent, id: agent.id, tokenID: "jti-a") } == nil)
            #expect(try await f.storage.deletePolicy(id: granted.id, vaultID: f.vault.id, audit: testAudit))
            let after = try await request {
                try await f.storage.vaultAndPolicies(id: f.vault.id, orgID: f.org.id, principalKind: .agent, principalID: agent.id)
            }
            #expect(after?.1.isEmpty == true)
            let rule = IPRule(
                id: UUID(), orgID: f.org.id, type: .deny, cidr: try #require(CIDR("10.0.0.0/8")), cidrText: "10.0.0.0/8",
                label: nil, appliesTo: .all, createdBy: f.owner.id, createdAt: .now)
            #expect(try await request { try await f.storage.ipRules(orgID: f.org.id) }.isEmpty)
            try await f.storage.createIPRule(rule, audit: testAudit)
            #expect(try await request { try await f.storage.ipRules(orgID: f.org.id) }.map(\.id) == [rule.id])
        }
    }

    @Test
    func onSQLiteReadsAndWritesOfSecretsLeaveTheClockAndAuthorizationChangesMoveIt() async throws {
        try await withFixture(.sqlite) { (f: Fixture) async throws in
            let clock = try #require((f.storage as? SQLiteStorage)?.authorizationClock)
            _ = try await write(f, "a/b")  // settles anything the fixture left
            let start = clock.now
            _ = try await write(f, "a/b")
            _ = try await read(f, "a/b")
            #expect(clock.now == start)
            try await f.storage.revokeToken(id: "jti-b", expiresAt: Timestamp.now.adding(seconds: 60), refreshFamily: nil, audit: testAudit)
            #expect(clock.now > start, "moved before revokeToken returned")
            let moved = clock.now
            try await Backend.sqlite.execute(f.storage, "INSERT INTO revoked_tokens (jti, expires_at) VALUES ('outside', 1)")
            _ = try await read(f, "a/b")  // the next commit group sees the other process's commit
            #expect(clock.now > moved)
        }
    }

    @Test
    func onSQLiteATransactionRefusesFactsThatChangedOutsideAfterTheyWereServed() async throws {
        try await withFixture(.sqlite) { (f: Fixture) async throws in
            let agent = agent(f)
            try await f.storage.createAgent(agent, audit: testAudit)
            try await f.storage.createPolicy(try policy(f, kind: .agent, id: agent.id), audit: testAudit)
            _ = try await write(f, "prod/key")
            let lookup = {
                try await f.storage.vaultAndPolicies(id: f.vault.id, orgID: f.org.id, principalKind: .agent, principalID: agent.id)
            }
            // Unchanged: served from memory the second time, and the transaction goes through.
            _ = try await request(lookup)
            try await request {
                _ = try await lookup()
                _ = try await self.read(f, "prod/key")
            }
            // Changed from outside between the lookup and the transaction: the transaction refuses, nothing is counted.
            let observation = AuthorizationObservation()
            let refused = await #expect(throws: KeyholdError.self) {
                try await AuthorizationObservation.$current.withValue(observation) {
                    _ = try await lookup()
                    try await Backend.sqlite.execute(f.storage, "UPDATE policies SET priority = 9 WHERE principal_id = '\(agent.id.wire)'")
                    _ = try await self.read(f, "prod/key")
                }
            }
            #expect(refused?.type == AuthorizationObservation.changed.type)
            #expect(!observation.committed)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "prod/key").first?.accessCount == 1)
            // Served afresh, the edited row no longer verifies: refused as any tampered row is.
            await #expect(throws: StoredDataError.self) { _ = try await self.request(lookup) }
        }
    }
}

extension StorageConformanceTests {
    /// PostgreSQL's `authorization_epoch`, read from outside Keyhold.
    func epoch(_ storage: any Storage) async throws -> Int64 {
        var epoch: Int64?
        let name = try #require((storage as? PostgresStorage)?.databaseName)
        try await Backend.postgresAdmin(try #require(Backend.databaseURL), database: name) { connection in
            let rows = try await connection.query("SELECT epoch FROM authorization_epoch WHERE id = 1", logger: Logger(label: "test"))
            for try await value in rows.decode(Int64.self) { epoch = value }
        }
        return try #require(epoch)
    }

    @Test(.enabled(if: Backend.enabled.contains(.postgres)))
    func onPostgreSQLTheEpochMovesWithAuthorizationChangesAndAnOutsideEditIsSeenByTheNextLookup() async throws {
        try await withFixture(.postgres) { (f: Fixture) async throws in
            let agent = agent(f)
            try await f.storage.createAgent(agent, audit: testAudit)
            try await f.storage.createPolicy(try policy(f, kind: .agent, id: agent.id), audit: testAudit)
            let start = try await epoch(f.storage)
            _ = try await write(f, "prod/key")
            _ = try await read(f, "prod/key")
            #expect(try await epoch(f.storage) == start, "secrets' reads and writes leave it")
            try await f.storage.revokeToken(id: "jti-c", expiresAt: Timestamp.now.adding(seconds: 60), refreshFamily: nil, audit: testAudit)
            let moved = try await epoch(f.storage)
            #expect(moved != start)
            try await f.storage.createIPRule(
                IPRule(
                    id: UUID(), orgID: f.org.id, type: .allow, cidr: try #require(CIDR("10.0.0.0/8")), cidrText: "10.0.0.0/8",
                    label: nil, appliesTo: .all, createdBy: f.owner.id, createdAt: .now),
                audit: testAudit)
            #expect(try await epoch(f.storage) != moved, "every change gets a value of its own")

            let lookup = {
                try await f.storage.vaultAndPolicies(id: f.vault.id, orgID: f.org.id, principalKind: .agent, principalID: agent.id)
            }
            #expect(try await request(lookup)?.1.count == 1)
            #expect(try await request(lookup)?.1.count == 1)
            try await Backend.postgres.execute(f.storage, "UPDATE policies SET priority = 9 WHERE principal_id = '\(agent.id.wire)'")
            await #expect(throws: StoredDataError.self) { _ = try await self.request(lookup) }
        }
    }
}

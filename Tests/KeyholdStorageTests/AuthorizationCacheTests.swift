import Foundation
import KeyholdCore
import KeyholdSQLite
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

import Foundation
import KeyholdCore
import Testing

/// The storage methods the other cases reach only through services, called directly on every backend.
extension StorageConformanceTests {
    @Test(arguments: Backend.enabled)
    func tokenSubjectNamesTheLivePrincipalUnlessTheTokenIsRevoked(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let bot = agent(f)
            try await f.storage.createAgent(bot, audit: testAudit)
            guard case .user(let user)? = try await f.storage.tokenSubject(kind: .user, id: f.owner.id, tokenID: "jti-u") else {
                Issue.record("no user subject")
                return
            }
            #expect(user == f.owner)
            guard case .agent(let found)? = try await f.storage.tokenSubject(kind: .agent, id: bot.id, tokenID: "jti-a") else {
                Issue.record("no agent subject")
                return
            }
            #expect(found == bot)
            #expect(try await f.storage.tokenSubject(kind: .agent, id: f.owner.id, tokenID: "jti-x") == nil, "kinds do not mix")
            #expect(try await f.storage.tokenSubject(kind: .user, id: UUID(), tokenID: "jti-y") == nil)
            try await f.storage.revokeToken(
                id: "jti-u", expiresAt: Timestamp.now.adding(seconds: 60), refreshFamily: nil, audit: testAudit)
            #expect(try await f.storage.tokenSubject(kind: .user, id: f.owner.id, tokenID: "jti-u") == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func vaultAndPoliciesHoldsOnlyThatPrincipalsPolicies(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let (bot, other) = (agent(f), agent(f, prefix: "ocv_otherbot"))
            try await f.storage.createAgent(bot, audit: testAudit)
            try await f.storage.createAgent(other, audit: testAudit)
            let mine = try policy(f, kind: .agent, id: bot.id)
            try await f.storage.createPolicy(mine, audit: testAudit)
            try await f.storage.createPolicy(try policy(f, kind: .agent, id: other.id), audit: testAudit)
            let found = try #require(
                try await f.storage.vaultAndPolicies(id: f.vault.id, orgID: f.org.id, principalKind: .agent, principalID: bot.id))
            #expect(found.0 == f.vault && found.1 == [mine])
            #expect(try await f.storage.vaultAndPolicies(
                id: f.vault.id, orgID: f.org.id, principalKind: .user, principalID: bot.id)?.1 == [])
            #expect(try await f.storage.vaultAndPolicies(
                id: f.vault.id, orgID: UUID(), principalKind: .agent, principalID: bot.id) == nil, "another org's vault")
        }
    }

    @Test(arguments: Backend.enabled)
    func rotatedKeysAreRetiredOnlyWhenUnused(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let old = f.vault.kekID
            _ = try await write(f, "db/password")
            let new = KEKHandle(id: "kek-\(UUID())", material: Data([4, 5, 6]))
            #expect(try await !f.storage.rotateVaultKEK(vaultID: f.vault.id, orgID: UUID(), kek: new, audit: testAudit))
            #expect(try await f.storage.rotateVaultKEK(vaultID: f.vault.id, orgID: f.org.id, kek: new, audit: testAudit))
            #expect(try await f.storage.vault(id: f.vault.id)?.kekID == new.id)
            #expect(Set(try await f.storage.allKEKs().map(\.id)) == [old, new.id])
            #expect(try await f.storage.unusedKEKs().isEmpty, "the old key still wraps version 1")
            #expect(try await !f.storage.deleteKEK(id: old))
            let stale = try await f.storage.staleWrappedKeys(limit: 10)
            #expect(try await f.storage.rewrap(stale.map { ($0, Data([7])) }) == 1)
            #expect(try await f.storage.unusedKEKs().map(\.id) == [old])
            #expect(try await !f.storage.deleteKEK(id: new.id), "in use by the vault")
            #expect(try await f.storage.deleteKEK(id: old))
            #expect(try await !f.storage.deleteKEK(id: old), "already gone")
            #expect(try await f.storage.allKEKs().map(\.id) == [new.id])
        }
    }

    @Test(arguments: Backend.enabled)
    func resealReplacesKeyMaterialsAndSystemValuesTogether(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            _ = try await f.storage.insertSystemValueIfAbsent("one", Data([1]))
            _ = try await f.storage.insertSystemValueIfAbsent("two", Data([2]))
            #expect(try await f.storage.insertSystemValueIfAbsent("one", Data([9])) == Data([1]), "the first value stays")
            let values = try await f.storage.allSystemValues()
            #expect(values["one"] == Data([1]) && values["two"] == Data([2]))
            try await f.storage.reseal(
                keks: [KEKHandle(id: f.vault.kekID, material: Data([8, 8]))], systemValues: ["one": Data([11]), "two": Data([22])])
            #expect(try await f.storage.kek(id: f.vault.kekID)?.material == Data([8, 8]))
            let resealed = try await f.storage.allSystemValues()
            #expect(resealed["one"] == Data([11]) && resealed["two"] == Data([22]))
        }
    }
}

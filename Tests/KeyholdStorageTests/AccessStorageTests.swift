import Foundation
import KeyholdCore
import Testing

/// Conformance cases for members, agents, credentials and policies, run against every backend.
extension StorageConformanceTests {
    func agent(_ f: Fixture, prefix: String = "ocv_abcdefgh") -> Agent {
        Agent(
            id: UUID(), orgID: f.org.id, name: "bot", description: nil, isActive: true, scopes: ["prod/**"],
            vaultIDs: [f.vault.id], tokenTTLSeconds: 300, expiresAt: nil, createdBy: f.owner.id, createdAt: .now,
            keyPrefix: prefix, keyDigest: Data([1, 2, 3]), keyVersion: 1, environment: "staging",
            environmentLocked: true, envAutoResolve: false, apiKeyExpiresAt: Timestamp(milliseconds: 1_900_000_000_000),
            intentsAPIEnabled: true, sshPublicKey: "ssh-ed25519 AAAA", ecdhPublicKey: "BAAA",
            identityKeysCreatedAt: Timestamp(milliseconds: 1_800_000_000_000),
            identityKeyHistory: [
                AgentIdentityKey(
                    sshPublicKey: "ssh-ed25519 AAAB", ecdhPublicKey: "BAAB", createdAt: Timestamp(milliseconds: 1_700_000_000_000),
                    retiredAt: Timestamp(milliseconds: 1_800_000_000_000))
            ])
    }

    func policy(_ f: Fixture, kind: PrincipalKind, id: UUID) throws -> Policy {
        Policy(
            id: UUID(), vaultID: f.vault.id, pattern: try PathPattern(validating: "prod/**"), principalKind: kind,
            principalID: id, permissions: [.read, .write],
            conditions: try PolicyConditions(json: try JSONValue(jsonString: #"{"ip_allowlist":["10.0.0.0/8"]}"#)),
            expiresAt: Timestamp(milliseconds: 1_900_000_000_000), effect: .allow, priority: 5, createdBy: f.owner.id,
            createdByType: .user, createdAt: .now)
    }

    @Test(arguments: Backend.enabled)
    func agentsRoundTrip(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            var agent = agent(f)
            try await f.storage.createAgent(agent, audit: testAudit)
            #expect(try await f.storage.agent(id: agent.id) == agent)
            #expect(try await f.storage.agents(orgID: f.org.id) == [agent])
            #expect(try await f.storage.agents(keyPrefix: "ocv_abcdefgh").map(\.id) == [agent.id])
            #expect(try await f.storage.agents(keyPrefix: "ocv_zzzzzzzz").isEmpty)
            agent.isActive = false
            agent.scopes = nil
            agent.keyVersion = 2
            agent.keyPrefix = "ocv_newnewne"
            agent.environment = "preview-2"
            agent.environmentLocked = false
            agent.envAutoResolve = true
            agent.apiKeyExpiresAt = nil
            agent.intentsAPIEnabled = false
            agent.identityKeyHistory.append(
                AgentIdentityKey(
                    sshPublicKey: "ssh-ed25519 AAAA", ecdhPublicKey: "BAAA", createdAt: Timestamp(milliseconds: 1_800_000_000_000),
                    retiredAt: Timestamp(milliseconds: 1_900_000_000_000)))
            (agent.sshPublicKey, agent.ecdhPublicKey) = ("ssh-ed25519 AAAC", "BAAC")
            #expect(try await f.storage.updateAgent(agent, audit: testAudit))
            #expect(try await f.storage.agent(id: agent.id) == agent)
            #expect(try await f.storage.agents(keyPrefix: "ocv_abcdefgh").isEmpty)
            try await f.storage.createPolicy(try policy(f, kind: .agent, id: agent.id), audit: testAudit)
            #expect(try await !f.storage.deleteAgent(id: agent.id, orgID: UUID(), audit: testAudit))
            #expect(try await f.storage.deleteAgent(id: agent.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.agent(id: agent.id) == nil)
            #expect(try await f.storage.policies(principalKind: .agent, principalID: agent.id).isEmpty)
            var ghost = agent
            ghost.id = UUID()
            #expect(try await !f.storage.updateAgent(ghost, audit: testAudit))
        }
    }

    @Test(arguments: Backend.enabled)
    func apiKeysAndRevokedTokens(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let key = UserAPIKey(
                id: UUID(), userID: f.owner.id, orgID: f.org.id, name: "ci", keyPrefix: "1ck_abcdefgh",
                keyDigest: Data([7]), scopes: ["a/**"], isActive: true, createdAt: .now, expiresAt: nil)
            try await f.storage.createAPIKey(key, audit: testAudit)
            #expect(try await f.storage.apiKeys(userID: f.owner.id) == [key])
            #expect(try await f.storage.apiKeys(keyPrefix: "1ck_abcdefgh") == [key])
            #expect(try await !f.storage.deactivateAPIKey(id: key.id, userID: UUID(), audit: testAudit))
            #expect(try await f.storage.deactivateAPIKey(id: key.id, userID: f.owner.id, audit: testAudit))
            #expect(try await !f.storage.deactivateAPIKey(id: key.id, userID: f.owner.id, audit: testAudit))
            #expect(try await f.storage.apiKeys(keyPrefix: "1ck_abcdefgh").first?.isActive == false)

            #expect(try await !f.storage.isTokenRevoked(id: "jti-1"))
            try await f.storage.revokeToken(
                id: "jti-1", expiresAt: Timestamp.now.adding(seconds: 60), refreshFamily: nil, audit: testAudit)
            try await f.storage.revokeToken(
                id: "jti-1", expiresAt: Timestamp.now.adding(seconds: 60), refreshFamily: nil, audit: testAudit)
            #expect(try await f.storage.isTokenRevoked(id: "jti-1"))
            #expect(try await !f.storage.isTokenRevoked(id: "jti-2"))
        }
    }

    @Test(arguments: Backend.enabled)
    func refreshTokensAreSingleUseAndReuseEndsTheFamily(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let family = UUID()
            func token(_ byte: UInt8, expires: Timestamp = Timestamp.now.adding(seconds: 60)) -> RefreshTokenRecord {
                RefreshTokenRecord(
                    digest: Data([byte]), family: family, principalKind: .user, principalID: f.owner.id,
                    orgID: f.org.id, expiresAt: expires)
            }
            try await f.storage.createRefreshToken(token(1), audit: testAudit)
            #expect(try await f.storage.spendRefreshToken(digest: Data([1]), now: .now)?.family == family)
            try await f.storage.createRefreshToken(token(2), audit: testAudit)
            #expect(try await f.storage.spendRefreshToken(digest: Data([1]), now: .now) == nil, "spent")
            #expect(try await f.storage.spendRefreshToken(digest: Data([2]), now: .now) == nil, "family ended by reuse")
            await #expect(throws: KeyholdError(.unauthorized, ""), "an ended family takes no new token") {
                try await f.storage.createRefreshToken(token(4), audit: testAudit)
            }
            let expiring = RefreshTokenRecord(
                digest: Data([3]), family: UUID(), principalKind: .user, principalID: f.owner.id, orgID: f.org.id,
                expiresAt: .now)
            try await f.storage.createRefreshToken(expiring, audit: testAudit)
            #expect(try await f.storage.spendRefreshToken(digest: Data([3]), now: Timestamp.now.adding(seconds: 1)) == nil)
            #expect(try await f.storage.spendRefreshToken(digest: Data([9]), now: .now) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func logoutEndsTheRefreshFamilyOnly(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let (mine, other) = (UUID(), UUID())
            for (byte, family) in [(UInt8(1), mine), (2, mine), (3, other)] {
                try await f.storage.createRefreshToken(
                    RefreshTokenRecord(
                        digest: Data([byte]), family: family, principalKind: .user, principalID: f.owner.id,
                        orgID: f.org.id, expiresAt: Timestamp.now.adding(seconds: 60)),
                    audit: testAudit)
            }
            try await f.storage.revokeToken(
                id: "jti-logout", expiresAt: Timestamp.now.adding(seconds: 60), refreshFamily: mine, audit: testAudit)
            #expect(try await f.storage.isTokenRevoked(id: "jti-logout"))
            #expect(try await f.storage.spendRefreshToken(digest: Data([1]), now: .now) == nil)
            #expect(try await f.storage.spendRefreshToken(digest: Data([2]), now: .now) == nil)
            #expect(try await f.storage.spendRefreshToken(digest: Data([3]), now: .now)?.family == other)
            await #expect(throws: KeyholdError(.unauthorized, ""), "a token issued after logout cannot join the family") {
                try await f.storage.createRefreshToken(
                    RefreshTokenRecord(
                        digest: Data([5]), family: mine, principalKind: .user, principalID: f.owner.id,
                        orgID: f.org.id, expiresAt: Timestamp.now.adding(seconds: 60)),
                    audit: testAudit)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func policiesRoundTrip(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let granted = try policy(f, kind: .user, id: f.owner.id)
            try await f.storage.createPolicy(granted, audit: testAudit)
            #expect(try await f.storage.policy(id: granted.id, vaultID: f.vault.id) == granted)
            #expect(try await f.storage.policy(id: granted.id, vaultID: UUID()) == nil)
            #expect(try await f.storage.policies(vaultID: f.vault.id) == [granted])
            #expect(try await f.storage.policies(principalKind: .user, principalID: f.owner.id) == [granted])
            #expect(try await f.storage.policies(principalKind: .agent, principalID: f.owner.id).isEmpty)
            #expect(try await f.storage.policies(vaultID: f.vault.id, principalKind: .user, principalID: f.owner.id) == [granted])
            let changed = Policy(
                id: granted.id, vaultID: granted.vaultID, pattern: granted.pattern, principalKind: .user,
                principalID: f.owner.id, permissions: [.read], conditions: .none, expiresAt: nil, effect: .deny,
                priority: 9, createdBy: granted.createdBy, createdByType: .user, createdAt: granted.createdAt)
            #expect(try await f.storage.updatePolicy(changed, audit: testAudit))
            #expect(try await f.storage.policy(id: granted.id, vaultID: f.vault.id) == changed)
            #expect(try await f.storage.deletePolicy(id: granted.id, vaultID: f.vault.id, audit: testAudit))
            #expect(try await !f.storage.deletePolicy(id: granted.id, vaultID: f.vault.id, audit: testAudit))
            try await f.storage.createPolicy(granted, audit: testAudit)
            #expect(try await f.storage.deleteVault(id: f.vault.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.policies(principalKind: .user, principalID: f.owner.id).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func membersInvitesAndTheLastOwner(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            await #expect(throws: StorageError.lastOwner) {
                try await f.storage.updateRole(userID: f.owner.id, orgID: f.org.id, role: .member, audit: testAudit)
            }
            await #expect(throws: StorageError.lastOwner) { try await f.storage.removeUser(id: f.owner.id, orgID: f.org.id, audit: testAudit) }

            let invite = Invite(
                digest: Data([42]), orgID: f.org.id, email: "new@example.com", role: .admin, createdBy: f.owner.id,
                expiresAt: Timestamp.now.adding(seconds: 60))
            try await f.storage.createInvite(invite, audit: testAudit)
            func newcomer(_ email: String) -> User {
                User(id: UUID(), orgID: UUID(), email: email, passwordHash: "h", displayName: nil, role: .owner, createdAt: .now)
            }
            #expect(try await f.storage.redeemInvite(digest: Data([42]), user: newcomer("other@example.com"), now: .now, audit: testAudit) == nil)
            let joined = try #require(try await f.storage.redeemInvite(digest: Data([42]), user: newcomer("new@example.com"), now: .now, audit: testAudit))
            #expect(joined.orgID == f.org.id && joined.role == .admin)
            #expect(try await f.storage.redeemInvite(digest: Data([42]), user: newcomer("new@example.com"), now: .now, audit: testAudit) == nil)
            #expect(Set(try await f.storage.users(orgID: f.org.id).map(\.id)) == [f.owner.id, joined.id])

            #expect(try await f.storage.updateRole(userID: joined.id, orgID: f.org.id, role: .owner, audit: testAudit))
            #expect(try await f.storage.updateRole(userID: f.owner.id, orgID: f.org.id, role: .member, audit: testAudit))
            #expect(try await !f.storage.updateRole(userID: joined.id, orgID: UUID(), role: .member, audit: testAudit))
            try await f.storage.createPolicy(try policy(f, kind: .user, id: f.owner.id), audit: testAudit)
            #expect(try await f.storage.removeUser(id: f.owner.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.user(id: f.owner.id) == nil)
            #expect(try await f.storage.policies(principalKind: .user, principalID: f.owner.id).isEmpty)
            #expect(try await !f.storage.removeUser(id: f.owner.id, orgID: f.org.id, audit: testAudit))

            let expired = Invite(
                digest: Data([43]), orgID: f.org.id, email: "late@example.com", role: .member, createdBy: joined.id,
                expiresAt: .now)
            try await f.storage.createInvite(expired, audit: testAudit)
            #expect(try await f.storage.redeemInvite(digest: Data([43]), user: newcomer("late@example.com"), now: Timestamp.now.adding(seconds: 1), audit: testAudit) == nil)
        }
    }
}

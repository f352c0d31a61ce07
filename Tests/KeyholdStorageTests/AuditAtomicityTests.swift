import Foundation
import KeyholdCore
import Testing

/// Every mutating method commits with its audit event or not at all: with the audit log refusing appends, each
/// one throws 503 and nothing it would have changed (its cascades included) is stored. Run against every backend.
extension StorageConformanceTests {
    /// One of everything, stored before the audit log breaks.
    struct World: Sendable {
        let member: User
        let bot: Agent
        let key: UserAPIKey
        let policy: Policy
        let invite: Invite
        let refresh: RefreshTokenRecord
        let secret: SecretVersionInfo
        let link: Share
        let pending: Share
        let lease: CapabilityLease
    }

    struct Mutation: Sendable, CustomTestStringConvertible {
        let method: String
        let run: @Sendable (StorageConformanceTests, Fixture, World) async throws -> Void

        init(_ method: String, _ run: @escaping @Sendable (StorageConformanceTests, Fixture, World) async throws -> Void) {
            self.method = method
            self.run = run
        }

        var testDescription: String { method }
    }

    static let mutations: [Mutation] = [
        Mutation("createOrg") { t, f, _ in
            let user = t.newUser(email: "broken@example.com")
            try await f.storage.createOrg(Org(id: user.orgID, name: "n", createdAt: .now), owner: user, audit: testAudit)
        },
        Mutation("updateRole") { _, f, w in
            _ = try await f.storage.updateRole(userID: w.member.id, orgID: f.org.id, role: .owner, audit: testAudit)
        },
        Mutation("removeUser") { _, f, w in _ = try await f.storage.removeUser(id: w.member.id, orgID: f.org.id, audit: testAudit) },
        Mutation("createInvite") { t, f, _ in try await t.invite(f) },
        Mutation("redeemInvite") { t, f, w in
            _ = try await f.storage.redeemInvite(
                digest: w.invite.digest, user: t.newUser(email: w.invite.email), now: .now, audit: testAudit)
        },
        Mutation("createAgent") { t, f, _ in try await f.storage.createAgent(t.agent(f), audit: testAudit) },
        Mutation("updateAgent") { _, f, w in
            var renamed = w.bot
            renamed.name = "renamed"
            _ = try await f.storage.updateAgent(renamed, audit: testAudit)
        },
        Mutation("deleteAgent") { _, f, w in _ = try await f.storage.deleteAgent(id: w.bot.id, orgID: f.org.id, audit: testAudit) },
        Mutation("createAPIKey") { t, f, _ in try await f.storage.createAPIKey(t.apiKey(f), audit: testAudit) },
        Mutation("deactivateAPIKey") { _, f, w in
            _ = try await f.storage.deactivateAPIKey(id: w.key.id, userID: w.member.id, audit: testAudit)
        },
        Mutation("createRefreshToken") { t, f, w in
            try await f.storage.createRefreshToken(t.refreshToken(f, 9, family: w.refresh.family), audit: testAudit)
        },
        Mutation("revokeToken") { _, f, w in
            try await f.storage.revokeToken(
                id: "jti-broken", expiresAt: Timestamp.now.adding(seconds: 600), refreshFamily: w.refresh.family, audit: testAudit)
        },
        Mutation("createPolicy") { t, f, w in try await f.storage.createPolicy(try t.policy(f, kind: .agent, id: w.bot.id), audit: testAudit) },
        Mutation("updatePolicy") { _, f, w in
            let p = w.policy
            _ = try await f.storage.updatePolicy(
                Policy(
                    id: p.id, vaultID: p.vaultID, pattern: p.pattern, principalKind: p.principalKind, principalID: p.principalID,
                    permissions: [.read], conditions: .none, expiresAt: nil, effect: .deny, priority: 99,
                    createdBy: p.createdBy, createdByType: p.createdByType, createdAt: p.createdAt),
                audit: testAudit)
        },
        Mutation("deletePolicy") { _, f, w in _ = try await f.storage.deletePolicy(id: w.policy.id, vaultID: f.vault.id, audit: testAudit) },
        Mutation("createVault") { t, f, _ in _ = try await t.vault(f) },
        Mutation("deleteVault") { _, f, _ in _ = try await f.storage.deleteVault(id: f.vault.id, orgID: f.org.id, audit: testAudit) },
        Mutation("rotateVaultKEK") { _, f, _ in
            _ = try await f.storage.rotateVaultKEK(
                vaultID: f.vault.id, orgID: f.org.id, kek: KEKHandle(id: "kek-\(UUID())", material: Data([3])), audit: testAudit)
        },
        Mutation("disableVersion") { _, f, w in
            _ = try await f.storage.disableVersion(vaultID: f.vault.id, path: w.secret.path, version: 1, audit: testAudit)
        },
        Mutation("createShare") { t, f, w in try await f.storage.createShare(t.share(f, secret: w.secret), audit: testAudit) },
        Mutation("revokeShare") { _, f, w in _ = try await f.storage.revokeShare(id: w.link.id, audit: testAudit) },
        Mutation("answerShare") { _, f, w in
            _ = try await f.storage.answerShare(id: w.pending.id, status: .accepted, recipientID: UUID(), audit: testAudit)
        },
        Mutation("accessShare") { _, f, w in _ = try await f.storage.accessShare(id: w.link.id, now: .now, audit: testAudit) },
        Mutation("createCapabilityLease") { t, f, w in
            try await f.storage.createCapabilityLease(t.capabilityLease(f, path: w.secret.path), approval: nil, audit: testAudit)
        },
        Mutation("revokeCapabilityLease") { _, f, w in
            _ = try await f.storage.revokeCapabilityLease(id: w.lease.id, vaultID: f.vault.id, at: .now) { _ in testAudit }
        },
        Mutation("spendCapabilityLease") { t, f, w in
            _ = try await t.spend(f, w.lease, counters: [(Data(repeating: 5, count: 32), 1)])
        },
    ]

    static var atomicityCases: [(Backend, Mutation)] {
        Backend.enabled.flatMap { backend in mutations.map { (backend, $0) } }
    }

    func world(_ f: Fixture) async throws -> World {
        let member = try await join(f, role: .admin)
        let bot = agent(f)
        try await f.storage.createAgent(bot, audit: testAudit)
        let key = apiKey(f, user: member)
        try await f.storage.createAPIKey(key, audit: testAudit)
        let policy = try self.policy(f, kind: .user, id: member.id)
        try await f.storage.createPolicy(policy, audit: testAudit)
        let refresh = refreshToken(f, 1, principal: member.id)
        try await f.storage.createRefreshToken(refresh, audit: testAudit)
        let secret = try await write(f, "kept/secret")
        let (link, pending) = (
            share(f, secret: secret, creator: (.user, member.id)),
            share(f, secret: secret, recipient: .externalEmail, email: "p@example.com", status: .pending)
        )
        try await f.storage.createShare(link, audit: testAudit)
        try await f.storage.createShare(pending, audit: testAudit)
        let lease = capabilityLease(f, path: secret.path)
        try await f.storage.createCapabilityLease(lease, approval: nil, audit: testAudit)
        return World(
            member: member, bot: bot, key: key, policy: policy, invite: try await invite(f), refresh: refresh,
            secret: secret, link: link, pending: pending, lease: lease)
    }

    /// Serialized: a case per method, each with its own database, would otherwise open more PostgreSQL connections
    /// at once than a test cluster allows.
    @Test(.serialized, arguments: atomicityCases)
    func aMutationWhoseEventCannotBeWrittenStoresNothing(_ backend: Backend, _ mutation: Mutation) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let w = try await world(f)
            let before = try await stored(f)
            try await backend.breakAuditLog(f.storage)
            await #expect(throws: KeyholdError(.unavailable, "")) { try await mutation.run(self, f, w) }
            #expect(try await stored(f) == before)
            #expect(try await f.storage.user(email: w.invite.email) == nil)
            #expect(try await f.storage.user(email: "broken@example.com") == nil)
            #expect(try await !f.storage.isTokenRevoked(id: "jti-broken"))
            #expect(try await f.storage.spendRefreshToken(digest: w.refresh.digest, now: .now) == w.refresh,
                    "the refresh family lives on (spending records no event)")
        }
    }
}

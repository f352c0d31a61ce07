import Foundation
import KeyholdCore
import Testing

/// Orgs, members, invites and agents: every rule of `IdentityStore` and `AgentStore`, on every backend.
extension StorageConformanceTests {
    // MARK: orgs and members

    @Test(arguments: Backend.enabled)
    func createOrgStoresItsOwnerAndATakenEmailStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let other = try await otherOrg(f)
            #expect(try await f.storage.users(orgID: other.org.id) == [other.owner])
            #expect(try await f.storage.user(email: other.owner.email) == other.owner)

            let late = Org(id: UUID(), name: "late", createdAt: .now)
            let before = try await stored(f, others: [other.org.id, late.id])
            let taken = User(
                id: UUID(), orgID: late.id, email: other.owner.email, passwordHash: "x", displayName: nil, role: .owner,
                createdAt: .now)
            await #expect(throws: StorageError.conflict) { try await f.storage.createOrg(late, owner: taken, audit: testAudit) }
            #expect(try await stored(f, others: [other.org.id, late.id]) == before)
            #expect(try await f.storage.user(id: taken.id) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func usersListsOnlyTheOrgsMembersOldestFirst(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let later = try await join(f, role: .member, createdAt: f.owner.createdAt.adding(seconds: 20))
            let earlier = try await join(f, role: .admin, createdAt: f.owner.createdAt.adding(seconds: 10))
            let other = try await otherOrg(f)
            #expect(try await f.storage.users(orgID: f.org.id) == [f.owner, earlier, later])
            #expect(try await f.storage.users(orgID: other.org.id) == [other.owner])
            #expect(try await f.storage.users(orgID: UUID()).isEmpty)
            #expect(try await f.storage.user(id: UUID()) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func theLastOwnerKeepsTheRoleAndARefusedChangeStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let member = try await join(f, role: .member)
            let before = try await stored(f)
            await #expect(throws: StorageError.lastOwner) {
                try await f.storage.updateRole(userID: f.owner.id, orgID: f.org.id, role: .admin, audit: testAudit)
            }
            #expect(try await stored(f) == before)
            #expect(try await !f.storage.updateRole(userID: UUID(), orgID: f.org.id, role: .owner, audit: testAudit))
            #expect(try await !f.storage.updateRole(userID: member.id, orgID: UUID(), role: .owner, audit: testAudit))
            #expect(try await stored(f) == before, "a change of no member stores nothing")

            #expect(try await f.storage.updateRole(userID: f.owner.id, orgID: f.org.id, role: .owner, audit: testAudit),
                    "the last owner stays an owner")
            #expect(try await f.storage.updateRole(userID: member.id, orgID: f.org.id, role: .admin, audit: testAudit))
            #expect(try await f.storage.user(id: member.id)?.role == .admin)
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentDemotionsOfTheLastTwoOwnersLeaveOneOwner(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let second = try await join(f, role: .owner)
            let outcomes = await withTaskGroup(of: Result<Bool, any Error>.self) { group in
                for id in [f.owner.id, second.id] {
                    group.addTask {
                        do {
                            return .success(
                                try await f.storage.updateRole(userID: id, orgID: f.org.id, role: .member, audit: testAudit))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: [Result<Bool, any Error>]()) { $0.append($1) }
            }
            #expect(outcomes.filter { (try? $0.get()) == true }.count == 1)
            #expect(outcomes.filter { if case .failure(let error) = $0 { error as? StorageError == .lastOwner } else { false } }.count == 1)
            #expect(try await f.storage.users(orgID: f.org.id).filter { $0.role == .owner }.count == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func theLastOwnerCannotBeRemovedAndARefusedRemovalStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let other = try await otherOrg(f)
            try await f.storage.createAPIKey(apiKey(f), audit: testAudit)
            try await f.storage.createPolicy(try policy(f, kind: .user, id: f.owner.id), audit: testAudit)
            let before = try await stored(f, others: [other.org.id])
            await #expect(throws: StorageError.lastOwner) {
                try await f.storage.removeUser(id: f.owner.id, orgID: f.org.id, audit: testAudit)
            }
            #expect(try await !f.storage.removeUser(id: other.owner.id, orgID: f.org.id, audit: testAudit), "another org's member")
            #expect(try await !f.storage.removeUser(id: UUID(), orgID: f.org.id, audit: testAudit))
            #expect(try await stored(f, others: [other.org.id]) == before)
        }
    }

    @Test(arguments: Backend.enabled)
    func removingAMemberTakesTheirKeysPoliciesAndRefreshTokensAndRevokesTheirShares(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let member = try await join(f, role: .admin)
            let (theirs, mine) = (apiKey(f, user: member, prefix: "1ck_member00"), apiKey(f))
            try await f.storage.createAPIKey(theirs, audit: testAudit)
            try await f.storage.createAPIKey(mine, audit: testAudit)
            let ownerPolicy = try policy(f, kind: .user, id: f.owner.id)
            try await f.storage.createPolicy(try policy(f, kind: .user, id: member.id), audit: testAudit)
            try await f.storage.createPolicy(ownerPolicy, audit: testAudit)
            try await f.storage.createRefreshToken(refreshToken(f, 1, principal: member.id), audit: testAudit)
            try await f.storage.createRefreshToken(refreshToken(f, 2), audit: testAudit)
            let secret = try await write(f, "shared/by-member")
            let (made, kept) = (share(f, secret: secret, creator: (.user, member.id)), share(f, secret: secret))
            try await f.storage.createShare(made, audit: testAudit)
            try await f.storage.createShare(kept, audit: testAudit)

            #expect(try await f.storage.removeUser(id: member.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.user(id: member.id) == nil)
            #expect(try await f.storage.users(orgID: f.org.id) == [f.owner])
            #expect(try await f.storage.apiKeys(userID: member.id).isEmpty)
            #expect(try await f.storage.apiKey(id: theirs.id) == nil)
            #expect(try await f.storage.apiKeys(keyPrefix: theirs.keyPrefix).isEmpty)
            #expect(try await f.storage.policies(principalKind: .user, principalID: member.id).isEmpty)
            #expect(try await f.storage.spendRefreshToken(digest: Data([1]), now: .now) == nil)
            #expect(try await f.storage.share(id: made.id)?.revoked == true)
            #expect(try await f.storage.tokenSubject(kind: .user, id: member.id, tokenID: "jti-member") == nil)
            // What others hold stays.
            #expect(try await f.storage.apiKey(id: mine.id) == mine)
            #expect(try await f.storage.policies(principalKind: .user, principalID: f.owner.id) == [ownerPolicy])
            #expect(try await f.storage.spendRefreshToken(digest: Data([2]), now: .now) != nil)
            #expect(try await f.storage.share(id: kept.id)?.revoked == false)
            #expect(try await !f.storage.removeUser(id: member.id, orgID: f.org.id, audit: testAudit), "already gone")
        }
    }

    // MARK: invites

    @Test(arguments: Backend.enabled)
    func anInviteIsFoundByItsDigestSpentOrNot(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let invite = try await self.invite(f, email: "in@example.com", role: .admin)
            #expect(try await f.storage.invite(digest: invite.digest) == invite)
            #expect(try await f.storage.invite(digest: Data([1, 2])) == nil)
            _ = try #require(try await f.storage.redeemInvite(
                digest: invite.digest, user: newUser(email: invite.email), now: .now, audit: testAudit))
            #expect(try await f.storage.invite(digest: invite.digest) == invite, "spent, still found")
        }
    }

    @Test(arguments: Backend.enabled)
    func redeemingCreatesTheUserInTheInvitesOrgWithItsRole(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let invite = try await self.invite(f, email: "join@example.com", role: .member)
            let presented = newUser(email: invite.email)
            let joined = try #require(try await f.storage.redeemInvite(
                digest: invite.digest, user: presented, now: .now, audit: testAudit))
            #expect(joined == User(
                id: presented.id, orgID: f.org.id, email: presented.email, passwordHash: presented.passwordHash,
                displayName: presented.displayName, role: .member, createdAt: presented.createdAt))
            #expect(try await f.storage.user(id: presented.id) == joined)
            #expect(try await f.storage.users(orgID: presented.orgID).isEmpty, "the org the sign-up named is not used")
        }
    }

    @Test(arguments: Backend.enabled)
    func aRefusedRedemptionStoresNothingAndLeavesTheInviteUnspent(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let expiry = Timestamp.now.adding(seconds: 600)
            let invite = try await self.invite(f, email: "due@example.com", role: .admin, expiresAt: expiry)
            let before = try await stored(f)
            #expect(try await f.storage.redeemInvite(
                digest: invite.digest, user: newUser(email: "else@example.com"), now: .now, audit: testAudit) == nil)
            #expect(try await f.storage.redeemInvite(
                digest: invite.digest, user: newUser(email: invite.email), now: expiry, audit: testAudit) == nil,
                "expired at its expiry")
            #expect(try await f.storage.redeemInvite(
                digest: Data([9]), user: newUser(email: invite.email), now: .now, audit: testAudit) == nil)
            #expect(try await stored(f) == before)
            #expect(try await f.storage.user(email: invite.email) == nil)
            #expect(try await f.storage.redeemInvite(
                digest: invite.digest, user: newUser(email: invite.email), now: Timestamp(milliseconds: expiry.milliseconds - 1),
                audit: testAudit)?.role == .admin, "still unspent, and valid until its expiry")
        }
    }

    @Test(arguments: Backend.enabled)
    func aTakenEmailRefusesTheRedemptionAndTheInviteStaysUnspent(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let member = try await join(f, role: .member)
            let invite = try await self.invite(f, email: member.email, role: .admin)
            let before = try await stored(f)
            await #expect(throws: StorageError.conflict) {
                try await f.storage.redeemInvite(digest: invite.digest, user: newUser(email: member.email), now: .now, audit: testAudit)
            }
            #expect(try await stored(f) == before)
            #expect(try await f.storage.removeUser(id: member.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.redeemInvite(
                digest: invite.digest, user: newUser(email: member.email), now: .now, audit: testAudit)?.role == .admin)
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentRedemptionsOfOneInviteCreateOneUser(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let invite = try await self.invite(f, email: "race@example.com", role: .member)
            let redeemed = try await withThrowingTaskGroup(of: User?.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await f.storage.redeemInvite(digest: invite.digest, user: newUser(email: invite.email), now: .now, audit: testAudit)
                    }
                }
                return try await group.reduce(into: [User?]()) { $0.append($1) }
            }
            let joined = redeemed.compactMap { $0 }
            #expect(joined.count == 1 && redeemed.count == 4)
            #expect(Set(try await f.storage.users(orgID: f.org.id).map(\.id)) == Set([f.owner.id] + joined.map(\.id)))
        }
    }

    // MARK: agents

    @Test(arguments: Backend.enabled)
    func agentsAreListedByOrgAndByKeyPrefixOldestFirst(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            var (later, earlier, elsewhere) = (agent(f), agent(f), agent(f, prefix: "ocv_zzzzzzzz"))
            later.createdAt = Timestamp(milliseconds: 2_000)
            earlier.createdAt = Timestamp(milliseconds: 1_000)
            let other = try await otherOrg(f)
            elsewhere.orgID = other.org.id
            for agent in [later, earlier, elsewhere] { try await f.storage.createAgent(agent, audit: testAudit) }
            #expect(try await f.storage.agents(orgID: f.org.id) == [earlier, later])
            #expect(try await f.storage.agents(orgID: other.org.id) == [elsewhere])
            #expect(try await f.storage.agents(keyPrefix: "ocv_abcdefgh") == [earlier, later])
            #expect(try await f.storage.agents(keyPrefix: "ocv_abcdefg").isEmpty, "the whole prefix, not a part")
            #expect(try await f.storage.agent(id: elsewhere.id) == elsewhere)
            #expect(try await f.storage.agent(id: UUID()) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func updatingAMissingAgentIsFalseAndStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let bot = agent(f)
            try await f.storage.createAgent(bot, audit: testAudit)
            let before = try await stored(f)
            var ghost = agent(f)
            ghost.name = "ghost"
            #expect(try await !f.storage.updateAgent(ghost, audit: testAudit))
            var moved = bot
            moved.orgID = UUID()
            moved.name = "moved"
            #expect(try await !f.storage.updateAgent(moved, audit: testAudit), "not in the org it names")
            #expect(try await stored(f) == before)
            #expect(try await f.storage.agent(id: ghost.id) == nil)
            #expect(try await f.storage.agent(id: bot.id) == bot)
        }
    }

    @Test(arguments: Backend.enabled)
    func deletingAnAgentTakesItsPoliciesAndRefreshTokensAndRevokesItsShares(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let (bot, peer) = (agent(f), agent(f, prefix: "ocv_peerpeer"))
            try await f.storage.createAgent(bot, audit: testAudit)
            try await f.storage.createAgent(peer, audit: testAudit)
            let peerPolicy = try policy(f, kind: .agent, id: peer.id)
            try await f.storage.createPolicy(try policy(f, kind: .agent, id: bot.id), audit: testAudit)
            try await f.storage.createPolicy(peerPolicy, audit: testAudit)
            try await f.storage.createRefreshToken(refreshToken(f, 1, kind: .agent, principal: bot.id), audit: testAudit)
            try await f.storage.createRefreshToken(refreshToken(f, 2, kind: .agent, principal: peer.id), audit: testAudit)
            let secret = try await write(f, "shared/by-agent")
            let (made, kept) = (share(f, secret: secret, creator: (.agent, bot.id)), share(f, secret: secret, creator: (.agent, peer.id)))
            try await f.storage.createShare(made, audit: testAudit)
            try await f.storage.createShare(kept, audit: testAudit)

            let before = try await stored(f)
            #expect(try await !f.storage.deleteAgent(id: bot.id, orgID: UUID(), audit: testAudit))
            #expect(try await !f.storage.deleteAgent(id: UUID(), orgID: f.org.id, audit: testAudit))
            #expect(try await stored(f) == before, "a refused delete stores nothing")

            #expect(try await f.storage.deleteAgent(id: bot.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.agents(orgID: f.org.id) == [peer])
            #expect(try await f.storage.policies(principalKind: .agent, principalID: bot.id).isEmpty)
            #expect(try await f.storage.spendRefreshToken(digest: Data([1]), now: .now) == nil)
            #expect(try await f.storage.share(id: made.id)?.revoked == true)
            #expect(try await f.storage.tokenSubject(kind: .agent, id: bot.id, tokenID: "jti-bot") == nil)
            #expect(try await f.storage.policies(principalKind: .agent, principalID: peer.id) == [peerPolicy])
            #expect(try await f.storage.spendRefreshToken(digest: Data([2]), now: .now)?.principalID == peer.id)
            #expect(try await f.storage.share(id: kept.id)?.revoked == false)
            #expect(try await !f.storage.deleteAgent(id: bot.id, orgID: f.org.id, audit: testAudit), "already gone")
        }
    }
}

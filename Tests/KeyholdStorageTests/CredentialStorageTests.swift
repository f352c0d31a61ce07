import Foundation
import KeyholdCore
import Testing

/// API keys, refresh and access tokens, and policies: the rules of `CredentialStore` and `PolicyStore` the other
/// cases leave out, on every backend.
extension StorageConformanceTests {
    // MARK: API keys

    @Test(arguments: Backend.enabled)
    func apiKeysAreFoundByIDByUserAndByPrefixOldestFirst(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let member = try await join(f, role: .member)
            let later = apiKey(f, createdAt: Timestamp(milliseconds: 2_000))
            let earlier = apiKey(f, createdAt: Timestamp(milliseconds: 1_000))
            let theirs = apiKey(f, user: member, createdAt: Timestamp(milliseconds: 3_000))
            for key in [later, earlier, theirs] { try await f.storage.createAPIKey(key, audit: testAudit) }
            #expect(try await f.storage.apiKey(id: earlier.id) == earlier)
            #expect(try await f.storage.apiKey(id: UUID()) == nil)
            #expect(try await f.storage.apiKeys(userID: f.owner.id) == [earlier, later])
            #expect(try await f.storage.apiKeys(userID: member.id) == [theirs])
            #expect(try await f.storage.apiKeys(userID: UUID()).isEmpty)
            #expect(try await f.storage.apiKeys(keyPrefix: "1ck_abcdefgh") == [earlier, later, theirs])
            #expect(try await f.storage.apiKeys(keyPrefix: "1ck_abcd").isEmpty, "the whole prefix, not a part")
        }
    }

    @Test(arguments: Backend.enabled)
    func aKeyIsDeactivatedOnlyByItsUserOnlyOnceAndARefusalStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let member = try await join(f, role: .admin)
            let key = apiKey(f)
            try await f.storage.createAPIKey(key, audit: testAudit)
            let before = try await stored(f)
            #expect(try await !f.storage.deactivateAPIKey(id: key.id, userID: member.id, audit: testAudit))
            #expect(try await !f.storage.deactivateAPIKey(id: UUID(), userID: f.owner.id, audit: testAudit))
            #expect(try await stored(f) == before)
            #expect(try await f.storage.apiKey(id: key.id)?.isActive == true)

            #expect(try await f.storage.deactivateAPIKey(id: key.id, userID: f.owner.id, audit: testAudit))
            let deactivated = try await stored(f)
            #expect(deactivated.apiKeys.map(\.isActive) == [false])
            #expect(try await !f.storage.deactivateAPIKey(id: key.id, userID: f.owner.id, audit: testAudit), "no longer active")
            #expect(try await stored(f) == deactivated)
        }
    }

    // MARK: refresh tokens

    @Test(arguments: Backend.enabled)
    func aRefreshTokenIsSpentAsItWasCreatedAndOnlyBeforeItExpires(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let expiry = Timestamp.now.adding(seconds: 600)
            let (token, expiring) = (refreshToken(f, 1, expiresAt: expiry), refreshToken(f, 2, expiresAt: expiry))
            try await f.storage.createRefreshToken(token, audit: testAudit)
            try await f.storage.createRefreshToken(expiring, audit: testAudit)
            #expect(try await f.storage.spendRefreshToken(
                digest: token.digest, now: Timestamp(milliseconds: expiry.milliseconds - 1)) == token)
            #expect(try await f.storage.spendRefreshToken(digest: expiring.digest, now: expiry) == nil, "expired at its expiry")
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentSpendsOfOneRefreshTokenSucceedOnceAndEndItsFamily(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let family = UUID()
            let (token, sibling) = (refreshToken(f, 1, family: family), refreshToken(f, 2, family: family))
            try await f.storage.createRefreshToken(token, audit: testAudit)
            try await f.storage.createRefreshToken(sibling, audit: testAudit)
            let spent = try await withThrowingTaskGroup(of: RefreshTokenRecord?.self) { group in
                for _ in 0..<4 { group.addTask { try await f.storage.spendRefreshToken(digest: token.digest, now: .now) } }
                return try await group.reduce(into: [RefreshTokenRecord?]()) { $0.append($1) }
            }
            #expect(spent.count == 4 && spent.compactMap { $0 } == [token])
            #expect(try await f.storage.spendRefreshToken(digest: sibling.digest, now: .now) == nil, "the reuse ended the family")
            await #expect(throws: KeyholdError(.unauthorized, "")) {
                try await f.storage.createRefreshToken(refreshToken(f, 3, family: family), audit: testAudit)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func noTokenJoiningAFamilyDuringLogoutOutlivesIt(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let family = UUID()
            try await f.storage.createRefreshToken(refreshToken(f, 0, family: family), audit: testAudit)
            let digests = (1...5).map { UInt8($0) }
            // Each join either commits before the logout (which then deletes it) or is refused after it; any
            // other error fails the test.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await f.storage.revokeToken(
                        id: "jti-logout", expiresAt: Timestamp.now.adding(seconds: 600), refreshFamily: family, audit: testAudit)
                }
                for digest in digests {
                    group.addTask {
                        do {
                            try await f.storage.createRefreshToken(refreshToken(f, digest, family: family), audit: testAudit)
                        } catch let error as KeyholdError where error.code == .unauthorized {}
                    }
                }
                try await group.waitForAll()
            }
            for digest in [0] + digests {
                #expect(try await f.storage.spendRefreshToken(digest: Data([digest]), now: .now) == nil, "token \(digest)")
            }
        }
    }

    // MARK: access tokens

    @Test(arguments: Backend.enabled)
    func aRevokedTokenStaysRevokedWhateverTheFamily(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let family = UUID()
            try await f.storage.createRefreshToken(refreshToken(f, 1, family: family), audit: testAudit)
            try await f.storage.revokeToken(
                id: "jti-a", expiresAt: Timestamp.now.adding(seconds: 600), refreshFamily: nil, audit: testAudit)
            #expect(try await f.storage.isTokenRevoked(id: "jti-a"))
            #expect(try await f.storage.spendRefreshToken(digest: Data([1]), now: .now) != nil, "no family named, none ended")
            try await f.storage.revokeToken(
                id: "jti-a", expiresAt: Timestamp.now.adding(seconds: 600), refreshFamily: family, audit: testAudit)
            #expect(try await f.storage.isTokenRevoked(id: "jti-a"), "revoking again keeps it revoked")
            #expect(try await !f.storage.isTokenRevoked(id: "jti-b"))
            await #expect(throws: KeyholdError(.unauthorized, ""), "the family named the second time ended") {
                try await f.storage.createRefreshToken(refreshToken(f, 2, family: family), audit: testAudit)
            }
        }
    }

    // MARK: policies

    @Test(arguments: Backend.enabled)
    func aPrincipalsPoliciesSpanEveryVault(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let second = try await vault(f)
            let bot = agent(f)
            try await f.storage.createAgent(bot, audit: testAudit)
            let here = try policy(f, kind: .agent, id: bot.id)
            let there = Policy(
                id: UUID(), vaultID: second.id, pattern: here.pattern, principalKind: .agent, principalID: bot.id,
                permissions: [.read], conditions: .none, expiresAt: nil, effect: .allow, priority: 0,
                createdBy: f.owner.id, createdByType: .user, createdAt: here.createdAt.adding(seconds: 1))
            let owners = try policy(f, kind: .user, id: f.owner.id)
            for policy in [there, here, owners] { try await f.storage.createPolicy(policy, audit: testAudit) }
            #expect(try await f.storage.policies(principalKind: .agent, principalID: bot.id) == [here, there])
            #expect(try await f.storage.policies(principalKind: .user, principalID: bot.id).isEmpty)
            #expect(try await f.storage.policies(vaultID: second.id, principalKind: .agent, principalID: bot.id) == [there])
            #expect(try await f.storage.policies(vaultID: f.vault.id, principalKind: .agent, principalID: bot.id) == [here])
            #expect(try await f.storage.vaultAndPolicies(
                id: second.id, orgID: f.org.id, principalKind: .agent, principalID: bot.id)?.1 == [there])
        }
    }

    @Test(arguments: Backend.enabled)
    func aVaultsPoliciesComeHighestPriorityFirst(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let base = try policy(f, kind: .user, id: f.owner.id)
            let policies = [3, 9, 1].map { priority in
                Policy(
                    id: UUID(), vaultID: f.vault.id, pattern: base.pattern, principalKind: .user, principalID: f.owner.id,
                    permissions: [.read], conditions: .none, expiresAt: nil, effect: .allow, priority: priority,
                    createdBy: f.owner.id, createdByType: .user, createdAt: base.createdAt)
            }
            for policy in policies { try await f.storage.createPolicy(policy, audit: testAudit) }
            #expect(try await f.storage.policies(vaultID: f.vault.id).map(\.priority) == [9, 3, 1])
            #expect(try await f.storage.policies(vaultID: UUID()).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func changingAPolicyOfAnotherVaultOrNoneIsFalseAndStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let second = try await vault(f)
            let granted = try policy(f, kind: .user, id: f.owner.id)
            try await f.storage.createPolicy(granted, audit: testAudit)
            let before = try await stored(f)
            func denying(id: UUID, vaultID: UUID) -> Policy {
                Policy(
                    id: id, vaultID: vaultID, pattern: granted.pattern, principalKind: .user, principalID: f.owner.id,
                    permissions: [.read], conditions: .none, expiresAt: nil, effect: .deny, priority: 1,
                    createdBy: f.owner.id, createdByType: .user, createdAt: .now)
            }
            #expect(try await !f.storage.updatePolicy(denying(id: granted.id, vaultID: second.id), audit: testAudit))
            #expect(try await !f.storage.updatePolicy(denying(id: UUID(), vaultID: f.vault.id), audit: testAudit))
            #expect(try await !f.storage.deletePolicy(id: granted.id, vaultID: second.id, audit: testAudit))
            #expect(try await !f.storage.deletePolicy(id: UUID(), vaultID: f.vault.id, audit: testAudit))
            #expect(try await stored(f) == before)
            #expect(try await f.storage.policy(id: granted.id, vaultID: f.vault.id) == granted)
        }
    }
}

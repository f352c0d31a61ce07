import Foundation
import KeyholdCore
import Testing

/// TOTP enrolments (`MFAStore`), on every backend: a step accepted once, recovery codes spent once, a challenge
/// token used once, the pending setup replaced but never an enabled one, and a sealed row.
extension StorageConformanceTests {
    static let mfaSecret = Data("sealed-totp-secret".utf8)

    func digest(_ byte: UInt8) -> Data { Data(repeating: byte, count: MFAEnrollment.digestLength) }

    /// The owner's enrolment, enabled at step 100 with recovery codes 1, 2 and 3.
    @discardableResult
    func enableMFA(_ f: Fixture, user: User? = nil) async throws -> MFAEnrollment {
        let user = user ?? f.owner
        let pending = MFAEnrollment(
            userID: user.id, orgID: user.orgID, sealedSecret: Self.mfaSecret, enabledAt: nil, lastStep: nil,
            recoveryDigests: [], createdAt: .now)
        #expect(try await f.storage.beginMFAEnrollment(pending, audit: testAudit))
        #expect(try await f.storage.mfaEnrollment(userID: user.id) == pending)
        let at = Timestamp.now
        #expect(try await f.storage.enableMFA(
            userID: user.id, sealedSecret: Self.mfaSecret, step: 100, recoveryDigests: [digest(1), digest(2), digest(3)],
            at: at, audit: testAudit))
        let enabled = try #require(try await f.storage.mfaEnrollment(userID: user.id))
        #expect(enabled.isEnabled && enabled.enabledAt == at && enabled.lastStep == 100)
        #expect(enabled.recoveryDigests == [digest(1), digest(2), digest(3)])
        return enabled
    }

    @Test(arguments: Backend.enabled)
    func anMFASetupIsEnabledOnlyWithItsOwnSecretAndNeverReplacedOnceOn(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            #expect(try await f.storage.mfaEnrollment(userID: f.owner.id) == nil)
            let first = MFAEnrollment(
                userID: f.owner.id, orgID: f.org.id, sealedSecret: Data("old".utf8), enabledAt: nil, lastStep: nil,
                recoveryDigests: [], createdAt: .now)
            #expect(try await f.storage.beginMFAEnrollment(first, audit: testAudit))
            // Started again: the new secret replaces the pending one, and a code of the old one enables nothing.
            try await enableMFA(f)
            #expect(try await !f.storage.enableMFA(
                userID: f.owner.id, sealedSecret: Self.mfaSecret, step: 200, recoveryDigests: [], at: .now, audit: testAudit),
                "already enabled")
            let head = try await f.storage.auditHead(orgID: f.org.id)
            #expect(try await !f.storage.beginMFAEnrollment(first, audit: testAudit), "an enabled enrolment stays")
            #expect(try await f.storage.mfaEnrollment(userID: f.owner.id)?.sealedSecret == Self.mfaSecret)
            #expect(try await f.storage.auditHead(orgID: f.org.id) == head, "a refused change writes no event")
            #expect(try await !f.storage.enableMFA(
                userID: UUID(), sealedSecret: Self.mfaSecret, step: 1, recoveryDigests: [], at: .now, audit: testAudit))
        }
    }

    @Test(arguments: Backend.enabled)
    func aStepIsAcceptedOnceAndOnlyAfterTheLastOne(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await enableMFA(f)
            func accept(_ step: Int64, secret: Data = Self.mfaSecret) async throws -> Int? {
                try await f.storage.acceptMFA(
                    userID: f.owner.id, proof: .totp(step: step), sealedSecret: secret, spendingToken: nil, audit: testAudit)
            }
            #expect(try await accept(100) == nil, "the step that enabled it")
            #expect(try await accept(99) == nil)
            #expect(try await accept(101) == 3)
            #expect(try await accept(101) == nil, "replayed")
            #expect(try await accept(103, secret: Data("other".utf8)) == nil, "a secret replaced meanwhile")
            #expect(try await accept(103) == 3)
            #expect(try await accept(102) == nil, "an earlier step after a later one")
            #expect(try await f.storage.mfaEnrollment(userID: f.owner.id)?.lastStep == 103)
        }
    }

    @Test(arguments: Backend.enabled)
    func recoveryCodesAndChallengesAreSpentOnce(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await enableMFA(f)
            let challenge = (id: "mfa:\(UUID().wire)", expiresAt: Timestamp.now.adding(seconds: 300))
            func recover(_ byte: UInt8, token: (id: String, expiresAt: Timestamp)? = nil) async throws -> Int? {
                try await f.storage.acceptMFA(
                    userID: f.owner.id, proof: .recovery(digest: digest(byte)), sealedSecret: Self.mfaSecret,
                    spendingToken: token, audit: testAudit)
            }
            #expect(try await recover(2, token: challenge) == 2)
            #expect(try await recover(3, token: challenge) == nil, "the challenge was used")
            #expect(try await recover(2) == nil, "spent")
            #expect(try await recover(9) == nil, "unknown")
            #expect(try await f.storage.mfaEnrollment(userID: f.owner.id)?.recoveryDigests == [digest(1), digest(3)])
            #expect(try await recover(3) == 1)
            // Concurrent uses of one code: exactly one succeeds.
            let results = try await withThrowingTaskGroup(of: Int?.self) { group in
                for _ in 0..<8 { group.addTask { try await recover(1) } }
                return try await group.reduce(into: [Int?]()) { $0.append($1) }
            }
            #expect(results.compactMap { $0 } == [0])
        }
    }

    @Test(arguments: Backend.enabled)
    func disablingNeedsAnAcceptedProofAndMFAGoesWithItsUser(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await enableMFA(f)
            #expect(try await !f.storage.disableMFA(
                userID: f.owner.id, proof: .totp(step: 100), sealedSecret: Self.mfaSecret, audit: testAudit), "replayed step")
            #expect(try await f.storage.mfaEnrollment(userID: f.owner.id)?.isEnabled == true)
            #expect(try await f.storage.disableMFA(
                userID: f.owner.id, proof: .recovery(digest: digest(1)), sealedSecret: Self.mfaSecret, audit: testAudit))
            #expect(try await f.storage.mfaEnrollment(userID: f.owner.id) == nil)
            #expect(try await !f.storage.disableMFA(
                userID: f.owner.id, proof: .recovery(digest: digest(2)), sealedSecret: Self.mfaSecret, audit: testAudit))

            let member = try await join(f, role: .member)
            try await enableMFA(f, user: member)
            #expect(try await f.storage.removeUser(id: member.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.mfaEnrollment(userID: member.id) == nil)
        }
    }
}

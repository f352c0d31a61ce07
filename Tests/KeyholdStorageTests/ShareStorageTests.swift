import Foundation
import KeyholdCore
import Testing

extension StorageConformanceTests {
    func share(_ f: Fixture, secret: SecretVersionInfo, max: Int? = nil, expiresAt: Timestamp = Timestamp.now.adding(seconds: 600)) -> Share {
        Share(
            id: UUID(), orgID: f.org.id, secretID: secret.secretID, vaultID: f.vault.id, path: secret.path,
            createdByType: .user, createdBy: f.owner.id, recipientType: .anyoneWithLink, recipientID: nil,
            recipientEmail: nil, expiresAt: expiresAt, maxAccessCount: max, accessCount: 0, passphraseHash: "$2b$x",
            ipAllowlist: [CIDR("10.0.0.0/8")!], status: .accepted, revoked: false, createdAt: Timestamp(milliseconds: 1_000))
    }

    @Test(arguments: Backend.enabled)
    func sharesRoundTripAndRevoke(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/key")
            #expect(try await f.storage.secretLocation(id: secret.secretID) == SecretLocation(
                secretID: secret.secretID, vaultID: f.vault.id, orgID: f.org.id, path: "shared/key"))
            #expect(try await f.storage.secretLocation(id: UUID()) == nil)
            let link = share(f, secret: secret, max: 3)
            try await f.storage.createShare(link, audit: testAudit)
            #expect(try await f.storage.share(id: link.id) == link)
            #expect(try await f.storage.outboundShares(creatorType: .user, creatorID: f.owner.id).map(\.id) == [link.id])
            #expect(try await f.storage.outboundShares(creatorType: .agent, creatorID: f.owner.id).isEmpty)
            #expect(try await !f.storage.revokeShare(id: link.id, creatorType: .user, creatorID: UUID(), audit: testAudit))
            #expect(try await f.storage.revokeShare(id: link.id, creatorType: .user, creatorID: f.owner.id, audit: testAudit))
            #expect(try await f.storage.share(id: link.id)?.revoked == true)
            await #expect(throws: KeyholdError.notFound("")) { try await f.storage.accessShare(id: link.id, now: .now, audit: testAudit) }
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "shared/key", at: .now, audit: testAudit))
            #expect(try await f.storage.secretLocation(id: secret.secretID) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func shareAccessCountIsExactUnderConcurrency(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/hot")
            let link = share(f, secret: secret, max: 4)
            try await f.storage.createShare(link, audit: testAudit)
            let opened = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<25 {
                    group.addTask { (try? await f.storage.accessShare(id: link.id, now: .now, audit: testAudit)) != nil }
                }
                return await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
            }
            #expect(opened == 4)
            #expect(try await f.storage.share(id: link.id)?.accessCount == 4)
            await #expect(throws: KeyholdError.gone("")) { try await f.storage.accessShare(id: link.id, now: .now, audit: testAudit) }
            let (_, sealed) = try await f.storage.accessShare(id: try await {
                let again = share(f, secret: secret)
                try await f.storage.createShare(again, audit: testAudit)
                return again.id
            }(), now: .now, audit: testAudit)
            #expect(sealed.ciphertext == Data("sealed-v1".utf8), "a share opens the latest version")
        }
    }

    @Test(arguments: Backend.enabled)
    func expiredDeclinedAndDeletedSharesAreGone(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/x")
            let expiring = share(f, secret: secret, expiresAt: Timestamp.now.adding(seconds: 5))
            try await f.storage.createShare(expiring, audit: testAudit)
            await #expect(throws: KeyholdError.gone("")) {
                try await f.storage.accessShare(id: expiring.id, now: Timestamp.now.adding(seconds: 6), audit: testAudit)
            }
            let pending = Share(
                id: UUID(), orgID: f.org.id, secretID: secret.secretID, vaultID: f.vault.id, path: secret.path,
                createdByType: .user, createdBy: f.owner.id, recipientType: .user, recipientID: f.owner.id,
                recipientEmail: nil, expiresAt: Timestamp.now.adding(seconds: 60), maxAccessCount: nil, accessCount: 0,
                passphraseHash: nil, ipAllowlist: [], status: .pending, revoked: false, createdAt: .now)
            try await f.storage.createShare(pending, audit: testAudit)
            #expect(try await f.storage.inboundShares(recipientID: f.owner.id, email: nil).map(\.id) == [pending.id])
            #expect(try await f.storage.answerShare(id: pending.id, status: .declined, audit: testAudit))
            #expect(try await !f.storage.answerShare(id: pending.id, status: .accepted, audit: testAudit))
            await #expect(throws: KeyholdError.gone("")) { try await f.storage.accessShare(id: pending.id, now: .now, audit: testAudit) }
            let live = share(f, secret: secret)
            try await f.storage.createShare(live, audit: testAudit)
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "shared/x", at: .now, audit: testAudit))
            await #expect(throws: KeyholdError.gone("")) { try await f.storage.accessShare(id: live.id, now: .now, audit: testAudit) }
            #expect(try await f.storage.share(id: live.id)?.accessCount == 0, "a refused access is not counted")
        }
    }
}

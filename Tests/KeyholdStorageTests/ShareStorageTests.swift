import Foundation
import KeyholdCore
import Testing

extension StorageConformanceTests {
    func share(
        _ f: Fixture, secret: SecretVersionInfo, max: Int? = nil, expiresAt: Timestamp = Timestamp.now.adding(seconds: 600),
        version: Int? = nil, recipient: ShareRecipientType = .anyoneWithLink, recipientID: UUID? = nil,
        email: String? = nil, status: ShareStatus = .accepted, creator: (kind: PrincipalKind, id: UUID)? = nil,
        createdAt: Timestamp = Timestamp(milliseconds: 1_000)
    ) -> Share {
        Share(
            id: UUID(), orgID: f.org.id, secretID: secret.secretID, vaultID: f.vault.id, path: secret.path,
            createdByType: creator?.kind ?? .user, createdBy: creator?.id ?? f.owner.id, recipientType: recipient,
            recipientID: recipientID, recipientEmail: email, expiresAt: expiresAt, maxAccessCount: max, accessCount: 0,
            passphraseHash: "$2b$x", ipAllowlist: [CIDR("10.0.0.0/8")!], status: status, revoked: false,
            createdAt: createdAt, version: version, claimDigest: nil, reference: UUID())
    }

    @Test(arguments: Backend.enabled)
    func sharesRoundTripAndRevoke(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/key")
            #expect(try await f.storage.secretLocation(id: secret.secretID) == SecretLocation(
                secretID: secret.secretID, vaultID: f.vault.id, orgID: f.org.id, path: "shared/key", currentVersion: 1))
            #expect(try await f.storage.secretLocation(id: UUID()) == nil)
            let link = share(f, secret: secret, max: 3)
            try await f.storage.createShare(link, audit: testAudit)
            #expect(try await f.storage.share(id: link.id) == link)
            #expect(try await f.storage.share(reference: link.reference) == link)
            #expect(try await f.storage.share(reference: link.id) == nil)
            #expect(try await f.storage.outboundShares(creatorType: .user, creatorID: f.owner.id).map(\.id) == [link.id])
            #expect(try await f.storage.outboundShares(creatorType: .agent, creatorID: f.owner.id).isEmpty)
            #expect(try await f.storage.orgShares(orgID: f.org.id).map(\.id) == [link.id])
            #expect(try await f.storage.orgShares(orgID: UUID()).isEmpty)
            #expect(try await !f.storage.revokeShare(id: UUID(), audit: testAudit))
            #expect(try await f.storage.revokeShare(id: link.id, audit: testAudit))
            #expect(try await !f.storage.revokeShare(id: link.id, audit: testAudit), "already revoked")
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
    func pinnedSharesServeTheirVersionAndOthersTheLatest(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let first = try await write(f, "shared/pinned")
            _ = try await write(f, "shared/pinned")
            #expect(try await f.storage.secretLocation(id: first.secretID)?.currentVersion == 2)
            let pinned = share(f, secret: first, version: 1)
            let latest = share(f, secret: first)
            try await f.storage.createShare(pinned, audit: testAudit)
            try await f.storage.createShare(latest, audit: testAudit)
            #expect(try await f.storage.share(id: pinned.id)?.version == 1)
            #expect(try await f.storage.accessShare(id: pinned.id, now: .now, audit: testAudit).1.ciphertext == Data("sealed-v1".utf8))
            #expect(try await f.storage.accessShare(id: latest.id, now: .now, audit: testAudit).1.ciphertext == Data("sealed-v2".utf8))
        }
    }

    @Test(arguments: Backend.enabled)
    func claimingBindsTheRecipientAndSpendsTheToken(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/claimed")
            let claimant = UUID()
            let pending = Share(
                id: UUID(), orgID: f.org.id, secretID: secret.secretID, vaultID: f.vault.id, path: secret.path,
                createdByType: .user, createdBy: f.owner.id, recipientType: .externalEmail, recipientID: nil,
                recipientEmail: "x@example.com", expiresAt: Timestamp.now.adding(seconds: 60), maxAccessCount: nil,
                accessCount: 0, passphraseHash: nil, ipAllowlist: [], status: .pending, revoked: false, createdAt: .now,
                version: 1, claimDigest: Data(repeating: 7, count: 32), reference: UUID())
            try await f.storage.createShare(pending, audit: testAudit)
            #expect(try await f.storage.share(id: pending.id)?.claimDigest == Data(repeating: 7, count: 32))
            #expect(try await f.storage.inboundShares(recipientID: UUID(), email: "x@example.com").map(\.id) == [pending.id])
            #expect(try await f.storage.answerShare(id: pending.id, status: .accepted, recipientID: claimant, audit: testAudit))
            let claimed = try await f.storage.share(id: pending.id)
            #expect(claimed?.recipientID == claimant && claimed?.claimDigest == nil && claimed?.status == .accepted)
            #expect(try await !f.storage.answerShare(id: pending.id, status: .accepted, recipientID: UUID(), audit: testAudit))
            #expect(try await f.storage.share(id: pending.id)?.recipientID == claimant, "a second claim changes nothing")
        }
    }

    @Test(arguments: Backend.enabled)
    func deletingASecretRevokesItsSharesAndItsPathStartsAfresh(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let old = try await write(f, "shared/reborn")
            _ = try await write(f, "shared/reborn")
            let link = share(f, secret: old)
            try await f.storage.createShare(link, audit: testAudit)
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "shared/reborn", at: .now, audit: testAudit))
            #expect(try await f.storage.share(id: link.id)?.revoked == true)
            let reborn = try await write(f, "shared/reborn")
            #expect(reborn.secretID != old.secretID, "a secret written at a deleted path is a new secret")
            #expect(reborn.version == 1)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "shared/reborn").map(\.version) == [1])
            await #expect(throws: KeyholdError.notFound("")) { try await f.storage.accessShare(id: link.id, now: .now, audit: testAudit) }
        }
    }

    @Test(arguments: Backend.enabled)
    func expiredAndDeclinedSharesAreGoneAndADeletedSecretsSharesRevoked(_ backend: Backend) async throws {
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
                passphraseHash: nil, ipAllowlist: [], status: .pending, revoked: false, createdAt: .now, version: nil,
                claimDigest: nil, reference: UUID())
            try await f.storage.createShare(pending, audit: testAudit)
            #expect(try await f.storage.inboundShares(recipientID: f.owner.id, email: nil).map(\.id) == [pending.id])
            #expect(try await f.storage.answerShare(id: pending.id, status: .declined, recipientID: nil, audit: testAudit))
            #expect(try await !f.storage.answerShare(id: pending.id, status: .accepted, recipientID: nil, audit: testAudit))
            await #expect(throws: KeyholdError.gone("")) { try await f.storage.accessShare(id: pending.id, now: .now, audit: testAudit) }
            let live = share(f, secret: secret)
            try await f.storage.createShare(live, audit: testAudit)
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "shared/x", at: .now, audit: testAudit))
            await #expect(throws: KeyholdError.notFound("")) { try await f.storage.accessShare(id: live.id, now: .now, audit: testAudit) }
            #expect(try await f.storage.share(id: live.id)?.accessCount == 0, "a refused access is not counted")
        }
    }
}

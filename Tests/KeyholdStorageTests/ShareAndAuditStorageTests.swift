import Foundation
import KeyholdCore
import Testing

/// Share listings and answers, and the audit log's listings: the rules of `ShareStore` and `AuditStore` the other
/// cases leave out, on every backend.
extension StorageConformanceTests {
    // MARK: shares

    @Test(arguments: Backend.enabled)
    func orgAndOutboundSharesComeNewestFirst(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/listed")
            let bot = agent(f)
            try await f.storage.createAgent(bot, audit: testAudit)
            let mine = [1_000, 3_000, 2_000].map { share(f, secret: secret, createdAt: Timestamp(milliseconds: $0)) }
            let botsShare = share(f, secret: secret, creator: (.agent, bot.id), createdAt: Timestamp(milliseconds: 4_000))
            for share in mine + [botsShare] { try await f.storage.createShare(share, audit: testAudit) }
            #expect(try await f.storage.orgShares(orgID: f.org.id).map(\.id) == [botsShare, mine[1], mine[2], mine[0]].map(\.id))
            #expect(try await f.storage.outboundShares(creatorType: .user, creatorID: f.owner.id).map(\.id)
                    == [mine[1], mine[2], mine[0]].map(\.id))
            #expect(try await f.storage.outboundShares(creatorType: .agent, creatorID: bot.id) == [botsShare])
            #expect(try await f.storage.outboundShares(creatorType: .user, creatorID: bot.id).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func inboundSharesMatchTheRecipientByIDOrByEmail(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/inbound")
            let (member, stranger) = (UUID(), UUID())
            let byID = share(f, secret: secret, recipient: .user, recipientID: member, createdAt: Timestamp(milliseconds: 1_000))
            let byEmail = share(
                f, secret: secret, recipient: .externalEmail, email: "m@example.com", status: .pending,
                createdAt: Timestamp(milliseconds: 2_000))
            let elsewhere = share(
                f, secret: secret, recipient: .user, recipientID: stranger, createdAt: Timestamp(milliseconds: 3_000))
            let link = share(f, secret: secret, createdAt: Timestamp(milliseconds: 4_000))
            for share in [byID, byEmail, elsewhere, link] { try await f.storage.createShare(share, audit: testAudit) }
            #expect(try await f.storage.inboundShares(recipientID: member, email: "m@example.com").map(\.id) == [byEmail.id, byID.id])
            #expect(try await f.storage.inboundShares(recipientID: member, email: nil) == [byID])
            #expect(try await f.storage.inboundShares(recipientID: UUID(), email: "m@example.com") == [byEmail])
            #expect(try await f.storage.inboundShares(recipientID: UUID(), email: "n@example.com").isEmpty)
            #expect(try await f.storage.inboundShares(recipientID: stranger, email: nil) == [elsewhere])
        }
    }

    @Test(arguments: Backend.enabled)
    func answeringARevokedOrMissingShareIsFalseAndStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/answered")
            let pending = share(f, secret: secret, recipient: .externalEmail, email: "p@example.com", status: .pending)
            try await f.storage.createShare(pending, audit: testAudit)
            #expect(try await f.storage.revokeShare(id: pending.id, audit: testAudit))
            let before = try await stored(f)
            #expect(try await !f.storage.answerShare(id: pending.id, status: .accepted, recipientID: UUID(), audit: testAudit))
            #expect(try await !f.storage.answerShare(id: pending.id, status: .declined, recipientID: nil, audit: testAudit))
            #expect(try await !f.storage.answerShare(id: UUID(), status: .accepted, recipientID: nil, audit: testAudit))
            #expect(try await stored(f) == before)
            let kept = try #require(try await f.storage.share(id: pending.id))
            #expect(kept.status == .pending && kept.recipientID == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func revokingAMissingOrRevokedShareIsFalseAndStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let link = share(f, secret: try await write(f, "shared/revoked"))
            try await f.storage.createShare(link, audit: testAudit)
            #expect(try await f.storage.revokeShare(id: link.id, audit: testAudit))
            let before = try await stored(f)
            #expect(try await !f.storage.revokeShare(id: link.id, audit: testAudit))
            #expect(try await !f.storage.revokeShare(id: UUID(), audit: testAudit))
            #expect(try await stored(f) == before)
        }
    }

    @Test(arguments: Backend.enabled)
    func accessingAShareCountsTheVersionsReadAndARefusalCountsNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let secret = try await write(f, "shared/counted", maxAccessCount: 2)
            let link = share(f, secret: secret)
            try await f.storage.createShare(link, audit: testAudit)
            let (opened, sealed) = try await f.storage.accessShare(id: link.id, now: .now, audit: testAudit)
            #expect(opened.accessCount == 1 && sealed.info.accessCount == 1)
            #expect(try await read(f, "shared/counted").info.accessCount == 2, "the share's read counted against the version")
            let before = try await stored(f)
            await #expect(throws: KeyholdError.gone("")) { try await f.storage.accessShare(id: link.id, now: .now, audit: testAudit) }
            #expect(try await stored(f) == before, "neither the share's count nor the version's moved")
            await #expect(throws: KeyholdError.notFound("")) { try await f.storage.accessShare(id: UUID(), now: .now, audit: testAudit) }
        }
    }

    // MARK: audit

    @Test(arguments: Backend.enabled)
    func theAuditHeadIsNilBeforeTheFirstEventAndThenNamesTheLast(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            #expect(try await f.storage.auditHead(orgID: f.org.id) == nil)
            #expect(try await f.storage.auditHead(orgID: UUID()) == nil)
            for action in ["one", "two", "three"] { try await f.storage.appendAudit(record(f, action)) }
            let last = try #require(try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter(limit: 1)).first)
            #expect(last.entry.action == "three" && last.sequence == 3)
            #expect(try await f.storage.auditHead(orgID: f.org.id)
                    == AuditHead(eventID: last.id, sequence: 3, hash: last.integrityHash))
        }
    }

    @Test(arguments: Backend.enabled)
    func auditEventsFilterByResourceActorAndTimeNewestFirst(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            for (action, resource) in [("read", "r1"), ("read", "r2"), ("write", "r1"), ("read", "r1")] {
                try await f.storage.appendAudit(record(f, action, resource: resource))
            }
            let all = try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter())
            #expect(all.map(\.sequence) == [4, 3, 2, 1])
            func sequences(_ filter: AuditFilter) async throws -> [Int64] {
                try await f.storage.auditEvents(orgID: f.org.id, filter: filter).map(\.sequence)
            }
            #expect(try await sequences(AuditFilter(resourceID: "r1")) == [4, 3, 1])
            #expect(try await sequences(AuditFilter(action: "read", resourceID: "r1")) == [4, 1])
            #expect(try await sequences(AuditFilter(actorID: f.owner.id.wire, limit: 2)) == [4, 3])
            let middle = all[2].createdAt
            #expect(try await sequences(AuditFilter(from: middle)) == all.filter { $0.createdAt >= middle }.map(\.sequence))
            #expect(try await sequences(AuditFilter(to: middle)) == all.filter { $0.createdAt <= middle }.map(\.sequence))
            #expect(try await sequences(AuditFilter(from: middle, to: middle)) == all.filter { $0.createdAt == middle }.map(\.sequence))
            #expect(try await sequences(AuditFilter(to: Timestamp(milliseconds: all[3].createdAt.milliseconds - 1))).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func auditChainPagesCoverEachOrgsChainOnceInOrder(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let other = try await otherOrg(f)
            for index in 0..<7 {
                try await f.storage.appendAudit(record(f, "event.\(index)"))
                if index < 2 {
                    try await f.storage.appendAudit(AuditRecord(
                        AuditEntry(orgID: other.org.id, actorType: .user, actorID: nil, action: "elsewhere",
                                   resourceType: "org", resourceID: nil, ipAddress: nil),
                        chain: testChain))
                }
            }
            var pages: [[AuditEvent]] = []
            var after: Int64 = 0
            repeat {
                pages.append(try await f.storage.auditChain(orgID: f.org.id, afterSequence: after, limit: 3))
                after = pages.last?.last?.sequence ?? after
            } while pages.last?.isEmpty == false
            #expect(pages.map { $0.map(\.sequence) } == [[1, 2, 3], [4, 5, 6], [7], []])
            #expect(pages.joined().map(\.entry.action) == (0..<7).map { "event.\($0)" })
            #expect(try await f.storage.auditChain(orgID: other.org.id, afterSequence: 0, limit: 10).map(\.entry.action)
                    == ["elsewhere", "elsewhere"])
            #expect(try await f.storage.auditChain(orgID: UUID(), afterSequence: 0, limit: 10).isEmpty)
        }
    }
}

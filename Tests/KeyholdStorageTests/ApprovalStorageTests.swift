import Foundation
import KeyholdCore
import Testing

/// Approvals (`ApprovalStore`) on every backend: one pending request per requester and target; a decision mints the
/// lease; a gated read spends one use in its own transaction, exactly under concurrency; expiry; the row is sealed.
extension StorageConformanceTests {
    func pendingRead(_ f: Fixture, requester: UUID, path: String = "db/password", rule: ApprovalRule = ApprovalRule(maxUses: 2),
                     createdAt: Timestamp = .now, expiresIn: Int64 = 3_600_000) -> Approval {
        Approval(
            id: UUID(), orgID: f.org.id, userID: f.owner.id, requesterKind: .agent, requesterID: requester,
            action: Approval.secretRead, targetType: "secret", targetID: path, vaultID: f.vault.id, riskTier: 1,
            status: .pending, summary: .object(["path": .string(path)]), reason: nil, payload: nil, decisionReason: nil,
            decidedBy: nil, decidedAt: nil, expiresAt: Timestamp(milliseconds: createdAt.milliseconds + expiresIn),
            rule: rule, usesLeft: 0, leaseExpiresAt: nil, createdAt: createdAt)
    }

    func gatedRead(_ f: Fixture, requester: UUID, path: String = "db/password", now: Timestamp = .now) async throws
        -> SealedSecretVersion
    {
        try await f.storage.readVersion(
            vaultID: f.vault.id, path: path, version: nil, now: now, audit: testAudit,
            lease: (LeaseClaim(requesterKind: .agent, requesterID: requester, vaultID: f.vault.id, path: path), { _ in testAudit }),
            refusing: [])
    }

    func approve(_ f: Fixture, _ id: UUID, now: Timestamp = .now) async throws -> Approval? {
        try await f.storage.decideApproval(
            id: id, orgID: f.org.id, status: .approved, by: f.owner.id, reason: nil, now: now, policy: nil, revokingLease: false,
            audit: { _ in testAudit }
        )?.approval
    }

    @Test(arguments: Backend.enabled)
    func aPendingRequestIsSharedAndAnApprovalMintsALeaseOfExactUses(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await writeCMEK(f, "db/password", fingerprint: nil)
            let agent = UUID()
            let first = try await f.storage.requestApproval(pendingRead(f, requester: agent), maxPending: 100, audit: testAudit) { _ in testAudit }
            #expect(first.created)
            let again = try await f.storage.requestApproval(pendingRead(f, requester: agent), maxPending: 100, audit: testAudit) { _ in testAudit }
            #expect(!again.created && again.approval.id == first.approval.id)
            // Another org sees nothing; a wrong org cannot decide it.
            let other = try await otherOrg(f)
            #expect(try await f.storage.approval(id: first.approval.id, orgID: other.org.id) == nil)
            #expect(try await f.storage.decideApproval(
                id: first.approval.id, orgID: other.org.id, status: .approved, by: other.owner.id, reason: nil, now: .now,
                policy: nil, revokingLease: false, audit: { _ in testAudit }) == nil)

            // No lease yet: the read fails and counts nothing.
            await #expect(throws: KeyholdError.noLease) { try await gatedRead(f, requester: agent) }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "db/password").map(\.accessCount) == [0])

            let approved = try #require(try await approve(f, first.approval.id))
            #expect(approved.status == .approved && approved.usesLeft == 2 && approved.leaseExpiresAt != nil)
            // Decided once: a second decision changes nothing.
            let second = try await f.storage.decideApproval(
                id: first.approval.id, orgID: f.org.id, status: .rejected, by: f.owner.id, reason: nil, now: .now,
                policy: nil, revokingLease: false, audit: { _ in testAudit })
            #expect(second?.changed == false && second?.approval.status == .approved)

            // Another requester's read and a read of another path do not use it; a missing version spends nothing.
            await #expect(throws: KeyholdError.noLease) { try await gatedRead(f, requester: UUID()) }
            try await writeCMEK(f, "db/other", fingerprint: nil)
            await #expect(throws: KeyholdError.noLease) { try await gatedRead(f, requester: agent, path: "db/other") }
            await #expect(throws: KeyholdError.notFound("")) {
                try await f.storage.readVersion(
                    vaultID: f.vault.id, path: "db/password", version: 9, now: .now, audit: testAudit,
                    lease: (LeaseClaim(requesterKind: .agent, requesterID: agent, vaultID: f.vault.id, path: "db/password"), { _ in testAudit }),
                    refusing: [])
            }
            _ = try await gatedRead(f, requester: agent)
            _ = try await gatedRead(f, requester: agent)
            await #expect(throws: KeyholdError.noLease) { try await gatedRead(f, requester: agent) }
            #expect(try await f.storage.approval(id: first.approval.id, orgID: f.org.id)?.usesLeft == 0)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "db/password").map(\.accessCount) == [2])
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentGatedReadsSpendExactlyTheLeasesUses(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await writeCMEK(f, "db/password", fingerprint: nil)
            let agent = UUID()
            let request = try await f.storage.requestApproval(
                pendingRead(f, requester: agent, rule: ApprovalRule(maxUses: 3)), maxPending: 100, audit: testAudit) { _ in testAudit }
            _ = try await approve(f, request.approval.id)
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        do {
                            _ = try await gatedRead(f, requester: agent)
                            return true
                        } catch let error as KeyholdError where error.type == "approval_required" {
                            return false
                        }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 3)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "db/password").map(\.accessCount) == [3])
        }
    }

    @Test(arguments: Backend.enabled)
    func expiredRequestsAndLeasesGrantNothingAndAreSweptOnce(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await writeCMEK(f, "db/password", fingerprint: nil)
            let agent = UUID()
            let past = Timestamp(milliseconds: Timestamp.now.milliseconds - 10_000)
            // A pending request past its expiry: not decidable, and a new request replaces it.
            let stale = try await f.storage.requestApproval(
                pendingRead(f, requester: agent, createdAt: past, expiresIn: 1_000), maxPending: 100, audit: testAudit) { _ in testAudit }
            let decided = try await f.storage.decideApproval(
                id: stale.approval.id, orgID: f.org.id, status: .approved, by: f.owner.id, reason: nil, now: .now,
                policy: nil, revokingLease: false, audit: { _ in testAudit })
            #expect(decided?.changed == false && decided?.approval.status == .expired)
            let fresh = try await f.storage.requestApproval(pendingRead(f, requester: agent), maxPending: 100, audit: testAudit) { _ in testAudit }
            #expect(fresh.created && fresh.approval.id != stale.approval.id)
            #expect(try await f.storage.approval(id: stale.approval.id, orgID: f.org.id)?.status == .expired)

            // A lease past its expiry grants nothing; the sweep ends it once.
            let approved = try #require(try await approve(f, fresh.approval.id))
            let later = Timestamp(milliseconds: try #require(approved.leaseExpiresAt).milliseconds + 1)
            await #expect(throws: KeyholdError.noLease) { try await gatedRead(f, requester: agent, now: later) }
            #expect(try await f.storage.expireApprovals(now: later, limit: 100) { _, _ in testAudit } == 1)
            #expect(try await f.storage.expireApprovals(now: later, limit: 100) { _, _ in testAudit } == 0)
            #expect(try await f.storage.approval(id: fresh.approval.id, orgID: f.org.id)?.usesLeft == 0)
            #expect(try await f.storage.approvals(
                orgID: f.org.id, status: .expired, requesterID: agent, userID: nil, now: later, limit: 10, offset: 0
            ).map(\.id) == [stale.approval.id])
        }
    }

    @Test(arguments: Backend.enabled)
    func anApprovalRowEditedWithSQLGrantsNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await writeCMEK(f, "db/password", fingerprint: nil)
            let agent = UUID()
            let request = try await f.storage.requestApproval(pendingRead(f, requester: agent), maxPending: 100, audit: testAudit) { _ in testAudit }
            _ = try await approve(f, request.approval.id)
            _ = try await gatedRead(f, requester: agent)
            // One use left; set back to two with SQL, the row no longer verifies and the read is refused.
            try await backend.execute(f.storage, "UPDATE approvals SET uses_left = 2 WHERE action = 'secret_read'")
            await #expect(throws: StoredDataError(table: "approvals", column: "seal", problem: "does not verify")) {
                try await gatedRead(f, requester: agent)
            }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "db/password").map(\.accessCount) == [1])
        }
    }

    @Test(arguments: Backend.enabled)
    func aRevokedLeaseGrantsNothingAndPendingRequestsAreCapped(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await writeCMEK(f, "db/password", fingerprint: nil)
            let agent = UUID()
            let request = try await f.storage.requestApproval(pendingRead(f, requester: agent), maxPending: 100, audit: testAudit) { _ in testAudit }
            _ = try await approve(f, request.approval.id)
            _ = try await gatedRead(f, requester: agent)
            let revoked = try await f.storage.decideApproval(
                id: request.approval.id, orgID: f.org.id, status: .cancelled, by: f.owner.id, reason: nil, now: .now,
                policy: nil, revokingLease: true, audit: { _ in testAudit })
            #expect(revoked?.changed == true && revoked?.approval.status == .cancelled && revoked?.approval.usesLeft == 0)
            await #expect(throws: KeyholdError.noLease) { try await gatedRead(f, requester: agent) }

            // Two pending requests at most for this requester: the third (another path) is 429 and stores nothing.
            _ = try await f.storage.requestApproval(pendingRead(f, requester: agent, path: "a"), maxPending: 2, audit: testAudit) { _ in testAudit }
            _ = try await f.storage.requestApproval(pendingRead(f, requester: agent, path: "b"), maxPending: 2, audit: testAudit) { _ in testAudit }
            await #expect(throws: KeyholdError(.tooManyRequests, "")) {
                try await f.storage.requestApproval(pendingRead(f, requester: agent, path: "c"), maxPending: 2, audit: testAudit) { _ in testAudit }
            }
            #expect(try await f.storage.approvals(
                orgID: f.org.id, status: .pending, requesterID: agent, userID: nil, now: .now, limit: 10, offset: 0
            ).map(\.targetID).sorted() == ["a", "b"])
        }
    }
}

import Foundation
import KeyholdCore
import Testing

/// Capability leases (`CapabilityLeaseStore`) on every backend: created only over a live secret; each use spends
/// exactly one of the lease's uses and of each caveat counter, with the version's read, under concurrency; a refused
/// use changes nothing; revocation; a row edited with SQL grants nothing.
extension StorageConformanceTests {
    func capabilityLease(
        _ f: Fixture, path: String = "stripe/key", maxUses: Int? = 3, expiresIn: Int64 = 3_600_000
    ) -> CapabilityLease {
        CapabilityLease(
            id: UUID(), orgID: f.org.id, vaultID: f.vault.id, path: path, principalKind: .agent, principalID: UUID(),
            scheme: "https", host: "api.example.com", port: nil, methods: ["GET", "POST"], pathPrefix: "/v1",
            injection: .header(name: "Authorization", template: "Bearer {{value}}"), maxUses: maxUses, uses: 0,
            expiresAt: Timestamp(milliseconds: Timestamp.now.milliseconds + expiresIn), revokedAt: nil,
            createdBy: f.owner.id, createdByType: .user, createdAt: .now, description: "charges")
    }

    func spend(
        _ f: Fixture, _ lease: CapabilityLease, counters: [(key: Data, limit: Int)] = [], now: Timestamp = .now,
        check: @escaping @Sendable (CapabilityLease) throws -> Void = { _ in }
    ) async throws -> (lease: CapabilityLease, opened: SealedSecretVersion) {
        try await f.storage.spendCapabilityLease(
            id: lease.id, counters: counters, now: now, refusing: [], check: check, open: { _, version, _ in version },
            audit: { _, _ in testAudit })
    }

    @Test(arguments: Backend.enabled)
    func aLeaseIsCreatedOverALiveSecretAndListedAsStored(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let missing = capabilityLease(f, path: "nothing/here")
            await #expect(throws: KeyholdError.notFound("")) {
                try await f.storage.createCapabilityLease(missing, approval: nil, audit: testAudit)
            }
            _ = try await write(f, "stripe/key")
            let lease = capabilityLease(f)
            try await f.storage.createCapabilityLease(lease, approval: nil, audit: testAudit)
            #expect(try await f.storage.capabilityLease(id: lease.id) == lease)
            #expect(try await f.storage.capabilityLeases(vaultID: f.vault.id, limit: 10, offset: 0) == [lease])
            #expect(try await f.storage.capabilityLease(id: missing.id) == nil)

            // Revoked once; a revoked lease is gone and spends nothing.
            let revoked = try #require(try await f.storage.revokeCapabilityLease(
                id: lease.id, vaultID: f.vault.id, at: .now, audit: { _ in testAudit }))
            #expect(revoked.changed && revoked.lease.revokedAt != nil)
            let again = try await f.storage.revokeCapabilityLease(id: lease.id, vaultID: f.vault.id, at: .now) { _ in testAudit }
            #expect(again?.changed == false)
            #expect(try await f.storage.revokeCapabilityLease(id: lease.id, vaultID: UUID(), at: .now) { _ in testAudit } == nil)
            await #expect(throws: KeyholdError.gone("")) { _ = try await spend(f, lease) }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "stripe/key").map(\.accessCount) == [0])
        }
    }

    /// A value encrypted with a customer-managed key is ciphertext to the server: no lease is made over it.
    @Test(arguments: Backend.enabled)
    func noLeaseIsMadeOverACustomerManagedValue(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let fingerprint = String(repeating: "ab", count: 32)
            _ = try await f.storage.setVaultCMEK(vaultID: f.vault.id, orgID: f.org.id, fingerprint: fingerprint, audit: testAudit)
            _ = try await writeCMEK(f, "cmek/key", fingerprint: fingerprint)
            await #expect(throws: CapabilityLease.customerManaged) {
                try await f.storage.createCapabilityLease(capabilityLease(f, path: "cmek/key"), approval: nil, audit: testAudit)
            }
            #expect(try await f.storage.capabilityLeases(vaultID: f.vault.id, limit: 10, offset: 0).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentUsesSpendExactlyTheLeasesUsesAndEachCounter(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            _ = try await write(f, "stripe/key")
            let lease = capabilityLease(f, maxUses: 5)
            try await f.storage.createCapabilityLease(lease, approval: nil, audit: testAudit)
            func race(_ callers: Int, counters: [(key: Data, limit: Int)]) async throws -> Int {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for _ in 0..<callers {
                        group.addTask {
                            do {
                                _ = try await spend(f, lease, counters: counters)
                                return true
                            } catch let error as KeyholdError where error.code == .gone {
                                return false
                            }
                        }
                    }
                    return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
            }
            // A token limited to 2 uses: 2 of 16 callers pass; another counter still has its own.
            let narrow = Data(repeating: 1, count: 32)
            #expect(try await race(16, counters: [(narrow, 2)]) == 2)
            #expect(try await race(16, counters: [(Data(repeating: 2, count: 32), 1), (narrow, 9)]) == 1)
            // The lease's own limit (5) ends everything else: 2 more of 32.
            #expect(try await race(32, counters: []) == 2)
            let stored = try #require(try await f.storage.capabilityLease(id: lease.id))
            #expect(stored.uses == 5)
            #expect(stored.caveatUses.count == 2 && stored.caveatUses.values.sorted() == [1, 3])
            #expect(stored.goneReason(at: .now) != nil)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "stripe/key").map(\.accessCount) == [5])
        }
    }

    @Test(arguments: Backend.enabled)
    func aRefusedUseChangesNothingAndAnExpiredLeaseIsGone(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            _ = try await write(f, "stripe/key")
            let lease = capabilityLease(f)
            try await f.storage.createCapabilityLease(lease, approval: nil, audit: testAudit)
            await #expect(throws: KeyholdError.forbidden("")) {
                _ = try await spend(f, lease) { _ in throw KeyholdError.forbidden("no") }
            }
            // A value the use cannot send (refused once opened) spends nothing either.
            await #expect(throws: KeyholdError(.conflict, "")) {
                _ = try await f.storage.spendCapabilityLease(
                    id: lease.id, counters: [], now: .now, refusing: [], check: { _ in },
                    open: { _, _, _ -> String in throw KeyholdError(.conflict, "unsendable") }, audit: { _, _ in testAudit })
            }
            await #expect(throws: KeyholdError.gone("")) {
                _ = try await spend(f, lease, now: Timestamp(milliseconds: lease.expiresAt.milliseconds))
            }
            // A counter already spent refuses the use before the lease's own is counted.
            let spent = Data(repeating: 3, count: 32)
            _ = try await spend(f, lease, counters: [(spent, 1)])
            await #expect(throws: KeyholdError.gone("")) { _ = try await spend(f, lease, counters: [(spent, 1)]) }
            let stored = try #require(try await f.storage.capabilityLease(id: lease.id))
            #expect(stored.uses == 1)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "stripe/key").map(\.accessCount) == [1])
            // The secret deleted: the use is refused (gone) and counts nothing.
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "stripe/key", at: .now, audit: testAudit))
            await #expect(throws: KeyholdError.gone("")) { _ = try await spend(f, lease) }
            #expect(try await f.storage.capabilityLease(id: lease.id)?.uses == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func creatingALeaseUnderAnApprovalSpendsOneOfItsUses(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            _ = try await write(f, "stripe/key")
            let requester = UUID()
            let request = try await f.storage.requestApproval(
                pendingRead(f, requester: requester, path: "stripe/key", rule: ApprovalRule(maxUses: 1)), maxPending: 10,
                audit: testAudit) { _ in testAudit }
            let claim = LeaseClaim(requesterKind: .agent, requesterID: requester, vaultID: f.vault.id, path: "stripe/key")
            let first = capabilityLease(f)
            await #expect(throws: KeyholdError.noLease) {
                try await f.storage.createCapabilityLease(first, approval: (claim, { _ in testAudit }), audit: testAudit)
            }
            _ = try await approve(f, request.approval.id)
            try await f.storage.createCapabilityLease(first, approval: (claim, { _ in testAudit }), audit: testAudit)
            let second = capabilityLease(f)
            await #expect(throws: KeyholdError.noLease) {
                try await f.storage.createCapabilityLease(second, approval: (claim, { _ in testAudit }), audit: testAudit)
            }
            #expect(try await f.storage.capabilityLeases(vaultID: f.vault.id, limit: 10, offset: 0).map(\.id) == [first.id])
        }
    }

    @Test(arguments: Backend.enabled)
    func aLeaseEditedWithSQLSpendsNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            _ = try await write(f, "stripe/key")
            let lease = capabilityLease(f, maxUses: 1)
            try await f.storage.createCapabilityLease(lease, approval: nil, audit: testAudit)
            _ = try await spend(f, lease)
            try await backend.execute(f.storage, "UPDATE capability_leases SET uses = 0")
            await #expect(throws: StoredDataError(table: "capability_leases", column: "seal", problem: "does not verify")) {
                _ = try await spend(f, lease)
            }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "stripe/key").map(\.accessCount) == [1])
        }
    }
}

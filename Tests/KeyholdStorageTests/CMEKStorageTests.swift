import Foundation
import KeyholdCore
import Testing

/// Customer-managed keys (`CMEKStore`) on every backend: the vault's setting is sealed and checked by every write in
/// its transaction; rotation batches replace only the versions still as they were read, and the vault moves to the
/// new key only when none is left under the old one.
extension StorageConformanceTests {
    static let fingerprintA = String(repeating: "a1", count: 32)
    static let fingerprintB = String(repeating: "b2", count: 32)

    func cmekVersion(_ f: Fixture, path: String, fingerprint: String?) -> NewSecretVersion {
        NewSecretVersion(
            vaultID: f.vault.id, path: path, type: .generic, metadata: nil, rotationPolicy: nil, expiresAt: nil,
            maxAccessCount: nil, createdBy: f.owner.id, createdAt: .now, kekID: f.vault.kekID,
            wrappedDataKey: Data("dek-\(path)".utf8), cmekFingerprint: fingerprint)
    }

    @discardableResult
    func writeCMEK(_ f: Fixture, _ path: String, fingerprint: String?) async throws -> SecretVersionInfo {
        try await f.storage.writeVersion(cmekVersion(f, path: path, fingerprint: fingerprint), audit: testAudit) {
            Data("sealed-\(path)-v\($0)".utf8)
        }
    }

    @Test(arguments: Backend.enabled)
    func aVaultsCMEKSettingIsSealedAndEveryWriteCommitsOnlyUnderIt(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let other = try await otherOrg(f)
            #expect(try await f.storage.setVaultCMEK(
                vaultID: f.vault.id, orgID: other.org.id, fingerprint: Self.fingerprintA, audit: testAudit) == nil)
            #expect(try await f.storage.vault(id: f.vault.id)?.cmekFingerprint == nil)
            let plain = try await writeCMEK(f, "plain", fingerprint: nil)
            #expect(plain.cmekFingerprint == nil)

            let enabled = try await f.storage.setVaultCMEK(
                vaultID: f.vault.id, orgID: f.org.id, fingerprint: Self.fingerprintA, audit: testAudit)
            #expect(enabled == f.vault.with(cmekFingerprint: Self.fingerprintA))
            #expect(try await f.storage.vault(id: f.vault.id, orgID: f.org.id) == enabled)

            // A write checked against the setting it read: the wrong one stores nothing.
            await #expect(throws: KeyholdError(.conflict, "")) { try await writeCMEK(f, "late", fingerprint: nil) }
            await #expect(throws: KeyholdError(.conflict, "")) { try await writeCMEK(f, "late", fingerprint: Self.fingerprintB) }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "late").isEmpty)
            let sealed = try await writeCMEK(f, "db/password", fingerprint: Self.fingerprintA)
            #expect(sealed.cmekFingerprint == Self.fingerprintA)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "db/password").map(\.cmekFingerprint) == [Self.fingerprintA])
            let read = try await f.storage.readVersion(vaultID: f.vault.id, path: "db/password", version: nil, now: .now, audit: testAudit)
            #expect(read.info.cmekFingerprint == Self.fingerprintA)
            #expect(try await f.storage.latestVersions(vaultID: f.vault.id, prefix: nil, after: nil, limit: 10).map(\.cmekFingerprint)
                == [Self.fingerprintA, nil])

            // Turned off: new writes are plain, versions written keep their fingerprint.
            let disabled = try await f.storage.setVaultCMEK(vaultID: f.vault.id, orgID: f.org.id, fingerprint: nil, audit: testAudit)
            #expect(disabled?.cmekFingerprint == nil)
            await #expect(throws: KeyholdError(.conflict, "")) { try await writeCMEK(f, "late", fingerprint: Self.fingerprintA) }
            try await writeCMEK(f, "late", fingerprint: nil)
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "db/password").map(\.cmekFingerprint) == [Self.fingerprintA])

            // Switched on again, then off with SQL: the row no longer verifies, and neither reads nor writes use it.
            _ = try await f.storage.setVaultCMEK(vaultID: f.vault.id, orgID: f.org.id, fingerprint: Self.fingerprintA, audit: testAudit)
            try await backend.execute(f.storage, "UPDATE vaults SET cmek_fingerprint = NULL WHERE kek_id = '\(f.vault.kekID)'")
            await #expect(throws: StoredDataError(table: "vaults", column: "seal", problem: "does not verify")) {
                _ = try await f.storage.vault(id: f.vault.id)
            }
            await #expect(throws: StoredDataError(table: "vaults", column: "seal", problem: "does not verify")) {
                try await writeCMEK(f, "plain", fingerprint: nil)
            }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "plain").count == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func rotationBatchesReplaceOnlyUnchangedVersionsAndTheVaultMovesLast(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await writeCMEK(f, "plain", fingerprint: nil)
            _ = try await f.storage.setVaultCMEK(vaultID: f.vault.id, orgID: f.org.id, fingerprint: Self.fingerprintA, audit: testAudit)
            for path in ["a", "a", "b"] { try await writeCMEK(f, path, fingerprint: Self.fingerprintA) }
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "b", at: .now, audit: testAudit))
            let otherVault = try await vault(f)
            #expect(try await f.storage.cmekVersionCount(vaultID: otherVault.id, fingerprint: Self.fingerprintA) == 0)
            #expect(try await f.storage.cmekVersionCount(vaultID: f.vault.id, fingerprint: Self.fingerprintA) == 3, "deleted ones too")
            let firstTwo = try await f.storage.cmekVersions(vaultID: f.vault.id, fingerprint: Self.fingerprintA, limit: 2)
            #expect(firstTwo.count == 2)
            let all = try await f.storage.cmekVersions(vaultID: f.vault.id, fingerprint: Self.fingerprintA, limit: 100)
            #expect(Array(all.prefix(2)) == firstTwo)
            #expect(Set(all.map { "\($0.path)@\($0.version)" }) == ["a@1", "a@2", "b@1"])

            var job = CMEKRotationJob(
                id: UUID(), vaultID: f.vault.id, orgID: f.org.id, oldFingerprint: Self.fingerprintA,
                newFingerprint: Self.fingerprintB, status: .pending, totalSecrets: 3, processed: 0, error: nil,
                startedAt: nil, completedAt: nil, createdBy: f.owner.id, createdAt: Timestamp(milliseconds: 1_000))
            try await f.storage.createCMEKJob(job, audit: testAudit)
            #expect(try await f.storage.cmekJob(id: job.id, vaultID: f.vault.id) == job)
            #expect(try await f.storage.cmekJob(id: job.id, vaultID: otherVault.id) == nil)
            #expect(try await f.storage.cmekJob(id: UUID(), vaultID: f.vault.id) == nil)

            func replacement(_ version: CMEKVersion, stale: Bool = false) -> CMEKReplacement {
                let original = stale
                    ? CMEKVersion(
                        secretID: version.secretID, path: version.path, version: version.version, kekID: version.kekID,
                        wrappedDataKey: Data("changed".utf8), ciphertext: version.ciphertext)
                    : version
                return CMEKReplacement(
                    original: original, kekID: f.vault.kekID, wrappedDataKey: Data("new-\(version.path)".utf8),
                    ciphertext: Data("rotated-\(version.path)-\(version.version)".utf8))
            }
            job.status = .running
            job.processed = 2
            // One version changed since it was read: the whole batch changes nothing, the job's progress neither.
            await #expect(throws: KeyholdError(.conflict, "")) {
                try await f.storage.replaceCMEKVersions(
                    [replacement(firstTwo[0]), replacement(firstTwo[1], stale: true)], from: Self.fingerprintA,
                    to: Self.fingerprintB, job: job)
            }
            #expect(try await f.storage.cmekVersionCount(vaultID: f.vault.id, fingerprint: Self.fingerprintA) == 3)
            #expect(try await f.storage.cmekJob(id: job.id, vaultID: f.vault.id)?.processed == 0)

            try await f.storage.replaceCMEKVersions(
                firstTwo.map { replacement($0) }, from: Self.fingerprintA, to: Self.fingerprintB, job: job)
            #expect(try await f.storage.cmekVersionCount(vaultID: f.vault.id, fingerprint: Self.fingerprintA) == 1)
            #expect(try await f.storage.cmekVersionCount(vaultID: f.vault.id, fingerprint: Self.fingerprintB) == 2)
            #expect(try await f.storage.cmekJob(id: job.id, vaultID: f.vault.id) == job)
            // Replaced once: the same batch again is refused (its versions no longer hold the old fingerprint).
            await #expect(throws: KeyholdError(.conflict, "")) {
                try await f.storage.replaceCMEKVersions(
                    firstTwo.map { replacement($0) }, from: Self.fingerprintA, to: Self.fingerprintB, job: job)
            }

            var done = job
            done.status = .completed
            done.completedAt = .now
            #expect(try await !f.storage.finishCMEKRotation(done, audit: testAudit), "a version is left under the old key")
            #expect(try await f.storage.vault(id: f.vault.id)?.cmekFingerprint == Self.fingerprintA)
            #expect(try await f.storage.cmekJob(id: job.id, vaultID: f.vault.id)?.status == .running)

            let rest = try await f.storage.cmekVersions(vaultID: f.vault.id, fingerprint: Self.fingerprintA, limit: 100)
            job.processed = 3
            try await f.storage.replaceCMEKVersions(rest.map { replacement($0) }, from: Self.fingerprintA, to: Self.fingerprintB, job: job)
            done.processed = 3
            #expect(try await f.storage.finishCMEKRotation(done, audit: testAudit))
            #expect(try await f.storage.vault(id: f.vault.id)?.cmekFingerprint == Self.fingerprintB)
            #expect(try await f.storage.cmekJob(id: job.id, vaultID: f.vault.id) == done)
            let moved = try await f.storage.cmekVersions(vaultID: f.vault.id, fingerprint: Self.fingerprintB, limit: 100)
            #expect(moved.map(\.ciphertext).map { String(decoding: $0, as: UTF8.self) }.sorted()
                == ["rotated-a-1", "rotated-a-2", "rotated-b-1"])
            #expect(Set(moved.map(\.wrappedDataKey)) == [Data("new-a".utf8), Data("new-b".utf8)])
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "plain").map(\.cmekFingerprint) == [nil])
            // New writes go under the new key.
            try await writeCMEK(f, "c", fingerprint: Self.fingerprintB)
        }
    }
}

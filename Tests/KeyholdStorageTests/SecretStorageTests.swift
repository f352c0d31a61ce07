import Crypto
import Foundation
import KeyholdCore
import Testing

/// Vaults, secrets, system values, keys and closing: the rules of `VaultStore`, `SecretStore`, `SystemStore` and
/// `KeyRotationStore` the other cases leave out, on every backend.
extension StorageConformanceTests {
    // MARK: vaults

    @Test(arguments: Backend.enabled)
    func anotherOrgsVaultIsNotFoundInThisOrgButByIDAlone(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let other = try await otherOrg(f)
            let later = try await vault(f, createdAt: f.vault.createdAt.adding(seconds: 5))
            #expect(try await f.storage.vault(id: other.vault.id, orgID: f.org.id) == nil)
            #expect(try await f.storage.vault(id: other.vault.id, orgID: other.org.id) == other.vault)
            #expect(try await f.storage.vault(id: other.vault.id) == other.vault, "operators find any vault")
            #expect(try await f.storage.vault(id: UUID()) == nil)
            #expect(try await f.storage.vaultAndPolicies(
                id: other.vault.id, orgID: f.org.id, principalKind: .user, principalID: f.owner.id) == nil)
            #expect(try await f.storage.vaults(orgID: f.org.id) == [f.vault, later])
            #expect(try await f.storage.vaults(orgID: other.org.id) == [other.vault])
        }
    }

    @Test(arguments: Backend.enabled)
    func deletingAVaultShredsEveryKeyItEverHadAndItsShares(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let other = try await otherOrg(f)
            let secret = try await write(f, "a/b")
            let rotated = KEKHandle(id: "kek-\(UUID())", material: Data([6]))
            #expect(try await f.storage.rotateVaultKEK(vaultID: f.vault.id, orgID: f.org.id, kek: rotated, audit: testAudit))
            let link = share(f, secret: secret)
            try await f.storage.createShare(link, audit: testAudit)

            let before = try await stored(f, others: [other.org.id])
            #expect(try await !f.storage.deleteVault(id: f.vault.id, orgID: other.org.id, audit: testAudit))
            #expect(try await stored(f, others: [other.org.id]) == before, "a refused delete stores nothing")

            #expect(try await f.storage.deleteVault(id: f.vault.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.vault(id: f.vault.id) == nil)
            #expect(try await f.storage.kek(id: f.vault.kekID) == nil)
            #expect(try await f.storage.kek(id: rotated.id) == nil)
            #expect(try await f.storage.allKEKs() == [KEKHandle(id: other.vault.kekID, material: Data([5]))])
            #expect(try await f.storage.secretLocation(id: secret.secretID) == nil)
            #expect(try await f.storage.share(id: link.id) == nil)
            #expect(try await f.storage.orgShares(orgID: f.org.id).isEmpty)
            #expect(try await f.storage.staleWrappedKeys(limit: 10).isEmpty)
            await #expect(throws: KeyholdError.notFound("")) { try await read(f, "a/b") }
            #expect(try await !f.storage.deleteVault(id: f.vault.id, orgID: f.org.id, audit: testAudit), "already gone")
            #expect(try await f.storage.vault(id: other.vault.id) == other.vault)
        }
    }

    // MARK: writing versions

    @Test(arguments: Backend.enabled)
    func aVersionWithoutATypeIsGenericFirstAndInheritsOnlyFromItsOwnSecret(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            #expect(try await write(f, "untyped", type: nil).type == .generic)
            #expect(try await write(f, "typed", type: .password).type == .password)
            #expect(try await write(f, "typed", type: nil).type == .password)
            #expect(try await write(f, "typed", type: .sshKey).type == .sshKey)
            #expect(try await write(f, "typed", type: nil).type == .sshKey, "the previous version's, not the first's")
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "typed").map(\.type)
                    == [.password, .password, .sshKey, .sshKey])
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "typed", at: .now, audit: testAudit))
            #expect(try await write(f, "typed", type: nil).type == .generic, "a re-created path inherits nothing")
        }
    }

    @Test(arguments: Backend.enabled)
    func versionsHoldWhatWasWrittenAndNothingForANeverWrittenPath(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let expiry = Timestamp.now.adding(seconds: 3_600)
            let written = try await f.storage.writeVersion(
                NewSecretVersion(
                    vaultID: f.vault.id, path: "full", type: .certificate, metadata: .object(["tags": .array([.string("x")])]),
                    rotationPolicy: .object(["days": .number(30)]), expiresAt: expiry, maxAccessCount: 5,
                    createdBy: f.owner.id, createdAt: Timestamp(milliseconds: 1_234), kekID: f.vault.kekID,
                    wrappedDataKey: Data([1])),
                audit: testAudit
            ) { Data("v\($0)".utf8) }
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "full") == [written])
            #expect(try await f.storage.latestVersions(vaultID: f.vault.id, prefix: nil, after: nil, limit: 10) == [written])
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "never").isEmpty)
            #expect(try await f.storage.versions(vaultID: UUID(), path: "full").isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func writesRacingADeleteNumberEachSecretFromOneWithoutGaps(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let first = try await write(f, "raced")
            let (written, deleted) = try await withThrowingTaskGroup(of: (SecretVersionInfo?, Bool).self) { group in
                for index in 0..<8 {
                    group.addTask {
                        if index == 4 {
                            return (nil, try await f.storage.deleteSecret(vaultID: f.vault.id, path: "raced", at: .now, audit: testAudit))
                        }
                        return (try await write(f, "raced"), false)
                    }
                }
                return try await group.reduce(into: ([first], false)) { result, outcome in
                    if let info = outcome.0 { result.0.append(info) }
                    result.1 = result.1 || outcome.1
                }
            }
            #expect(deleted, "the path was live when the delete began")
            #expect(written.count == 8)
            let bySecret = Dictionary(grouping: written, by: \.secretID)
            for (secret, infos) in bySecret {
                #expect(infos.map(\.version).sorted() == Array(1...infos.count), "secret \(secret)")
            }
            #expect(try await f.storage.secretLocation(id: first.secretID) == nil, "the delete ended the first secret")
            let current = try await f.storage.versions(vaultID: f.vault.id, path: "raced")
            let secretID = try #require(current.first?.secretID)
            #expect(current.map(\.version) == Array(1...(bySecret[secretID]?.count ?? 0)))
        }
    }

    // MARK: reading versions

    @Test(arguments: Backend.enabled)
    func eachReadIsCountedUntilTheLimitAndARefusedReadIsNot(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "limited", maxAccessCount: 2)
            #expect(try await read(f, "limited").info.accessCount == 1)
            #expect(try await read(f, "limited", version: 1).info.accessCount == 2)
            let before = try await stored(f)
            await #expect(throws: KeyholdError.gone("")) { try await read(f, "limited") }
            #expect(try await stored(f) == before, "the refused read is neither counted nor recorded")
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "limited").map(\.accessCount) == [2])
        }
    }

    @Test(arguments: Backend.enabled)
    func aPathIsReadOnlyInItsOwnVault(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let second = try await vault(f)
            try await write(f, "only/here")
            await #expect(throws: KeyholdError.notFound("")) { try await read(f, "only/here", vault: second.id) }
            await #expect(throws: KeyholdError.notFound("")) { try await read(f, "only/here", vault: second.id, version: 1) }
            #expect(try await f.storage.latestVersions(vaultID: second.id, prefix: nil, after: nil, limit: 10).isEmpty)
            #expect(try await !f.storage.disableVersion(vaultID: second.id, path: "only/here", version: 1, audit: testAudit))
            #expect(try await !f.storage.deleteSecret(vaultID: second.id, path: "only/here", at: .now, audit: testAudit))
            #expect(try await read(f, "only/here").info.accessCount == 1)
        }
    }

    // MARK: listing

    @Test(arguments: Backend.enabled)
    func latestVersionsPageThroughAPrefixInByteOrderWithoutRepeats(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let paths = ["app/A", "app/a", "app/b/c", "app/b-c", "app/b_c", "app0", "apq", "ap"]
            for path in paths.reversed() { try await write(f, path) }
            try await write(f, "app/a")
            var pages: [[SecretVersionInfo]] = []
            var after: String?
            repeat {
                pages.append(try await f.storage.latestVersions(vaultID: f.vault.id, prefix: "app/", after: after, limit: 2))
                after = pages.last?.last?.path
            } while pages.last?.count == 2
            #expect(pages.map { $0.map(\.path) } == [["app/A", "app/a"], ["app/b-c", "app/b/c"], ["app/b_c"]])
            #expect(pages.joined().first { $0.path == "app/a" }?.version == 2)
            #expect(try await f.storage.latestVersions(vaultID: f.vault.id, prefix: "", after: "app0", limit: 10).map(\.path)
                    == ["apq"], "an empty prefix is no prefix")
            #expect(try await f.storage.latestVersions(vaultID: f.vault.id, prefix: "app/", after: nil, limit: 0).isEmpty)
        }
    }

    // MARK: disabling and deleting

    @Test(arguments: Backend.enabled)
    func disablingAMissingVersionIsFalseAndStoresNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "kept")
            let before = try await stored(f)
            #expect(try await !f.storage.disableVersion(vaultID: f.vault.id, path: "kept", version: 2, audit: testAudit))
            #expect(try await !f.storage.disableVersion(vaultID: f.vault.id, path: "missing", version: 1, audit: testAudit))
            #expect(try await stored(f) == before)
            #expect(try await f.storage.disableVersion(vaultID: f.vault.id, path: "kept", version: 1, audit: testAudit))
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "kept").map(\.isDisabled) == [true])
            await #expect(throws: KeyholdError.gone("")) { try await read(f, "kept") }
        }
    }

    @Test(arguments: Backend.enabled)
    func deletingAMissingSecretIsFalseAndADeletedOnesVersionsAreMarked(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "doomed")
            try await write(f, "doomed")
            let before = try await stored(f)
            #expect(try await !f.storage.deleteSecret(vaultID: f.vault.id, path: "missing", at: .now, audit: testAudit))
            #expect(try await stored(f) == before)
            #expect(try await f.storage.deleteSecret(vaultID: f.vault.id, path: "doomed", at: .now, audit: testAudit))
            #expect(try await f.storage.versions(vaultID: f.vault.id, path: "doomed").map(\.isDeleted) == [true, true])
            await #expect(throws: KeyholdError.gone("")) { try await read(f, "doomed", version: 1) }
        }
    }

    // MARK: system values

    @Test(arguments: Backend.enabled)
    func concurrentStartersAllGetTheOneStoredSystemValue(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let offered = (0..<4).map { Data([UInt8($0)]) }
            let answers = try await withThrowingTaskGroup(of: Data.self) { group in
                for value in offered { group.addTask { try await f.storage.insertSystemValueIfAbsent("signing-key", value) } }
                return try await group.reduce(into: [Data]()) { $0.append($1) }
            }
            let stored = try #require(try await f.storage.systemValue("signing-key"))
            #expect(answers.count == 4 && Set(answers) == [stored])
            #expect(offered.contains(stored))
            #expect(try await f.storage.systemValue("other") == nil)
        }
    }

    // MARK: keys

    @Test(arguments: Backend.enabled)
    func rotatingAnotherOrgsVaultKeyStoresNoKey(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let before = try await stored(f)
            let refused = KEKHandle(id: "kek-\(UUID())", material: Data([7]))
            #expect(try await !f.storage.rotateVaultKEK(vaultID: f.vault.id, orgID: UUID(), kek: refused, audit: testAudit))
            #expect(try await !f.storage.rotateVaultKEK(vaultID: UUID(), orgID: f.org.id, kek: refused, audit: testAudit))
            #expect(try await stored(f) == before)
            #expect(try await f.storage.kek(id: refused.id) == nil)
        }
    }

    // MARK: closing

    @Test(arguments: Backend.enabled)
    func whatWasCommittedBeforeCloseIsThereAfterReopening(_ backend: Backend) async throws {
        let seal = GrantSeal(key: SymmetricKey(size: .bits256))
        try await withFixture(backend, seal: seal) { (f: Fixture) async throws in
            try await write(f, "durable")
            _ = try await f.storage.insertSystemValueIfAbsent("k", Data([1]))
            let before = try await stored(f)
            try await f.storage.close()
            let reopened = try await backend.reopen(f.storage)
            do {
                try await reopened.sealGrants(with: seal)
                let again = Fixture(storage: reopened, org: f.org, owner: f.owner, vault: f.vault)
                #expect(try await stored(again) == before)
                #expect(try await read(again, "durable").ciphertext == Data("sealed-v1".utf8))
            } catch {
                try? await reopened.close()
                throw error
            }
            try await reopened.close()
        }
    }
}

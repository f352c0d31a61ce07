import Crypto
import Foundation
import KeyholdCore
import Testing

/// Key rotation through the real services, on every backend: new KEK versions, rewrap in batches, retirement,
/// and master-key rotation, with every version readable at each step.
extension StorageConformanceTests {
    struct Services {
        let keystore: SoftwareKeystore
        let vaults: VaultService
        let secrets: SecretService
        let keys: KeyService
        let caller: Caller
    }

    func services(_ f: Fixture, keystore: SoftwareKeystore = SoftwareKeystore(masterKey: .init(size: .bits256))) -> Services {
        let audit = AuditLog(store: f.storage, chain: testChain)
        let vaults = VaultService(store: f.storage, policies: f.storage, keystore: keystore, authorizer: Authorizer(), audit: audit)
        let secrets = SecretService(
            store: f.storage, vaults: vaults, keystore: keystore, authorizer: Authorizer(), audit: audit,
            cursors: ListCursor(key: .init(size: .bits256)))
        let keys = KeyService(store: f.storage, vaultStore: f.storage, vaults: vaults, keystore: keystore, audit: audit)
        let owner = Principal(kind: .user, id: f.owner.id, orgID: f.org.id, role: .owner)
        return Services(
            keystore: keystore, vaults: vaults, secrets: secrets, keys: keys,
            caller: Caller(owner, context: AccessContext(clientIP: nil)))
    }

    @Test(arguments: Backend.enabled)
    func rotationAndRewrapKeepEveryVersionReadable(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let s = services(f)
            let vault = try await s.vaults.create(by: s.caller, name: "rotating", description: nil)
            let paths = (0..<7).map { try! SecretPath(validating: "app/key\($0)") }
            for path in paths {
                for n in 1...2 {
                    _ = try await s.secrets.write(.init(value: "\(path)-v\(n)"), vaultID: vault.id, path: path, by: s.caller)
                }
            }
            func expectAllReadable() async throws {
                for path in paths {
                    for n in 1...2 {
                        let revealed = try await s.secrets.read(vaultID: vault.id, path: path, version: n, by: s.caller)
                        #expect(revealed.value == "\(path)-v\(n)")
                    }
                }
            }
            let second = try await s.keys.rotate(vaultID: vault.id, by: s.caller)
            #expect(second.id == "vault-\(vault.id.wire)-v2")
            _ = try await s.secrets.write(.init(value: "after"), vaultID: vault.id, path: paths[0], by: s.caller)
            #expect(try await f.storage.staleWrappedKeys(limit: 100).count == 14, "older versions wait for rewrap")
            try await expectAllReadable()

            let progress = try await s.keys.rewrap(batchSize: 4)
            #expect(progress.rewrapped == 14 && progress.batches == 4)
            #expect(try await f.storage.staleWrappedKeys(limit: 100).isEmpty)
            #expect(try await s.keys.rewrap().rewrapped == 0, "a second run finds nothing left")
            try await expectAllReadable()

            #expect(try await s.keys.retireUnused() == ["vault-\(vault.id.wire)-v1"])
            #expect(try await f.storage.kek(id: "vault-\(vault.id.wire)-v1") == nil)
            try await expectAllReadable()
            #expect(try await s.secrets.read(vaultID: vault.id, path: paths[0], by: s.caller).value == "after")
        }
    }

    @Test(arguments: Backend.enabled)
    func aStaleRewrapCannotUndoANewerOne(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let s = services(f)
            let vault = try await s.vaults.create(by: s.caller, name: "race", description: nil)
            _ = try await s.secrets.write(.init(value: "v"), vaultID: vault.id, path: try SecretPath(validating: "a"), by: s.caller)
            _ = try await s.keys.rotate(vaultID: vault.id, by: s.caller)
            let stale = try #require(try await f.storage.staleWrappedKeys(limit: 1).first)
            _ = try await s.keys.rewrap()
            #expect(try await f.storage.rewrap([(stale, Data([1, 2, 3]))]) == 0)
            #expect(try await s.secrets.read(vaultID: vault.id, path: try SecretPath(validating: "a"), by: s.caller).value == "v")
        }
    }

    @Test(arguments: Backend.enabled)
    func masterKeyRotationResealsEverything(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-master-\(UUID())").path
            try FileSecurity.ensurePrivateDirectory(dir)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let first = try SoftwareKeystore.open(directory: dir, environmentKey: nil)
            // The fixture's vault has a placeholder key no keystore sealed; rotation re-seals real keys only.
            #expect(try await f.storage.deleteVault(id: f.vault.id, orgID: f.org.id, audit: testAudit))
            let s = services(f, keystore: first)
            let vault = try await s.vaults.create(by: s.caller, name: "m", description: nil)
            let path = try SecretPath(validating: "db/password")
            _ = try await s.secrets.write(.init(value: "before rotation"), vaultID: vault.id, path: path, by: s.caller)
            let sealed = try await f.storage.insertSystemValueIfAbsent("test-secret", try await first.protect(Data("sys".utf8), purpose: "test-secret"))
            let oldFile = try #require(FileManager.default.contents(atPath: dir + "/master.key"))

            let counts = try await SoftwareKeystore.rotateMasterKey(
                directory: dir, store: f.storage, current: first, newKey: SymmetricKey(size: .bits256))
            #expect(counts.keks >= 1 && counts.systemValues >= 1)
            let newFile = try #require(FileManager.default.contents(atPath: dir + "/master.key"))
            #expect(newFile != oldFile)
            #expect(!FileManager.default.fileExists(atPath: dir + "/master.key.next"))
            #expect(try await f.storage.systemValue("test-secret") != sealed)

            let reopened = try SoftwareKeystore.open(directory: dir, environmentKey: nil)
            #expect(try await reopened.unprotect(try #require(try await f.storage.systemValue("test-secret")), purpose: "test-secret") == Data("sys".utf8))
            let after = services(f, keystore: reopened)
            #expect(try await after.secrets.read(vaultID: vault.id, path: path, by: after.caller).value == "before rotation")
            let stranger = services(f, keystore: SoftwareKeystore(masterKey: SymmetricKey(data: oldFile)))
            await #expect(throws: KeyholdError.self) { try await stranger.secrets.read(vaultID: vault.id, path: path, by: stranger.caller) }
        }
    }
}

import Crypto
import Foundation
import KeyholdCore
import KeyholdPostgres
import KeyholdSQLite
import Testing

/// `SystemStore.inventory()` and `StoreVerification` over it: what a backup and a restore check, on every backend.
extension StorageConformanceTests {
    @Test(arguments: Backend.enabled)
    func theInventoryNamesTheSchemaEveryChainHeadEveryKeyAndEveryServerValue(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "a/b")
            let sealed = try await f.storage.insertSystemValueIfAbsent("test-key", Data([4, 2]))
            let inventory = try await f.storage.inventory()
            #expect(inventory.schemaVersion == backend.schemaVersion)
            #expect(inventory.statistics == (try await f.storage.statistics()))
            let head = try #require(try await f.storage.auditHead(orgID: AuditEntry.systemOrg))
            #expect(inventory.auditHeads == [AuditEntry.systemOrg: head])
            #expect(inventory.auditChains == [AuditEntry.systemOrg: .init(events: Int(head.sequence), lastSequence: head.sequence)])
            let sample = try #require(inventory.keys.first { $0.kek.id == f.vault.kekID })
            #expect(sample.kek.material == Data([1, 2, 3]) && sample.wrappedDataKey == Data([9, 9]))
            #expect(inventory.systemValues["test-key"] == sealed)
        }
    }

    @Test(arguments: Backend.enabled)
    func verificationChecksEveryChainAndEveryKeyWithTheKeystoreAtHand(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let keystore = SoftwareKeystore(masterKey: SymmetricKey(size: .bits256))
            let chainKey = testChainKey.withUnsafeBytes { Data($0) }
            _ = try await f.storage.insertSystemValueIfAbsent(
                "audit-hmac-key", try await keystore.protect(chainKey, purpose: "audit-hmac-key"))
            // A vault whose KEK the keystore made, with a data key it wrapped; the fixture's vault wraps none.
            let kek = try await keystore.createKEK(id: "kek-\(UUID())")
            let vault = Vault(
                id: UUID(), orgID: f.org.id, name: "real", description: nil, createdBy: f.owner.id, createdByType: .user,
                kekID: kek.id, createdAt: .now)
            try await f.storage.createVault(vault, kek: kek, audit: testAudit)
            let version = NewSecretVersion(
                vaultID: vault.id, path: "db/password", type: .password, metadata: nil, rotationPolicy: nil,
                expiresAt: nil, maxAccessCount: nil, createdBy: f.owner.id, createdAt: .now, kekID: kek.id,
                wrappedDataKey: try await keystore.wrap(dataKey: SymmetricKey(size: .bits256), with: kek))
            _ = try await f.storage.writeVersion(version, audit: testAudit) { _ in Data("sealed".utf8) }

            let report = try await StoreVerification.verify(f.storage, keystore: keystore, schemaVersion: backend.schemaVersion)
            #expect(report.problems == [])
            #expect(report.keysChecked == 1 && report.keysUnused == 1 && report.serverKeysChecked == 1)
            #expect(report.eventsVerified == (try await f.storage.statistics()).auditEvents)
            #expect(report.backupKey != nil)

            let stranger = SoftwareKeystore(masterKey: SymmetricKey(size: .bits256))
            let refused = try await StoreVerification.verify(f.storage, keystore: stranger, schemaVersion: backend.schemaVersion)
            #expect(refused.backupKey == nil && refused.keysChecked == 0 && refused.serverKeysChecked == 0)
            #expect(refused.problems.count == 2, "the server key and the vault key, each named: \(refused.problems)")

            let newer = try await StoreVerification.verify(f.storage, keystore: keystore, schemaVersion: backend.schemaVersion + 1)
            #expect(newer.problems.count == 1 && newer.problems[0].contains("schema version"))

            try await backend.execute(f.storage, "UPDATE audit_events SET action = 'changed' WHERE seq = 2")
            let tampered = try await StoreVerification.verify(f.storage, keystore: keystore, schemaVersion: backend.schemaVersion)
            #expect(tampered.problems.count == 1 && tampered.problems[0].contains("integrity_hash"), "\(tampered.problems)")
        }
    }
}

extension Backend {
    /// The schema version this build migrates the backend to.
    var schemaVersion: Int { self == .sqlite ? SQLiteStorage.history.count : PostgresStorage.history.count }
}

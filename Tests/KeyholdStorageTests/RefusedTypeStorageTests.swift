import Foundation
import KeyholdCore
import Testing

/// Reads of a secret type refused to the caller (an agent in intents mode and a private or SSH key, issue 19): the
/// storage rule refuses them in the read's transaction, before anything is counted, spent or recorded.
extension StorageConformanceTests {
    @Test(arguments: Backend.enabled)
    func aRefusedTypeIsNotReadNorCounted(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await write(f, "keys/signer", type: .privateKey, maxAccessCount: 1)
            try await write(f, "keys/deploy", type: .sshKey)
            try await write(f, "app/token", type: .apiKey)
            let refusing = Agent.intentsRefusedTypes
            let eventsBefore = try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter()).count
            for (path, version) in [("keys/signer", nil), ("keys/signer", 1), ("keys/deploy", nil)] as [(String, Int?)] {
                await #expect(throws: KeyholdError.typeRefused) {
                    try await f.storage.readVersion(
                        vaultID: f.vault.id, path: path, version: version, now: .now, audit: testAudit, lease: nil,
                        refusing: refusing)
                }
            }
            #expect(try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter()).count == eventsBefore)
            // Other types read as usual under the same refusal.
            let token = try await f.storage.readVersion(
                vaultID: f.vault.id, path: "app/token", version: nil, now: .now, audit: testAudit, lease: nil,
                refusing: refusing)
            #expect(token.info.type == .apiKey)
            // Nothing was counted: the one read the limit allows is still there, for a caller refused nothing.
            #expect(try await read(f, "keys/signer").info.accessCount == 1)
            await #expect(throws: KeyholdError.gone("")) { try await read(f, "keys/signer") }
            // The refusal comes before "gone": it does not tell whether the value is still there.
            await #expect(throws: KeyholdError.typeRefused) {
                try await f.storage.readVersion(
                    vaultID: f.vault.id, path: "keys/signer", version: nil, now: .now, audit: testAudit, lease: nil,
                    refusing: refusing)
            }
            // A missing path is still "not found".
            await #expect(throws: KeyholdError.notFound("")) {
                try await f.storage.readVersion(
                    vaultID: f.vault.id, path: "keys/none", version: nil, now: .now, audit: testAudit, lease: nil,
                    refusing: refusing)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func aShareOfARefusedTypeIsNotOpenedNorCounted(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let link = share(f, secret: try await write(f, "keys/signer", type: .privateKey), max: 1)
            try await f.storage.createShare(link, audit: testAudit)
            await #expect(throws: KeyholdError.typeRefused) {
                try await f.storage.accessShare(id: link.id, now: .now, audit: testAudit, refusing: Agent.intentsRefusedTypes)
            }
            let (opened, sealed) = try await f.storage.accessShare(id: link.id, now: .now, audit: testAudit)
            #expect(opened.accessCount == 1)
            #expect(sealed.info.accessCount == 1)
        }
    }
}

import Foundation
import KeyholdCore
import Testing

extension StorageConformanceTests {
    func record(_ f: Fixture, _ action: String, chain: AuditChain = testChain) -> AuditRecord {
        AuditRecord(
            AuditEntry(
                orgID: f.org.id, actorType: .user, actorID: f.owner.id.wire, action: action, resourceType: "secret",
                resourceID: "a/b", details: ["vault_id": .string(f.vault.id.wire)], ipAddress: "127.0.0.1"),
            chain: chain)
    }

    func verify(_ f: Fixture) async throws -> ChainVerifier.Result {
        let events = try await f.storage.auditChain(orgID: f.org.id, afterSequence: 0, limit: 10_000)
        return testChain.verify(events, head: try await f.storage.auditHead(orgID: f.org.id))
    }

    @Test(arguments: Backend.enabled)
    func changesAndTheirEventsCommitTogether(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let info = try await f.storage.writeVersion(newVersion(f, path: "a/b"), audit: record(f, "secret.write")) {
                Data("v\($0)".utf8)
            }
            _ = try await f.storage.readVersion(
                vaultID: f.vault.id, path: "a/b", version: nil, now: .now, audit: record(f, "secret.read"))
            let events = try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter())
            #expect(events.map(\.entry.action) == ["secret.read", "secret.write"], "newest first")
            #expect(events.allSatisfy { $0.entry.details["version"] == .number(Double(info.version)) })
            #expect(try await verify(f).valid)
            #expect(try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter(action: "secret.write")).count == 1)
            #expect(try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter(actorID: "nobody")).isEmpty)
            #expect(try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter(limit: 1, offset: 1)).map(\.entry.action) == ["secret.write"])
            #expect(try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter(from: Timestamp.now.adding(seconds: 60))).isEmpty)
            #expect(try await f.storage.auditEvents(orgID: UUID(), filter: AuditFilter()).isEmpty)
        }
    }

    @Test(arguments: Backend.enabled)
    func theChainStaysLinearUnderConcurrentWriters(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<40 {
                    group.addTask {
                        if index % 2 == 0 {
                            try await f.storage.appendAudit(record(f, "secret.read"))
                        } else {
                            _ = try await f.storage.writeVersion(newVersion(f, path: "hot"), audit: record(f, "secret.write")) {
                                Data("v\($0)".utf8)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let chain = try await f.storage.auditChain(orgID: f.org.id, afterSequence: 0, limit: 1000)
            #expect(chain.map(\.sequence) == Array(1...40))
            #expect(try await verify(f).valid)
            #expect(try await f.storage.auditChain(orgID: f.org.id, afterSequence: 30, limit: 5).map(\.sequence) == [31, 32, 33, 34, 35])
        }
    }

    @Test(arguments: Backend.enabled)
    func aFailingAuditWriteChangesNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            _ = try await f.storage.writeVersion(newVersion(f, path: "kept"), audit: record(f, "secret.write")) { _ in Data("v1".utf8) }
            try await backend.breakAuditLog(f.storage)
            await #expect(throws: KeyholdError(.unavailable, "")) {
                try await f.storage.writeVersion(newVersion(f, path: "kept"), audit: record(f, "secret.write")) { _ in Data("v2".utf8) }
            }
            await #expect(throws: KeyholdError(.unavailable, "")) {
                try await f.storage.readVersion(vaultID: f.vault.id, path: "kept", version: nil, now: .now, audit: record(f, "secret.read"))
            }
            await #expect(throws: KeyholdError(.unavailable, "")) {
                try await f.storage.deleteSecret(vaultID: f.vault.id, path: "kept", at: .now, audit: record(f, "secret.delete"))
            }
            await #expect(throws: KeyholdError(.unavailable, "")) { try await f.storage.appendAudit(record(f, "auth.failure")) }
            let versions = try await f.storage.versions(vaultID: f.vault.id, path: "kept")
            #expect(versions.map(\.version) == [1])
            #expect(versions.first?.accessCount == 0, "the refused read was not counted")
            #expect(versions.first?.isDeleted == false)
        }
    }
}

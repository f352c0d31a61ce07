import Foundation
import KeyholdCore
import Testing

extension StorageConformanceTests {
    func record(_ f: Fixture, _ action: String, chain: AuditChain = testChain, resource: String = "a/b") -> AuditRecord {
        AuditRecord(
            AuditEntry(
                orgID: f.org.id, actorType: .user, actorID: f.owner.id.wire, action: action, resourceType: "secret",
                resourceID: resource, details: ["vault_id": .string(f.vault.id.wire)], ipAddress: "127.0.0.1"),
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

extension StorageConformanceTests {
    @Test(arguments: Backend.enabled)
    func failuresThatNameNoOrgAreWrittenAsOneCountPerAddressAndMethod(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let failures = FailedAuthentications(audit: AuditLog(store: f.storage, chain: testChain), interval: .seconds(60))
            let (a, b) = (IPAddress("10.\(Int.random(in: 0...255)).\(Int.random(in: 0...255)).1")!, IPAddress("192.0.2.77")!)
            for _ in 0..<300 { failures.record(method: "bearer", resourceType: "token", ip: a) }
            for _ in 0..<20 { failures.record(method: "bearer", resourceType: "token", ip: b) }
            for _ in 0..<5 { failures.record(method: "api_key", resourceType: "api_key", ip: a) }
            #expect(failures.pendingCount == 325)
            let before = try await f.storage.auditHead(orgID: AuditEntry.systemOrg)?.sequence ?? 0
            await failures.flush()
            #expect(failures.pendingCount == 0)
            let written = try await f.storage.auditChain(orgID: AuditEntry.systemOrg, afterSequence: before, limit: 1000)
                .filter { $0.entry.ipAddress == a.description || $0.entry.ipAddress == b.description }
            #expect(written.count == 3, "one event per address and method, not one per failure")
            func count(_ ip: IPAddress, _ method: String) -> JSONValue? {
                written.first { $0.entry.ipAddress == ip.description && $0.entry.details["method"] == .string(method) }?
                    .entry.details["count"]
            }
            #expect(count(a, "bearer") == .number(300))
            #expect(count(b, "bearer") == .number(20))
            #expect(count(a, "api_key") == .number(5))
            #expect(written.allSatisfy { $0.entry.action == "auth.failure" && $0.entry.actorID == nil })
            await failures.flush()
            let after = try await f.storage.auditChain(orgID: AuditEntry.systemOrg, afterSequence: before, limit: 1000)
                .filter { $0.entry.ipAddress == a.description || $0.entry.ipAddress == b.description }
            #expect(after.count == 3, "nothing pending, nothing written")
        }
    }
}

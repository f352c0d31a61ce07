import Foundation
import KeyholdCore
import Testing

/// Org IP rules in storage: scoped to their org, audited in the change's transaction, decoded strictly and sealed.
/// Run against every backend.
extension StorageConformanceTests {
    func ipRule(
        _ f: Fixture, _ type: IPRuleType, _ cidr: String, _ target: IPRuleTarget = .all, orgID: UUID? = nil,
        label: String? = "office", createdAt: Timestamp = .now
    ) -> IPRule {
        IPRule(
            id: UUID(), orgID: orgID ?? f.org.id, type: type, cidr: CIDR(cidr)!, cidrText: cidr, label: label,
            appliesTo: target, createdBy: f.owner.id, createdAt: createdAt)
    }

    @Test(arguments: Backend.enabled)
    func ipRulesAreStoredListedAndDeletedPerOrg(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            #expect(try await f.storage.ipRules(orgID: f.org.id).isEmpty)
            let start = Timestamp.now
            let deny = ipRule(f, .deny, "192.0.2.0/24", createdAt: start)
            let allow = ipRule(f, .allow, "2001:db8::/32", .agents, label: nil, createdAt: start.adding(seconds: 1))
            try await f.storage.createIPRule(allow, audit: testAudit)
            try await f.storage.createIPRule(deny, audit: testAudit)
            #expect(try await f.storage.ipRules(orgID: f.org.id) == [deny, allow], "oldest first, every field kept")

            let other = try await otherOrg(f)
            let theirs = ipRule(f, .allow, "198.51.100.7", orgID: other.org.id)
            try await f.storage.createIPRule(theirs, audit: testAudit)
            #expect(try await f.storage.ipRules(orgID: other.org.id) == [theirs])
            #expect(try await f.storage.ipRules(orgID: f.org.id).count == 2)

            #expect(try await !f.storage.deleteIPRule(id: theirs.id, orgID: f.org.id, audit: testAudit), "another org's rule")
            #expect(try await !f.storage.deleteIPRule(id: UUID(), orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.deleteIPRule(id: deny.id, orgID: f.org.id, audit: testAudit))
            #expect(try await !f.storage.deleteIPRule(id: deny.id, orgID: f.org.id, audit: testAudit), "already gone")
            #expect(try await f.storage.ipRules(orgID: f.org.id) == [allow])
            #expect(try await f.storage.ipRules(orgID: other.org.id) == [theirs])
        }
    }

    @Test(arguments: Backend.enabled)
    func ipRuleChangesAreAuditedInTheirTransaction(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let kept = ipRule(f, .deny, "192.0.2.0/24")
            try await f.storage.createIPRule(kept, audit: testAudit)
            let head = try await f.storage.auditHead(orgID: AuditEntry.systemOrg)
            try await backend.breakAuditLog(f.storage)
            await #expect(throws: KeyholdError.auditUnavailable) {
                try await f.storage.createIPRule(ipRule(f, .allow, "10.0.0.0/8"), audit: testAudit)
            }
            await #expect(throws: KeyholdError.auditUnavailable) {
                _ = try await f.storage.deleteIPRule(id: kept.id, orgID: f.org.id, audit: testAudit)
            }
            #expect(try await f.storage.ipRules(orgID: f.org.id) == [kept], "no change without its event")
            #expect(try await f.storage.auditHead(orgID: AuditEntry.systemOrg) == head)
        }
    }

    /// A deny rule moved to another org by SQL does not verify there; and a rule copied under a new id grants
    /// nothing. (Deleting a rule with SQL cannot be told from a rule never made: `docs/threat-model.md`.)
    @Test(arguments: Backend.enabled)
    func ipRulesMovedOrCopiedWithSQLAreRefused(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let other = try await otherOrg(f)
            try await f.storage.createIPRule(ipRule(f, .allow, "198.51.100.0/24"), audit: testAudit)
            try await backend.execute(f.storage, "UPDATE ip_rules SET org_id = '\(other.org.id.wire)'")
            await #expect(throws: StoredDataError(table: "ip_rules", column: "seal", problem: "does not verify")) {
                _ = try await f.storage.ipRules(orgID: other.org.id)
            }
            try await backend.execute(f.storage, "UPDATE ip_rules SET org_id = '\(f.org.id.wire)'")
            #expect(try await f.storage.ipRules(orgID: f.org.id).count == 1, "moved back, the seal verifies again")

            let columns = "org_id, rule_type, cidr, label, applies_to, created_by, created_at, seal"
            let id = backend == .postgres ? "'\(UUID().wire)'::uuid" : "'\(UUID().wire)'"
            try await backend.execute(f.storage, "INSERT INTO ip_rules (id, \(columns)) SELECT \(id), \(columns) FROM ip_rules")
            await #expect(throws: StoredDataError(table: "ip_rules", column: "seal", problem: "does not verify")) {
                _ = try await f.storage.ipRules(orgID: f.org.id)
            }
        }
    }
}

import Foundation
import KeyholdCore

// MARK: org IP rules

extension SQLStore {
    public func createIPRule(_ rule: IPRule, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.insert(
                Self.ipRules,
                [
                    "id": .uuid(rule.id), "org_id": .uuid(rule.orgID), "rule_type": .text(rule.type.rawValue),
                    "cidr": .text(rule.cidrText), "label": .optional(rule.label),
                    "applies_to": .text(rule.appliesTo.rawValue), "created_by": .uuid(rule.createdBy),
                    "created_at": .time(rule.createdAt),
                ], seal: seal)
            try await db.append(audit)
        }
    }

    public func deleteIPRule(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("DELETE FROM ip_rules WHERE id = ? AND org_id = ? RETURNING id", [.uuid(id), .uuid(orgID)])
                != nil
            else { return false }
            try await db.append(audit)
            return true
        }
    }
}

import Foundation
import KeyholdCore

/// Approval requests and their leases (`Approval`, a sealed table): each change locks the row, checks its seal and
/// re-seals it in the transaction that records its audit event, so a lease's uses are exact under concurrency and
/// across nodes.
extension SQLStore {
    static let approvalsTable = GrantSeal.table("approvals")

    func approval(_ row: StoredRow) throws -> Approval { try seal.verified(row, Self.approvalsTable, StoredRecords.approval) }

    public func requestApproval(
        _ approval: Approval, maxPending: Int, audit: AuditRecord, expired: @escaping @Sendable (Approval) -> AuditRecord
    ) async throws -> (approval: Approval, created: Bool) {
        let seal = try self.seal
        return try await database.inTransaction { db in
            // One requester's requests are stored one at a time, on every node. A gated read's request is shared by
            // the requester's reads of that path; an agent's own requests are each their own.
            try await db.lock("keyhold.approval|\(approval.requesterID.wire)")
            if approval.action == Approval.secretRead, let (row, open) = try await db.lockedRow(
                Self.approvalsTable,
                where: """
                    requester_id = ? AND action = ? AND target_type = ? AND target_id = ? AND status = 'pending'
                    AND \(approval.vaultID == nil ? "vault_id IS NULL" : "vault_id = ?")
                    """,
                [.uuid(approval.requesterID), .text(approval.action), .text(approval.targetType), .text(approval.targetID)]
                    + (approval.vaultID.map { [.uuid($0)] } ?? []),
                seal: seal, as: StoredRecords.approval)
            {
                guard open.expiresAt <= approval.createdAt else { return (open, false) }
                try await db.update(Self.approvalsTable, row: row, set: ["status": .text(ApprovalStatus.expired.rawValue)], seal: seal)
                var ended = open
                ended.status = .expired
                try await db.append(expired(ended))
            }
            let open = try await db.first(
                "SELECT COUNT(*) AS n FROM approvals WHERE requester_id = ? AND status = 'pending' AND expires_at > ?",
                [.uuid(approval.requesterID), .time(approval.createdAt)])
            guard try open.map({ try StoredFields($0, table: "approvals").count("n") }) ?? 0 < maxPending else {
                throw KeyholdError(
                    .tooManyRequests, "Too many approval requests are pending for this requester; wait for decisions",
                    retryAfter: 60)
            }
            try await db.insert(Self.approvalsTable, Self.columns(of: approval), seal: seal)
            try await db.append(audit)
            return (approval, true)
        }
    }

    static func columns(of approval: Approval) -> KeyValuePairs<String, SQLValue> {
        [
            "id": .uuid(approval.id), "org_id": .uuid(approval.orgID), "user_id": .optional(approval.userID),
            "requester_type": .text(approval.requesterKind.rawValue), "requester_id": .uuid(approval.requesterID),
            "action": .text(approval.action), "target_type": .text(approval.targetType),
            "target_id": .text(approval.targetID), "vault_id": .optional(approval.vaultID),
            "risk_tier": .int(approval.riskTier), "status": .text(approval.status.rawValue),
            "summary": .text(approval.summary.jsonString()), "reason": .optional(approval.reason),
            "payload": .optional(approval.payload?.jsonString()), "decision_reason": .optional(approval.decisionReason),
            "decided_by": .optional(approval.decidedBy), "decided_at": .optional(approval.decidedAt),
            "expires_at": .time(approval.expiresAt), "ttl_seconds": .int(approval.rule.ttlSeconds),
            "max_uses": .int(approval.rule.maxUses), "uses_left": .int(approval.usesLeft),
            "lease_expires_at": .optional(approval.leaseExpiresAt), "created_at": .time(approval.createdAt),
        ]
    }

    public func approval(id: UUID, orgID: UUID?) async throws -> Approval? {
        try await database.reading {
            try await $0.first("SELECT * FROM approvals WHERE id = ?", [.uuid(id)]).map(self.approval(_:))
                .flatMap { orgID == nil || $0.orgID == orgID ? $0 : nil }
        }
    }

    public func approvals(
        orgID: UUID, status: ApprovalStatus?, requesterID: UUID?, userID: UUID?, now: Timestamp, limit: Int,
        offset: Int
    ) async throws -> [Approval] {
        var sql = "SELECT * FROM approvals WHERE org_id = ?"
        var binds: [SQLValue] = [.uuid(orgID)]
        switch status {
        case nil: break
        case .pending?:
            sql += " AND status = 'pending' AND expires_at > ?"
            binds.append(.time(now))
        case .expired?:
            sql += " AND (status = 'expired' OR (status = 'pending' AND expires_at <= ?))"
            binds.append(.time(now))
        case let other?:
            sql += " AND status = ?"
            binds.append(.text(other.rawValue))
        }
        if let requesterID {
            sql += " AND requester_id = ?"
            binds.append(.uuid(requesterID))
        }
        if let userID {
            sql += " AND user_id = ?"
            binds.append(.uuid(userID))
        }
        sql += " ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
        binds += [.int(limit), .int(offset)]
        let (statement, values) = (sql, binds)
        return try await database.reading { try await $0.query(statement, values).map(self.approval(_:)) }
    }

    public func decideApproval(
        id: UUID, orgID: UUID, status: ApprovalStatus, by decider: UUID?, reason: String?, now: Timestamp,
        policy: (Policy, AuditRecord)?, revokingLease: Bool, audit: @escaping @Sendable (Approval) -> AuditRecord
    ) async throws -> (approval: Approval, changed: Bool)? {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, current) = try await db.lockedRow(
                Self.approvalsTable, where: "id = ? AND org_id = ?", [.uuid(id), .uuid(orgID)], seal: seal,
                as: StoredRecords.approval)
            else { return nil }
            if revokingLease, current.status == .approved, current.usesLeft > 0 {
                var revoked = current
                revoked.status = .cancelled
                revoked.usesLeft = 0
                try await db.update(
                    Self.approvalsTable, row: row,
                    set: ["status": .text(ApprovalStatus.cancelled.rawValue), "uses_left": .int(0)], seal: seal)
                try await db.append(audit(revoked))
                return (revoked, true)
            }
            guard current.status(at: now) == .pending else {
                var shown = current
                shown.status = current.status(at: now)
                return (shown, false)
            }
            var decided = current
            decided.status = status
            decided.decidedBy = decider
            decided.decidedAt = now
            decided.decisionReason = reason
            if status == .approved, current.action == Approval.secretRead {
                decided.usesLeft = current.rule.maxUses
                decided.leaseExpiresAt = Timestamp(milliseconds: now.milliseconds + Int64(current.rule.ttlSeconds) * 1000)
            }
            try await db.update(
                Self.approvalsTable, row: row,
                set: [
                    "status": .text(status.rawValue), "decided_by": .optional(decider), "decided_at": .time(now),
                    "decision_reason": .optional(reason), "uses_left": .int(decided.usesLeft),
                    "lease_expires_at": .optional(decided.leaseExpiresAt),
                ], seal: seal)
            if let (policy, record) = policy {
                try await db.insertPolicy(policy, seal: seal)
                try await db.append(record)
            }
            try await db.append(audit(decided))
            return (decided, true)
        }
    }

    public func expireApprovals(
        now: Timestamp, limit: Int, audit: @escaping @Sendable (Approval, _ lease: Bool) -> AuditRecord
    ) async throws -> Int {
        let seal = try self.seal
        return try await database.inTransaction { db in
            // Locked as they are read: a node sweeping the same rows waits and then finds them no longer due.
            let rows = try await db.query(
                """
                SELECT * FROM approvals
                WHERE (status = 'pending' AND expires_at <= ?)
                    OR (status = 'approved' AND uses_left > 0 AND lease_expires_at <= ?)
                ORDER BY expires_at LIMIT ?
                """ + db.forUpdate, [.time(now), .time(now), .int(limit)])
            var swept = 0
            for row in rows {
                // A row that does not verify grants nothing and is left as it is; the others are still swept.
                guard var approval = try? seal.verified(row, Self.approvalsTable, StoredRecords.approval) else { continue }
                let lease = approval.status == .approved
                if lease {
                    approval.usesLeft = 0
                    try await db.update(Self.approvalsTable, row: row, set: ["uses_left": .int(0)], seal: seal)
                } else {
                    approval.status = .expired
                    try await db.update(
                        Self.approvalsTable, row: row, set: ["status": .text(ApprovalStatus.expired.rawValue)], seal: seal)
                }
                try await db.append(audit(approval, lease))
                swept += 1
            }
            return swept
        }
    }
}

extension SQLConnection {
    /// Spends one use of the requester's approved lease on the vault and path (the one expiring first), re-sealing
    /// it, and returns it as spent; `KeyholdError.noLease` when there is none left. Runs inside the read's
    /// transaction, so a read that fails spends nothing, and two readers of a one-use lease cannot both pass (the row
    /// is locked until commit). Its audit event is the caller's to append, after the version's row lock: every
    /// reader takes the version row before the audit head.
    func spendLease(_ claim: LeaseClaim, now: Timestamp, seal: GrantSeal) async throws -> Approval {
        guard let (row, lease) = try await lockedRow(
            GrantSeal.table("approvals"),
            where: """
                requester_type = ? AND requester_id = ? AND vault_id = ? AND action = ? AND target_type = 'secret'
                AND target_id = ? AND status = 'approved' AND uses_left > 0 AND lease_expires_at > ?
                ORDER BY lease_expires_at, id LIMIT 1
                """,
            [
                .text(claim.requesterKind.rawValue), .uuid(claim.requesterID), .uuid(claim.vaultID),
                .text(Approval.secretRead), .text(claim.path), .time(now),
            ], seal: seal, as: StoredRecords.approval),
            // Checked again on the decoded row: the seal covers what the statement matched.
            lease.status == .approved, lease.usesLeft > 0, (lease.leaseExpiresAt.map { now < $0 } ?? false),
            lease.requesterID == claim.requesterID, lease.requesterKind == claim.requesterKind,
            lease.vaultID == claim.vaultID, lease.targetID == claim.path, lease.action == Approval.secretRead
        else { throw KeyholdError.noLease }
        var spent = lease
        spent.usesLeft -= 1
        try await update(GrantSeal.table("approvals"), row: row, set: ["uses_left": .int(spent.usesLeft)], seal: seal)
        return spent
    }
}

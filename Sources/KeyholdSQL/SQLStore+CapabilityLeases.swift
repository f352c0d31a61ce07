import Foundation
import KeyholdCore

/// Capability leases (`CapabilityLease`, a sealed table): each change locks the row, checks its seal and re-seals it
/// in the transaction that records its audit event, so a lease's uses (its own and each caveat's) are exact under
/// concurrency and across nodes.
extension SQLStore {
    static let capabilityLeasesTable = GrantSeal.table("capability_leases")

    func capabilityLease(_ row: StoredRow) throws -> CapabilityLease {
        try seal.verified(row, Self.capabilityLeasesTable, StoredRecords.capabilityLease)
    }

    public func createCapabilityLease(
        _ lease: CapabilityLease, approval: (claim: LeaseClaim, audit: @Sendable (Approval) -> AuditRecord)?,
        audit: AuditRecord
    ) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            // The secret must have a live, readable version now; a lease over nothing is refused like a read of it.
            guard let row = try await db.first(
                """
                SELECT \(versionColumns) FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
                WHERE s.vault_id = ? AND s.path = ? AND v.version = s.current_version
                """, [.uuid(lease.vaultID), .text(lease.path)])
            else { throw KeyholdError.notFound("Secret not found") }
            let info = try StoredRecords.versionInfo(row)
            if let reason = info.goneReason(now: lease.createdAt) { throw KeyholdError.gone(reason) }
            guard info.cmekFingerprint == nil else { throw CapabilityLease.customerManaged }
            var spent: (Approval, @Sendable (Approval) -> AuditRecord)?
            if let approval { spent = (try await db.spendLease(approval.claim, now: lease.createdAt, seal: seal), approval.audit) }
            try await db.insert(Self.capabilityLeasesTable, Self.columns(of: lease), seal: seal)
            try await db.append(audit)
            if let (approval, record) = spent { try await db.append(record(approval)) }
        }
    }

    static func columns(of lease: CapabilityLease) -> KeyValuePairs<String, SQLValue> {
        [
            "id": .uuid(lease.id), "org_id": .uuid(lease.orgID), "vault_id": .uuid(lease.vaultID),
            "path": .text(lease.path), "principal_type": .text(lease.principalKind.rawValue),
            "principal_id": .uuid(lease.principalID), "scheme": .text(lease.scheme), "host": .text(lease.host),
            "port": .optional(lease.port), "methods": .text(StoredJSON.encode(lease.methods.sorted())),
            "path_prefix": .text(lease.pathPrefix), "injection": .text(lease.injection.json.jsonString()),
            "max_uses": .optional(lease.maxUses), "uses": .int(lease.uses),
            "caveat_uses": .text(Self.caveatUses(lease.caveatUses)), "expires_at": .time(lease.expiresAt),
            "revoked_at": .optional(lease.revokedAt), "description": .optional(lease.description),
            "created_by": .uuid(lease.createdBy), "created_by_type": .text(lease.createdByType.rawValue),
            "created_at": .time(lease.createdAt),
        ]
    }

    static func caveatUses(_ uses: [String: Int]) -> String {
        JSONValue.object(uses.mapValues { .number(Double($0)) }).jsonString()
    }

    public func capabilityLease(id: UUID) async throws -> CapabilityLease? {
        try await database.reading {
            try await $0.first("SELECT * FROM capability_leases WHERE id = ?", [.uuid(id)]).map(self.capabilityLease(_:))
        }
    }

    public func capabilityLeases(vaultID: UUID, limit: Int, offset: Int) async throws -> [CapabilityLease] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM capability_leases WHERE vault_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                [.uuid(vaultID), .int(limit), .int(offset)]
            ).map(self.capabilityLease(_:))
        }
    }

    public func revokeCapabilityLease(
        id: UUID, vaultID: UUID, at now: Timestamp, audit: @escaping @Sendable (CapabilityLease) -> AuditRecord
    ) async throws -> (lease: CapabilityLease, changed: Bool)? {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, lease) = try await db.lockedRow(
                Self.capabilityLeasesTable, where: "id = ? AND vault_id = ?", [.uuid(id), .uuid(vaultID)], seal: seal,
                as: StoredRecords.capabilityLease)
            else { return nil }
            guard lease.revokedAt == nil else { return (lease, false) }
            try await db.update(Self.capabilityLeasesTable, row: row, set: ["revoked_at": .time(now)], seal: seal)
            var revoked = lease
            revoked.revokedAt = now
            try await db.append(audit(revoked))
            return (revoked, true)
        }
    }

    public func spendCapabilityLease<Opened: Sendable>(
        id: UUID, counters: [(key: Data, limit: Int)], now: Timestamp, refusing: Set<SecretType>,
        check: @escaping @Sendable (CapabilityLease) throws -> Void,
        open: @escaping @concurrent @Sendable (CapabilityLease, SealedSecretVersion, KEKHandle) async throws -> Opened,
        audit: @escaping @Sendable (CapabilityLease, SecretVersionInfo) -> AuditRecord
    ) async throws -> (lease: CapabilityLease, opened: Opened) {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, lease) = try await db.lockedRow(
                Self.capabilityLeasesTable, where: "id = ?", [.uuid(id)], seal: seal, as: StoredRecords.capabilityLease)
            else { throw KeyholdError.notFound("Lease not found") }
            if let reason = lease.goneReason(at: now) { throw KeyholdError.gone(reason) }
            try check(lease)
            var caveatUses = lease.caveatUses
            for (key, limit) in counters {
                let hex = key.map { String(format: "%02x", $0) }.joined()
                let used = caveatUses[hex, default: 0]
                guard used < limit else { throw KeyholdError.gone("the token's uses are spent") }
                caveatUses[hex] = used + 1
            }
            guard caveatUses.count <= CapabilityLease.maximumCounters else {
                throw KeyholdError(.conflict, "The lease keeps too many use-limited tokens; create a new lease")
            }
            let sealed = try await db.countedRead(
                where: "s.vault_id = ? AND s.path = ? AND v.version = s.current_version",
                [.uuid(lease.vaultID), .text(lease.path)], now: now, missing: KeyholdError.notFound("Secret not found"),
                refusing: refusing)
            var spent = lease
            spent.uses += 1
            spent.caveatUses = caveatUses
            guard let kek = try await db.first("SELECT id, material FROM keks WHERE id = ?", [.text(sealed.kekID)])
                .map(StoredRecords.kek)
            else { throw KeyholdError.gone("The key for this secret no longer exists") }
            // Before anything is written: a value the use cannot send refuses it, and nothing is spent.
            let opened = try await open(spent, sealed, kek)
            try await db.update(
                Self.capabilityLeasesTable, row: row,
                set: ["uses": .int(spent.uses), "caveat_uses": .text(Self.caveatUses(caveatUses))], seal: seal)
            try await db.append(audit(spent, sealed.info))
            return (spent, opened)
        }
    }
}

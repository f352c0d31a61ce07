import Foundation
import KeyholdCore

extension SQLStore {
    /// A live (not deleted) secret with this id.
    public func secretLocation(id: UUID) async throws -> SecretLocation? {
        try await database.reading {
            try await $0.first(
                """
                SELECT s.id, s.vault_id, s.path, s.current_version, v.org_id FROM secrets s JOIN vaults v ON v.id = s.vault_id
                WHERE s.id = ? AND s.deleted_at IS NULL
                """, [.uuid(id)]
            ).map {
                let fields = StoredFields($0, table: "secrets")
                return SecretLocation(
                    secretID: try fields.uuid("id"), vaultID: try fields.uuid("vault_id"), orgID: try fields.uuid("org_id"),
                    path: try fields.text("path"), currentVersion: try fields.count("current_version"))
            }
        }
    }

    public func createShare(_ share: Share, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.insert(
                Self.shares,
                [
                    "id": .uuid(share.id), "org_id": .uuid(share.orgID), "secret_id": .uuid(share.secretID),
                    "vault_id": .uuid(share.vaultID), "path": .text(share.path),
                    "created_by_type": .text(share.createdByType.rawValue), "created_by": .uuid(share.createdBy),
                    "recipient_type": .text(share.recipientType.rawValue), "recipient_id": .optional(share.recipientID),
                    "recipient_email": .optional(share.recipientEmail), "expires_at": .time(share.expiresAt),
                    "max_access_count": .optional(share.maxAccessCount), "access_count": .int(0),
                    "passphrase_hash": .optional(share.passphraseHash),
                    "ip_allowlist": .text(StoredJSON.encode(share.ipAllowlist.map(\.description))),
                    "status": .text(share.status.rawValue), "revoked_at": .null, "created_at": .time(share.createdAt),
                    "version": .optional(share.version), "claim_digest": .optional(share.claimDigest),
                    "reference": .uuid(share.reference),
                ], seal: seal)
            try await db.append(audit)
        }
    }

    public func share(id: UUID) async throws -> Share? {
        try await database.reading { try await $0.first("SELECT * FROM shares WHERE id = ?", [.uuid(id)]).map(self.share(_:)) }
    }

    public func share(reference: UUID) async throws -> Share? {
        try await database.reading {
            try await $0.first("SELECT * FROM shares WHERE reference = ?", [.uuid(reference)]).map(self.share(_:))
        }
    }

    public func outboundShares(creatorType: PrincipalKind, creatorID: UUID) async throws -> [Share] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM shares WHERE created_by_type = ? AND created_by = ? ORDER BY created_at DESC, id",
                [.text(creatorType.rawValue), .uuid(creatorID)]
            ).map(self.share(_:))
        }
    }

    public func orgShares(orgID: UUID) async throws -> [Share] {
        try await database.reading {
            try await $0.query("SELECT * FROM shares WHERE org_id = ? ORDER BY created_at DESC, id", [.uuid(orgID)])
                .map(self.share(_:))
        }
    }

    public func inboundShares(recipientID: UUID, email: String?) async throws -> [Share] {
        // No stored email holds a NUL character (PostgreSQL text cannot): such an email matches nothing.
        let email = email?.utf8.contains(0) == true ? nil : email
        return try await database.reading {
            try await $0.query(
                """
                SELECT * FROM shares WHERE recipient_id = ? OR (recipient_email IS NOT NULL AND recipient_email = ?)
                ORDER BY created_at DESC, id
                """, [.uuid(recipientID), .optional(email)]
            ).map(self.share(_:))
        }
    }

    public func revokeShare(id: UUID, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, _) = try await db.lockedRow(
                Self.shares, where: "id = ? AND revoked_at IS NULL", [.uuid(id)], seal: seal, as: StoredRecords.share)
            else { return false }
            try await db.update(Self.shares, row: row, set: ["revoked_at": .time(.now)], seal: seal)
            try await db.append(audit)
            return true
        }
    }

    /// A claim binds the recipient and spends the claim token.
    public func answerShare(id: UUID, status: ShareStatus, recipientID: UUID?, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, _) = try await db.lockedRow(
                Self.shares, where: "id = ? AND status = 'pending' AND revoked_at IS NULL", [.uuid(id)], seal: seal,
                as: StoredRecords.share)
            else { return false }
            if let recipientID {
                try await db.update(
                    Self.shares, row: row,
                    set: ["status": .text(status.rawValue), "recipient_id": .uuid(recipientID), "claim_digest": .null],
                    seal: seal)
            } else {
                try await db.update(Self.shares, row: row, set: ["status": .text(status.rawValue)], seal: seal)
            }
            try await db.append(audit)
            return true
        }
    }

    /// One transaction: the share must be live (404 revoked or missing, 410 expired, declined or exhausted), its
    /// access is counted exactly, and the version it pins (or the latest) is read and counted too. On PostgreSQL the
    /// share's row lock orders this access after any concurrent revoke, answer or access of it.
    public func accessShare(id: UUID, now: Timestamp, audit: AuditRecord, refusing: Set<SecretType>) async throws
        -> (Share, SealedSecretVersion)
    {
        let seal = try self.seal
        return try await database.inTransaction { db -> (Share, SealedSecretVersion) in
            guard let (row, share) = try await db.lockedRow(
                Self.shares, where: "id = ?", [.uuid(id)], seal: seal, as: StoredRecords.share)
            else { throw KeyholdError.notFound("Share not found") }
            guard !share.revoked else { throw KeyholdError.notFound("Share not found") }
            if let reason = share.goneReason(at: now) { throw KeyholdError.gone(reason) }
            guard share.maxAccessCount.map({ share.accessCount < $0 }) ?? true else {
                throw KeyholdError.gone("Share has reached its maximum access count")
            }
            let count = share.accessCount + 1
            try await db.update(Self.shares, row: row, set: ["access_count": .int(count)], seal: seal)
            let sealed = try await db.countedRead(
                where: "s.id = ? AND v.version = COALESCE(CAST(? AS BIGINT), s.current_version)",
                [.uuid(share.secretID), .optional(share.version)], now: now,
                missing: KeyholdError.gone("The shared secret no longer exists"), refusing: refusing)
            try await db.append(audit.adding(["version": .number(Double(sealed.info.version))]))
            return (share.with(accessCount: count), sealed)
        }
    }
}

extension SQLConnection {
    /// Revokes the live shares `condition` selects, re-sealing each. A share whose seal does not verify grants
    /// nothing already; it is left as it is (re-sealing it would vouch for what someone else wrote).
    func revokeShares(where condition: String, _ binds: [SQLValue], at time: Timestamp, seal: GrantSeal) async throws {
        for row in try await query("SELECT * FROM shares WHERE \(condition) AND revoked_at IS NULL" + forUpdate, binds) {
            guard (try? seal.verified(row, SQLStore.shares, StoredRecords.share)) != nil else { continue }
            try await update(SQLStore.shares, row: row, set: ["revoked_at": .time(time)], seal: seal)
        }
    }
}

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
        try await database.inTransaction { db in
            try await db.query(
                """
                INSERT INTO shares (id, org_id, secret_id, vault_id, path, created_by_type, created_by, recipient_type,
                    recipient_id, recipient_email, expires_at, max_access_count, access_count, passphrase_hash,
                    ip_allowlist, status, created_at, version, claim_digest, reference)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(share.id), .uuid(share.orgID), .uuid(share.secretID), .uuid(share.vaultID), .text(share.path),
                    .text(share.createdByType.rawValue), .uuid(share.createdBy), .text(share.recipientType.rawValue),
                    .optional(share.recipientID), .optional(share.recipientEmail), .time(share.expiresAt),
                    .optional(share.maxAccessCount), .optional(share.passphraseHash),
                    .text(StoredJSON.encode(share.ipAllowlist.map(\.description))), .text(share.status.rawValue),
                    .time(share.createdAt), .optional(share.version), .optional(share.claimDigest), .uuid(share.reference),
                ])
            try await db.append(audit)
        }
    }

    public func share(id: UUID) async throws -> Share? {
        try await database.reading { try await $0.first("SELECT * FROM shares WHERE id = ?", [.uuid(id)]).map(StoredRecords.share) }
    }

    public func share(reference: UUID) async throws -> Share? {
        try await database.reading {
            try await $0.first("SELECT * FROM shares WHERE reference = ?", [.uuid(reference)]).map(StoredRecords.share)
        }
    }

    public func outboundShares(creatorType: PrincipalKind, creatorID: UUID) async throws -> [Share] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM shares WHERE created_by_type = ? AND created_by = ? ORDER BY created_at DESC, id",
                [.text(creatorType.rawValue), .uuid(creatorID)]
            ).map(StoredRecords.share)
        }
    }

    public func orgShares(orgID: UUID) async throws -> [Share] {
        try await database.reading {
            try await $0.query("SELECT * FROM shares WHERE org_id = ? ORDER BY created_at DESC, id", [.uuid(orgID)])
                .map(StoredRecords.share)
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
            ).map(StoredRecords.share)
        }
    }

    public func revokeShare(id: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first(
                "UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id", [.time(.now), .uuid(id)]
            ) != nil else { return false }
            try await db.append(audit)
            return true
        }
    }

    /// A claim binds the recipient and spends the claim token.
    public func answerShare(id: UUID, status: ShareStatus, recipientID: UUID?, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            let answered =
                if let recipientID {
                    try await db.first(
                        """
                        UPDATE shares SET status = ?, recipient_id = ?, claim_digest = NULL
                        WHERE id = ? AND status = 'pending' AND revoked_at IS NULL RETURNING id
                        """, [.text(status.rawValue), .uuid(recipientID), .uuid(id)])
                } else {
                    try await db.first(
                        "UPDATE shares SET status = ? WHERE id = ? AND status = 'pending' AND revoked_at IS NULL RETURNING id",
                        [.text(status.rawValue), .uuid(id)])
                }
            guard answered != nil else { return false }
            try await db.append(audit)
            return true
        }
    }

    /// One transaction: the share must be live (404 revoked or missing, 410 expired, declined or exhausted), its
    /// access is counted exactly, and the version it pins (or the latest) is read and counted too. On PostgreSQL the
    /// share's row lock orders this access after any concurrent revoke, answer or access of it.
    public func accessShare(id: UUID, now: Timestamp, audit: AuditRecord) async throws -> (Share, SealedSecretVersion) {
        try await database.inTransaction { db -> (Share, SealedSecretVersion) in
            guard let row = try await db.first("SELECT * FROM shares WHERE id = ?" + db.forUpdate, [.uuid(id)]) else {
                throw KeyholdError.notFound("Share not found")
            }
            let share = try StoredRecords.share(row)
            guard !share.revoked else { throw KeyholdError.notFound("Share not found") }
            if let reason = share.goneReason(at: now) { throw KeyholdError.gone(reason) }
            guard let counted = try await db.first(
                """
                UPDATE shares SET access_count = access_count + 1
                WHERE id = ? AND (max_access_count IS NULL OR access_count < max_access_count) RETURNING access_count
                """, [.uuid(id)]
            ) else { throw KeyholdError.gone("Share has reached its maximum access count") }
            let count = try StoredFields(counted, table: "shares").count("access_count")
            let sealed = try await db.countedRead(
                where: "s.id = ? AND v.version = COALESCE(CAST(? AS BIGINT), s.current_version)",
                [.uuid(share.secretID), .optional(share.version)], now: now,
                missing: KeyholdError.gone("The shared secret no longer exists"))
            try await db.append(audit.adding(["version": .number(Double(sealed.info.version))]))
            return (share.with(accessCount: count), sealed)
        }
    }
}

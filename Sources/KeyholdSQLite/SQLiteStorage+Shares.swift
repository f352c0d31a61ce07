import Foundation
import KeyholdCore
import SQLiteNIO

extension SQLiteStorage {
    public func secretLocation(id: UUID) async throws -> SecretLocation? {
        try await read { try $0.query(
            """
            SELECT s.id, s.vault_id, s.path, s.current_version, v.org_id FROM secrets s JOIN vaults v ON v.id = s.vault_id
            WHERE s.id = ? AND s.deleted_at IS NULL
            """, [.uuid(id)]
        ).first.map {
            SecretLocation(
                secretID: try $0.uuid("id"), vaultID: try $0.uuid("vault_id"), orgID: try $0.uuid("org_id"),
                path: try $0.text("path"), currentVersion: Int(try $0.int("current_version")))
        } }
    }

    public func createShare(_ share: Share, audit: AuditRecord) async throws {
        try await transaction { db in
            try db.query(
                """
                INSERT INTO shares (id, org_id, secret_id, vault_id, path, created_by_type, created_by, recipient_type,
                    recipient_id, recipient_email, expires_at, max_access_count, access_count, passphrase_hash,
                    ip_allowlist, status, created_at, version, claim_digest, reference)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(share.id), .uuid(share.orgID), .uuid(share.secretID), .uuid(share.vaultID), .text(share.path),
                    .text(share.createdByType.rawValue), .uuid(share.createdBy), .text(share.recipientType.rawValue),
                    .optionalText(share.recipientID?.wire), .optionalText(share.recipientEmail),
                    .int64(share.expiresAt.milliseconds), .optionalInteger(share.maxAccessCount.map(Int64.init)),
                    .optionalText(share.passphraseHash), .text(StoredJSON.encode(share.ipAllowlist.map(\.description))),
                    .text(share.status.rawValue), .int64(share.createdAt.milliseconds),
                    .optionalInteger(share.version.map(Int64.init)), share.claimDigest.map { .bytes($0) } ?? .null,
                    .uuid(share.reference),
                ])
            try Self.append(db, audit)
        }
    }

    public func share(id: UUID) async throws -> Share? {
        try await read { try $0.query("SELECT * FROM shares WHERE id = ?", [.uuid(id)]).first.map(StoredRecords.share) }
    }

    public func share(reference: UUID) async throws -> Share? {
        try await read { try $0.query("SELECT * FROM shares WHERE reference = ?", [.uuid(reference)]).first.map(StoredRecords.share) }
    }

    public func outboundShares(creatorType: PrincipalKind, creatorID: UUID) async throws -> [Share] {
        try await read { try $0.query(
            "SELECT * FROM shares WHERE created_by_type = ? AND created_by = ? ORDER BY created_at DESC, id",
            [.text(creatorType.rawValue), .uuid(creatorID)]
        ).map(StoredRecords.share) }
    }

    public func orgShares(orgID: UUID) async throws -> [Share] {
        try await read { try $0.query(
            "SELECT * FROM shares WHERE org_id = ? ORDER BY created_at DESC, id", [.uuid(orgID)]
        ).map(StoredRecords.share) }
    }

    public func inboundShares(recipientID: UUID, email: String?) async throws -> [Share] {
        try await read { try $0.query(
            "SELECT * FROM shares WHERE recipient_id = ? OR (recipient_email IS NOT NULL AND recipient_email = ?) ORDER BY created_at DESC, id",
            [.uuid(recipientID), .optionalText(email)]
        ).map(StoredRecords.share) }
    }

    public func revokeShare(id: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                "UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
                [.int64(Timestamp.now.milliseconds), .uuid(id)]
            ).isEmpty) else { return false }
            try Self.append(db, audit)
            return true
        }
    }

    public func answerShare(id: UUID, status: ShareStatus, recipientID: UUID?, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                """
                UPDATE shares SET status = ?1, recipient_id = COALESCE(?2, recipient_id),
                    claim_digest = CASE WHEN ?2 IS NULL THEN claim_digest END
                WHERE id = ?3 AND status = 'pending' AND revoked_at IS NULL RETURNING id
                """, [.text(status.rawValue), .optionalText(recipientID?.wire), .uuid(id)]
            ).isEmpty) else { return false }
            try Self.append(db, audit)
            return true
        }
    }

    public func accessShare(id: UUID, now: Timestamp, audit: AuditRecord) async throws -> (Share, SealedSecretVersion) {
        try await transaction { db in
            guard let row = try db.query("SELECT * FROM shares WHERE id = ?", [.uuid(id)]).first,
                row.column("revoked_at")?.integer == nil
            else { throw KeyholdError.notFound("Share not found") }
            let share = try StoredRecords.share(row)
            if let reason = share.goneReason(at: now) { throw KeyholdError.gone(reason) }
            guard let count = try db.query(
                """
                UPDATE shares SET access_count = access_count + 1
                WHERE id = ? AND (max_access_count IS NULL OR access_count < max_access_count) RETURNING access_count
                """, [.uuid(id)]
            ).first?.int("access_count") else { throw KeyholdError.gone("Share has reached its maximum access count") }
            let sealed = try Self.countedRead(
                db, where: "s.id = ?1 AND v.version = COALESCE(?2, s.current_version)",
                [.uuid(share.secretID), .optionalInteger(share.version.map(Int64.init))], now: now,
                missing: KeyholdError.gone("The shared secret no longer exists"))
            try Self.append(db, audit.adding(["version": .number(Double(sealed.info.version))]))
            return (share.with(accessCount: Int(count)), sealed)
        }
    }

}

import Foundation
import KeyholdCore
import PostgresNIO

extension PostgresStorage {
    public func secretLocation(id: UUID) async throws -> SecretLocation? {
        try await read(
            """
            SELECT s.id, s.vault_id, s.path, s.current_version, v.org_id FROM secrets s JOIN vaults v ON v.id = s.vault_id
            WHERE s.id = \(id) AND s.deleted_at IS NULL
            """
        ).first.map {
            SecretLocation(
                secretID: try $0.uuid("id"), vaultID: try $0.uuid("vault_id"), orgID: try $0.uuid("org_id"),
                path: try $0.text("path"), currentVersion: Int(try $0.int("current_version")))
        }
    }

    public func createShare(_ share: Share, audit: AuditRecord) async throws {
        try await transaction { db in
            try await db.execute(
                """
                INSERT INTO shares (id, org_id, secret_id, vault_id, path, created_by_type, created_by, recipient_type,
                    recipient_id, recipient_email, expires_at, max_access_count, access_count, passphrase_hash,
                    ip_allowlist, status, created_at, version, claim_digest, reference)
                VALUES (\(share.id), \(share.orgID), \(share.secretID), \(share.vaultID), \(share.path),
                    \(share.createdByType.rawValue), \(share.createdBy), \(share.recipientType.rawValue),
                    \(share.recipientID), \(share.recipientEmail), \(share.expiresAt.milliseconds),
                    \(share.maxAccessCount), 0, \(share.passphraseHash),
                    \(StoredJSON.encode(share.ipAllowlist.map(\.description))), \(share.status.rawValue),
                    \(share.createdAt.milliseconds), \(share.version), \(share.claimDigest), \(share.reference))
                """)
            try await Self.append(db, audit)
        }
    }

    public func share(id: UUID) async throws -> Share? {
        try await read("SELECT * FROM shares WHERE id = \(id)").first.map(StoredRecords.share)
    }

    public func share(reference: UUID) async throws -> Share? {
        try await read("SELECT * FROM shares WHERE reference = \(reference)").first.map(StoredRecords.share)
    }

    public func outboundShares(creatorType: PrincipalKind, creatorID: UUID) async throws -> [Share] {
        try await read(
            """
            SELECT * FROM shares WHERE created_by_type = \(creatorType.rawValue) AND created_by = \(creatorID)
            ORDER BY created_at DESC, id
            """
        ).map(StoredRecords.share)
    }

    public func orgShares(orgID: UUID) async throws -> [Share] {
        try await read("SELECT * FROM shares WHERE org_id = \(orgID) ORDER BY created_at DESC, id").map(StoredRecords.share)
    }

    public func inboundShares(recipientID: UUID, email: String?) async throws -> [Share] {
        try await read(
            """
            SELECT * FROM shares
            WHERE recipient_id = \(recipientID) OR (recipient_email IS NOT NULL AND recipient_email = \(email))
            ORDER BY created_at DESC, id
            """
        ).map(StoredRecords.share)
    }

    public func revokeShare(id: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                """
                UPDATE shares SET revoked_at = \(Timestamp.now.milliseconds) WHERE id = \(id) AND revoked_at IS NULL
                RETURNING id
                """
            ).isEmpty) else { return false }
            try await Self.append(db, audit)
            return true
        }
    }

    public func answerShare(id: UUID, status: ShareStatus, recipientID: UUID?, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            // A claim binds the recipient and spends the claim token.
            let query: PostgresQuery =
                if let recipientID {
                    """
                    UPDATE shares SET status = \(status.rawValue), recipient_id = \(recipientID), claim_digest = NULL
                    WHERE id = \(id) AND status = 'pending' AND revoked_at IS NULL RETURNING id
                    """
                } else {
                    """
                    UPDATE shares SET status = \(status.rawValue)
                    WHERE id = \(id) AND status = 'pending' AND revoked_at IS NULL RETURNING id
                    """
                }
            guard !(try await db.query(query).isEmpty) else { return false }
            try await Self.append(db, audit)
            return true
        }
    }

    public func accessShare(id: UUID, now: Timestamp, audit: AuditRecord) async throws -> (Share, SealedSecretVersion) {
        let (share, sealed) = try await transaction { db -> (Share, SealedSecretVersion) in
            // The share's row lock orders this access after any concurrent revoke, answer or access of it.
            guard let row = try await db.query("SELECT * FROM shares WHERE id = \(id) FOR UPDATE").first,
                row.isNull("revoked_at")
            else { throw KeyholdError.notFound("Share not found") }
            let share = try StoredRecords.share(row)
            if let reason = share.goneReason(at: now) { throw KeyholdError.gone(reason) }
            guard let counted = try await db.query(
                """
                UPDATE shares SET access_count = access_count + 1
                WHERE id = \(id) AND (max_access_count IS NULL OR access_count < max_access_count)
                RETURNING access_count
                """
            ).first else { throw KeyholdError.gone("Share has reached its maximum access count") }
            let count = Int(try counted.int("access_count"))
            var binds = PostgresBindings()
            binds.append(share.secretID)
            binds.append(share.version)
            let sealed = try await Self.countedRead(
                db, where: "s.id = $1 AND v.version = COALESCE($2::bigint, s.current_version)", binds, now: now,
                missing: KeyholdError.gone("The shared secret no longer exists"))
            try await Self.append(db, audit.adding(["version": .number(Double(sealed.info.version))]))
            return (share.with(accessCount: count), sealed)
        }
        return (share, sealed)
    }

}

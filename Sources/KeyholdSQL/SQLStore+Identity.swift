import Foundation
import KeyholdCore

// MARK: orgs and members

extension SQLStore {
    /// A taken email is a unique violation: `StorageError.conflict`, and nothing is stored.
    public func createOrg(_ org: Org, owner: User, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            try await db.query(
                "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)",
                [.uuid(org.id), .text(org.name), .time(org.createdAt)])
            try await db.insert(owner)
            try await db.append(audit)
        }
    }

    public func user(email: String) async throws -> User? {
        try await database.reading {
            try await $0.first("SELECT * FROM users WHERE email = ?", [.text(email)]).map(StoredRecords.user)
        }
    }

    public func user(id: UUID) async throws -> User? {
        try await database.reading {
            try await $0.first("SELECT * FROM users WHERE id = ?", [.uuid(id)]).map(StoredRecords.user)
        }
    }

    public func users(orgID: UUID) async throws -> [User] {
        try await database.reading {
            try await $0.query("SELECT * FROM users WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
                .map(StoredRecords.user)
        }
    }

    public func updateRole(userID: UUID, orgID: UUID, role: OrgRole, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            let owners = try await db.lockOwners(orgID: orgID)
            guard let member = try await db.member(userID, orgID: orgID) else { return false }
            if member.role == .owner, role != .owner { try SQLStore.requireAnotherOwner(owners, besides: userID) }
            try await db.query("UPDATE users SET role = ? WHERE id = ?", [.text(role.rawValue), .uuid(userID)])
            try await db.append(audit)
            return true
        }
    }

    /// Removes a member with everything that acted in their name: their policies, refresh tokens and API keys
    /// (those by a foreign key) go, the shares they made are revoked.
    public func removeUser(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            let owners = try await db.lockOwners(orgID: orgID)
            guard let member = try await db.member(id, orgID: orgID) else { return false }
            if member.role == .owner { try SQLStore.requireAnotherOwner(owners, besides: id) }
            try await db.query("DELETE FROM policies WHERE principal_type = 'user' AND principal_id = ?", [.uuid(id)])
            try await db.query("DELETE FROM refresh_tokens WHERE principal_type = 'user' AND principal_id = ?", [.uuid(id)])
            try await db.query(
                "UPDATE shares SET revoked_at = ? WHERE created_by_type = 'user' AND created_by = ? AND revoked_at IS NULL",
                [.time(.now), .uuid(id)])
            try await db.query("DELETE FROM users WHERE id = ?", [.uuid(id)])
            try await db.append(audit)
            return true
        }
    }

    /// The last-owner rule: an org keeps at least one owner.
    static func requireAnotherOwner(_ owners: [UUID], besides userID: UUID) throws {
        if !owners.contains(where: { $0 != userID }) { throw StorageError.lastOwner }
    }
}

extension SQLConnection {
    func insert(_ user: User) async throws {
        try await query(
            """
            INSERT INTO users (id, org_id, email, password_hash, display_name, role, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .uuid(user.id), .uuid(user.orgID), .text(user.email), .text(user.passwordHash),
                .optional(user.displayName), .text(user.role.rawValue), .time(user.createdAt),
            ])
    }

    /// The org's owners, their rows locked in id order before any role is read: two concurrent demotions (or
    /// removals) of the last two owners serialise here, and the second sees the first's change.
    func lockOwners(orgID: UUID) async throws -> [UUID] {
        try await query("SELECT id FROM users WHERE org_id = ? AND role = 'owner' ORDER BY id" + forUpdate, [.uuid(orgID)])
            .map { try StoredFields($0, table: "users").uuid("id") }
    }

    func member(_ userID: UUID, orgID: UUID) async throws -> User? {
        try await first("SELECT * FROM users WHERE id = ? AND org_id = ?" + forUpdate, [.uuid(userID), .uuid(orgID)])
            .map(StoredRecords.user)
    }
}

// MARK: invites

extension SQLStore {
    public func createInvite(_ invite: Invite, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            try await db.query(
                "INSERT INTO invites (digest, org_id, email, role, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    .bytes(invite.digest), .uuid(invite.orgID), .text(invite.email), .text(invite.role.rawValue),
                    .uuid(invite.createdBy), .time(invite.expiresAt),
                ])
            try await db.append(audit)
        }
    }

    public func invite(digest: Data) async throws -> Invite? {
        try await database.reading {
            try await $0.first("SELECT * FROM invites WHERE digest = ?", [.bytes(digest)]).map(StoredRecords.invite)
        }
    }

    /// The conditional UPDATE spends the invite (and on PostgreSQL takes its row lock: of two concurrent redemptions
    /// one finds it spent). A taken email is a unique violation: `StorageError.conflict`, and the invite stays unspent.
    public func redeemInvite(digest: Data, user: User, now: Timestamp, audit: AuditRecord) async throws -> User? {
        try await database.inTransaction { db -> User? in
            guard let row = try await db.first(
                """
                UPDATE invites SET redeemed_at = ?
                WHERE digest = ? AND email = ? AND redeemed_at IS NULL AND expires_at > ?
                RETURNING *
                """, [.time(now), .bytes(digest), .text(user.email), .time(now)]
            ) else { return nil }
            let invite = try StoredRecords.invite(row)
            let member = User(
                id: user.id, orgID: invite.orgID, email: user.email, passwordHash: user.passwordHash,
                displayName: user.displayName, role: invite.role, createdAt: user.createdAt)
            try await db.insert(member)
            try await db.append(audit)
            return member
        }
    }
}

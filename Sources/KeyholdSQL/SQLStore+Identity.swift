import Foundation
import KeyholdCore

// MARK: orgs and members

extension SQLStore {
    /// A taken email is a unique violation: `StorageError.conflict`, and nothing is stored.
    public func createOrg(_ org: Org, owner: User, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.query(
                "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)",
                [.uuid(org.id), .text(org.name), .time(org.createdAt)])
            try await db.insert(owner, seal: seal)
            try await db.append(audit)
        }
    }

    public func user(email: String) async throws -> User? {
        try await database.reading {
            try await $0.first("SELECT * FROM users WHERE email = ?", [.text(email)]).map(self.user(_:))
        }
    }

    public func user(id: UUID) async throws -> User? {
        try await database.reading {
            try await $0.first("SELECT * FROM users WHERE id = ?", [.uuid(id)]).map(self.user(_:))
        }
    }

    public func users(orgID: UUID) async throws -> [User] {
        try await database.reading {
            try await $0.query("SELECT * FROM users WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
                .map(self.user(_:))
        }
    }

    public func updateRole(userID: UUID, orgID: UUID, role: OrgRole, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            let owners = try await db.lockOwners(orgID: orgID, seal: seal)
            guard let (row, member) = try await db.lockedRow(
                Self.users, where: "id = ? AND org_id = ?", [.uuid(userID), .uuid(orgID)], seal: seal, as: StoredRecords.user)
            else { return false }
            if member.role == .owner, role != .owner {
                try SQLStore.requireAnotherOwner(owners, besides: userID)
            }
            try await db.update(Self.users, row: row, set: ["role": .text(role.rawValue)], seal: seal)
            try await db.append(audit)
            return true
        }
    }

    /// Removes a member with everything that acted in their name: their policies, refresh tokens and API keys
    /// (those by a foreign key) go, the shares they made are revoked.
    public func removeUser(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            let owners = try await db.lockOwners(orgID: orgID, seal: seal)
            guard let row = try await db.first("SELECT * FROM users WHERE id = ? AND org_id = ?" + db.forUpdate, [.uuid(id), .uuid(orgID)])
            else { return false }
            // A member whose row does not verify may be removed (removal only narrows), unless the org would be left
            // without a verified owner.
            if (try? seal.verified(row, Self.users, StoredRecords.user).role) != .member {
                try SQLStore.requireAnotherOwner(owners, besides: id)
            }
            try await db.query("DELETE FROM policies WHERE principal_type = 'user' AND principal_id = ?", [.uuid(id)])
            try await db.query("DELETE FROM refresh_tokens WHERE principal_type = 'user' AND principal_id = ?", [.uuid(id)])
            try await db.revokeShares(where: "created_by_type = 'user' AND created_by = ?", [.uuid(id)], at: .now, seal: seal)
            try await db.query("DELETE FROM users WHERE id = ?", [.uuid(id)])
            try await db.append(audit)
            return true
        }
    }

    public func updateProfile(
        userID: UUID, orgID: UUID, displayName: String??, passwordHash: String?, keepingFamily: UUID?, audit: AuditRecord
    ) async throws -> User? {
        let seal = try self.seal
        return try await database.inTransaction { db -> User? in
            guard let (row, _) = try await db.lockedRow(
                Self.users, where: "id = ? AND org_id = ?", [.uuid(userID), .uuid(orgID)], seal: seal, as: StoredRecords.user)
            else { return nil }
            if let displayName {
                try await db.query("UPDATE users SET display_name = ? WHERE id = ?", [.optional(displayName), .uuid(userID)])
            }
            if let passwordHash {
                try await db.update(Self.users, row: row, set: ["password_hash": .text(passwordHash)], seal: seal)
                // Every other session ends: its refresh tokens go and its family can never be joined again.
                let families = try await db.query(
                    "SELECT DISTINCT family FROM refresh_tokens WHERE principal_type = 'user' AND principal_id = ?",
                    [.uuid(userID)])
                for family in try families.map({ try StoredFields($0, table: "refresh_tokens").uuid("family") })
                where family != keepingFamily {
                    try await db.endFamily(family, at: .now)
                }
            }
            try await db.append(audit)
            return try await db.first("SELECT * FROM users WHERE id = ?", [.uuid(userID)]).map(self.user(_:))
        }
    }

    /// The last-owner rule: an org keeps at least one owner.
    static func requireAnotherOwner(_ owners: [UUID], besides userID: UUID) throws {
        if !owners.contains(where: { $0 != userID }) { throw StorageError.lastOwner }
    }
}

extension SQLConnection {
    func insert(_ user: User, seal: GrantSeal) async throws {
        try await insert(
            SQLStore.users,
            [
                "id": .uuid(user.id), "org_id": .uuid(user.orgID), "email": .text(user.email),
                "password_hash": .text(user.passwordHash), "display_name": .optional(user.displayName),
                "role": .text(user.role.rawValue), "created_at": .time(user.createdAt),
            ], seal: seal)
    }

    /// The org's owners whose rows verify, their rows locked in id order before any role is read: two concurrent
    /// demotions (or removals) of the last two owners serialise here, and the second sees the first's change.
    func lockOwners(orgID: UUID, seal: GrantSeal) async throws -> [UUID] {
        try await query("SELECT * FROM users WHERE org_id = ? AND role = 'owner' ORDER BY id" + forUpdate, [.uuid(orgID)])
            .compactMap { try? seal.verified($0, SQLStore.users, StoredRecords.user).id }
    }
}

// MARK: invites

extension SQLStore {
    public func createInvite(_ invite: Invite, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.insert(
                Self.invites,
                [
                    "digest": .bytes(invite.digest), "org_id": .uuid(invite.orgID), "email": .text(invite.email),
                    "role": .text(invite.role.rawValue), "created_by": .uuid(invite.createdBy),
                    "expires_at": .time(invite.expiresAt), "redeemed_at": .null,
                ], seal: seal)
            try await db.append(audit)
        }
    }

    public func invite(digest: Data) async throws -> Invite? {
        try await database.reading {
            try await $0.first("SELECT * FROM invites WHERE digest = ?", [.bytes(digest)]).map(self.invite(_:))
        }
    }

    /// The invite's row is locked as it is read (of two concurrent redemptions, the second finds it spent). A taken
    /// email is a unique violation: `StorageError.conflict`, and the invite stays unspent.
    public func redeemInvite(digest: Data, user: User, now: Timestamp, audit: AuditRecord) async throws -> User? {
        let seal = try self.seal
        return try await database.inTransaction { db -> User? in
            guard let (row, invite) = try await db.lockedRow(
                Self.invites, where: "digest = ? AND email = ? AND redeemed_at IS NULL AND expires_at > ?",
                [.bytes(digest), .text(user.email), .time(now)], seal: seal, as: StoredRecords.invite)
            else { return nil }
            try await db.update(Self.invites, row: row, set: ["redeemed_at": .time(now)], seal: seal)
            let member = User(
                id: user.id, orgID: invite.orgID, email: user.email, passwordHash: user.passwordHash,
                displayName: user.displayName, role: invite.role, createdAt: user.createdAt)
            try await db.insert(member, seal: seal)
            try await db.append(audit)
            return member
        }
    }
}

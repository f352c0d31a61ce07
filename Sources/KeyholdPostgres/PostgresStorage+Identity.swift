import Foundation
import KeyholdCore
import PostgresNIO

// MARK: orgs and users

extension PostgresStorage {
    public func createOrg(_ org: Org, owner: User, audit: AuditRecord) async throws {
        // A taken email is a unique violation, which `transaction` reports as `StorageError.conflict`.
        try await transaction { db in
            try await db.execute(
                "INSERT INTO orgs (id, name, created_at) VALUES (\(org.id), \(org.name), \(org.createdAt.milliseconds))")
            try await Self.insertUser(db, owner)
            try await Self.append(db, audit)
        }
    }

    public func user(email: String) async throws -> User? {
        try await read("SELECT * FROM users WHERE email = \(email)").first.map(StoredRecords.user)
    }

    public func user(id: UUID) async throws -> User? {
        try await read("SELECT * FROM users WHERE id = \(id)").first.map(StoredRecords.user)
    }

    public func users(orgID: UUID) async throws -> [User] {
        try await read("SELECT * FROM users WHERE org_id = \(orgID) ORDER BY created_at, id").map(StoredRecords.user)
    }

    public func updateRole(userID: UUID, orgID: UUID, role: OrgRole, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            let owners = try await Self.lockOwners(db, orgID: orgID)
            guard let row = try await db.query(
                "SELECT role FROM users WHERE id = \(userID) AND org_id = \(orgID) FOR UPDATE"
            ).first else { return false }
            if try row.text("role") == OrgRole.owner.rawValue, role != .owner {
                try Self.requireAnotherOwner(owners, besides: userID)
            }
            try await db.execute("UPDATE users SET role = \(role.rawValue) WHERE id = \(userID)")
            try await Self.append(db, audit)
            return true
        }
    }

    public func removeUser(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            let owners = try await Self.lockOwners(db, orgID: orgID)
            guard let row = try await db.query(
                "SELECT role FROM users WHERE id = \(id) AND org_id = \(orgID) FOR UPDATE"
            ).first else { return false }
            if try row.text("role") == OrgRole.owner.rawValue { try Self.requireAnotherOwner(owners, besides: id) }
            try await db.execute("DELETE FROM policies WHERE principal_type = 'user' AND principal_id = \(id)")
            try await db.execute("DELETE FROM refresh_tokens WHERE principal_type = 'user' AND principal_id = \(id)")
            // Shares die with the member who made them.
            try await db.execute(
                """
                UPDATE shares SET revoked_at = \(Timestamp.now.milliseconds)
                WHERE created_by_type = 'user' AND created_by = \(id) AND revoked_at IS NULL
                """)
            // API keys go with the user (ON DELETE CASCADE).
            try await db.execute("DELETE FROM users WHERE id = \(id)")
            try await Self.append(db, audit)
            return true
        }
    }

    /// Locks the org's owner rows, in id order, before any role is read: two concurrent demotions (or removals)
    /// of the last two owners serialise here, and the second sees the first's change.
    static func lockOwners(_ db: DB, orgID: UUID) async throws -> [UUID] {
        try await db.query(
            "SELECT id FROM users WHERE org_id = \(orgID) AND role = 'owner' ORDER BY id FOR UPDATE"
        ).map { try $0.uuid("id") }
    }

    static func requireAnotherOwner(_ owners: [UUID], besides userID: UUID) throws {
        if !owners.contains(where: { $0 != userID }) { throw StorageError.lastOwner }
    }

    static func insertUser(_ db: DB, _ user: User) async throws {
        try await db.execute(
            """
            INSERT INTO users (id, org_id, email, password_hash, display_name, role, created_at)
            VALUES (\(user.id), \(user.orgID), \(user.email), \(user.passwordHash), \(user.displayName),
                \(user.role.rawValue), \(user.createdAt.milliseconds))
            """)
    }

}

// MARK: invites

extension PostgresStorage {
    public func createInvite(_ invite: Invite, audit: AuditRecord) async throws {
        try await transaction { db in
            try await db.execute(
                """
                INSERT INTO invites (digest, org_id, email, role, created_by, expires_at)
                VALUES (\(invite.digest), \(invite.orgID), \(invite.email), \(invite.role.rawValue),
                    \(invite.createdBy), \(invite.expiresAt.milliseconds))
                """)
            try await Self.append(db, audit)
        }
    }

    public func invite(digest: Data) async throws -> Invite? {
        try await read("SELECT * FROM invites WHERE digest = \(digest)").first.map(StoredRecords.invite)
    }

    public func redeemInvite(digest: Data, user: User, now: Timestamp, audit: AuditRecord) async throws -> User? {
        // The conditional UPDATE takes the invite's row lock: of two concurrent redemptions one finds it spent.
        // A taken email is a unique violation: `StorageError.conflict`, and the invite stays unspent.
        try await transaction { db -> User? in
            guard let row = try await db.query(
                """
                UPDATE invites SET redeemed_at = \(now.milliseconds)
                WHERE digest = \(digest) AND email = \(user.email) AND redeemed_at IS NULL
                    AND expires_at > \(now.milliseconds)
                RETURNING org_id, role
                """
            ).first else { return nil }
            let member = User(
                id: user.id, orgID: try row.uuid("org_id"), email: user.email, passwordHash: user.passwordHash,
                displayName: user.displayName, role: try StoredFields(row, table: "invites").value("role"),
                createdAt: user.createdAt)
            try await Self.insertUser(db, member)
            try await Self.append(db, audit)
            return member
        }
    }
}

import Foundation
import KeyholdCore
import SQLiteNIO

// MARK: members and invites

extension SQLiteStorage {
    public func users(orgID: UUID) async throws -> [User] {
        try await read { try $0.query("SELECT * FROM users WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
            .map(StoredRecords.user) }
    }

    public func updateRole(userID: UUID, orgID: UUID, role: OrgRole, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard let row = try db.query(
                "SELECT role FROM users WHERE id = ? AND org_id = ?", [.uuid(userID), .uuid(orgID)]
            ).first else { return false }
            if try row.text("role") == OrgRole.owner.rawValue, role != .owner {
                try Self.requireAnotherOwner(db, orgID: orgID)
            }
            try db.query("UPDATE users SET role = ? WHERE id = ?", [.text(role.rawValue), .uuid(userID)])
            try Self.append(db, audit)
            return true
        }
    }

    public func removeUser(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard let row = try db.query(
                "SELECT role FROM users WHERE id = ? AND org_id = ?", [.uuid(id), .uuid(orgID)]
            ).first else { return false }
            if try row.text("role") == OrgRole.owner.rawValue { try Self.requireAnotherOwner(db, orgID: orgID) }
            try db.query(
                "DELETE FROM policies WHERE principal_type = 'user' AND principal_id = ?", [.uuid(id)])
            try db.query(
                "DELETE FROM refresh_tokens WHERE principal_type = 'user' AND principal_id = ?", [.uuid(id)])
            try db.query(
                "UPDATE shares SET revoked_at = ? WHERE created_by_type = 'user' AND created_by = ? AND revoked_at IS NULL",
                [.int64(Timestamp.now.milliseconds), .uuid(id)])
            try db.query("DELETE FROM users WHERE id = ?", [.uuid(id)])
            try Self.append(db, audit)
            return true
        }
    }

    static func requireAnotherOwner(_ db: SQLiteDB, orgID: UUID) throws {
        let owners = try db.query(
            "SELECT COUNT(*) AS n FROM users WHERE org_id = ? AND role = 'owner'", [.uuid(orgID)]
        ).first?.int("n") ?? 0
        if owners <= 1 { throw StorageError.lastOwner }
    }

    public func createInvite(_ invite: Invite, audit: AuditRecord) async throws {
        try await transaction { db in
            try db.query(
                """
                INSERT INTO invites (digest, org_id, email, role, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?)
                """,
                [
                    .bytes(invite.digest), .uuid(invite.orgID), .text(invite.email), .text(invite.role.rawValue),
                    .uuid(invite.createdBy), .int64(invite.expiresAt.milliseconds),
                ])
            try Self.append(db, audit)
        }
    }

    public func invite(digest: Data) async throws -> Invite? {
        try await read { try $0.query("SELECT * FROM invites WHERE digest = ?", [.bytes(digest)]).first.map(StoredRecords.invite) }
    }

    public func redeemInvite(digest: Data, user: User, now: Timestamp, audit: AuditRecord) async throws -> User? {
        do {
            return try await transaction { db -> User? in
                guard let row = try db.query(
                    """
                    UPDATE invites SET redeemed_at = ?
                    WHERE digest = ? AND email = ? AND redeemed_at IS NULL AND expires_at > ?
                    RETURNING org_id, role
                    """,
                    [.int64(now.milliseconds), .bytes(digest), .text(user.email), .int64(now.milliseconds)]
                ).first else { return nil }
                let member = User(
                    id: user.id, orgID: try row.uuid("org_id"), email: user.email, passwordHash: user.passwordHash,
                    displayName: user.displayName, role: try StoredFields(row, table: "invites").value("role"),
                    createdAt: user.createdAt)
                try Self.insertUser(db, member)
                try Self.append(db, audit)
                return member
            }
        } catch let error as SQLiteDB.Failure where error.isUniqueViolation {
            throw StorageError.conflict
        }
    }

    static func insertUser(_ db: SQLiteDB, _ user: User) throws {
        try db.query(
            """
            INSERT INTO users (id, org_id, email, password_hash, display_name, role, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .uuid(user.id), .uuid(user.orgID), .text(user.email), .text(user.passwordHash),
                .optionalText(user.displayName), .text(user.role.rawValue), .int64(user.createdAt.milliseconds),
            ])
    }
}

// MARK: agents

extension SQLiteStorage {
    public func createAgent(_ agent: Agent, audit: AuditRecord) async throws {
        try await transaction { db in
            try db.query(
                """
                INSERT INTO agents (id, org_id, name, description, is_active, scopes, vault_ids, token_ttl_seconds,
                    expires_at, created_by, created_at, key_prefix, key_digest, key_version)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, Self.agentBinds(agent))
            try Self.append(db, audit)
        }
    }

    public func agent(id: UUID) async throws -> Agent? {
        try await read { try $0.query("SELECT * FROM agents WHERE id = ?", [.uuid(id)]).first.map(StoredRecords.agent) }
    }

    public func agents(orgID: UUID) async throws -> [Agent] {
        try await read { try $0.query("SELECT * FROM agents WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
            .map(StoredRecords.agent) }
    }

    public func agents(keyPrefix: String) async throws -> [Agent] {
        try await read { try $0.query("SELECT * FROM agents WHERE key_prefix = ?", [.text(keyPrefix)]).map(StoredRecords.agent) }
    }

    public func updateAgent(_ agent: Agent, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                """
                UPDATE agents SET name = ?, description = ?, is_active = ?, scopes = ?, vault_ids = ?,
                    token_ttl_seconds = ?, expires_at = ?, key_prefix = ?, key_digest = ?, key_version = ?
                WHERE id = ? AND org_id = ? RETURNING id
                """,
                [
                    .text(agent.name), .optionalText(agent.description), .int64(agent.isActive ? 1 : 0),
                    .optionalText(agent.scopes.map(StoredJSON.encode)),
                    .text(StoredJSON.encode(agent.vaultIDs.map { $0.wire })),
                    .optionalInteger(agent.tokenTTLSeconds.map(Int64.init)),
                    .optionalInteger(agent.expiresAt?.milliseconds), .text(agent.keyPrefix), .bytes(agent.keyDigest),
                    .int64(Int64(agent.keyVersion)), .uuid(agent.id), .uuid(agent.orgID),
                ]
            ).isEmpty) else { return false }
            try Self.append(db, audit)
            return true
        }
    }

    public func deleteAgent(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                "DELETE FROM agents WHERE id = ? AND org_id = ? RETURNING id", [.uuid(id), .uuid(orgID)]
            ).isEmpty) else { return false }
            try db.query("DELETE FROM policies WHERE principal_type = 'agent' AND principal_id = ?", [.uuid(id)])
            try db.query(
                "DELETE FROM refresh_tokens WHERE principal_type = 'agent' AND principal_id = ?", [.uuid(id)])
            // Shares die with the principal who made them.
            try db.query(
                "UPDATE shares SET revoked_at = ? WHERE created_by_type = 'agent' AND created_by = ? AND revoked_at IS NULL",
                [.int64(Timestamp.now.milliseconds), .uuid(id)])
            try Self.append(db, audit)
            return true
        }
    }

    static func agentBinds(_ agent: Agent) -> [SQLiteData] {
        [
            .uuid(agent.id), .uuid(agent.orgID), .text(agent.name), .optionalText(agent.description),
            .int64(agent.isActive ? 1 : 0), .optionalText(agent.scopes.map(StoredJSON.encode)),
            .text(StoredJSON.encode(agent.vaultIDs.map { $0.wire })),
            .optionalInteger(agent.tokenTTLSeconds.map(Int64.init)), .optionalInteger(agent.expiresAt?.milliseconds),
            .uuid(agent.createdBy), .int64(agent.createdAt.milliseconds), .text(agent.keyPrefix),
            .bytes(agent.keyDigest), .int64(Int64(agent.keyVersion)),
        ]
    }

}

// MARK: credentials

extension SQLiteStorage {
    public func createAPIKey(_ key: UserAPIKey, audit: AuditRecord) async throws {
        try await transaction { db in
            try db.query(
                """
                INSERT INTO user_api_keys (id, user_id, org_id, name, key_prefix, key_digest, scopes, is_active,
                    created_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(key.id), .uuid(key.userID), .uuid(key.orgID), .text(key.name), .text(key.keyPrefix),
                    .bytes(key.keyDigest), .optionalText(key.scopes.map(StoredJSON.encode)),
                    .int64(key.isActive ? 1 : 0), .int64(key.createdAt.milliseconds),
                    .optionalInteger(key.expiresAt?.milliseconds),
                ])
            try Self.append(db, audit)
        }
    }

    public func apiKeys(userID: UUID) async throws -> [UserAPIKey] {
        try await read { try $0.query(
            "SELECT * FROM user_api_keys WHERE user_id = ? ORDER BY created_at, id", [.uuid(userID)]
        ).map(StoredRecords.apiKey) }
    }

    public func apiKey(id: UUID) async throws -> UserAPIKey? {
        try await read { try $0.query("SELECT * FROM user_api_keys WHERE id = ?", [.uuid(id)]).first.map(StoredRecords.apiKey) }
    }

    public func apiKeys(keyPrefix: String) async throws -> [UserAPIKey] {
        try await read { try $0.query("SELECT * FROM user_api_keys WHERE key_prefix = ?", [.text(keyPrefix)]).map(StoredRecords.apiKey) }
    }

    public func deactivateAPIKey(id: UUID, userID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                "UPDATE user_api_keys SET is_active = 0 WHERE id = ? AND user_id = ? AND is_active = 1 RETURNING id",
                [.uuid(id), .uuid(userID)]
            ).isEmpty) else { return false }
            try Self.append(db, audit)
            return true
        }
    }


    public func createRefreshToken(_ token: RefreshTokenRecord, audit: AuditRecord) async throws {
        try await transaction { db in
            guard try db.query(
                "SELECT 1 AS x FROM ended_refresh_families WHERE family = ?", [.uuid(token.family)]
            ).isEmpty else { throw KeyholdError(.unauthorized, "Invalid or expired refresh token") }
            try db.query(
                """
                INSERT INTO refresh_tokens (digest, family, principal_type, principal_id, org_id, expires_at, scopes,
                    api_key_id, key_version)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .bytes(token.digest), .uuid(token.family), .text(token.principalKind.rawValue),
                    .uuid(token.principalID), .uuid(token.orgID), .int64(token.expiresAt.milliseconds),
                    .optionalText(token.scopes.map(StoredJSON.encode)), .optionalText(token.apiKeyID?.wire),
                    .optionalInteger(token.keyVersion.map(Int64.init)),
                ])
            try Self.append(db, audit)
        }
    }

    public func spendRefreshToken(digest: Data, now: Timestamp) async throws -> RefreshTokenRecord? {
        try await transaction { db -> RefreshTokenRecord? in
            guard let row = try db.query("SELECT * FROM refresh_tokens WHERE digest = ?", [.bytes(digest)]).first
            else { return nil }
            let token = try StoredRecords.refreshToken(row)
            if try StoredFields(row, table: "refresh_tokens").optionalInt("spent_at") != nil {
                // A spent token presented again: someone holds a copy. End the whole family.
                try Self.endFamily(db, token.family, at: now)
                return nil
            }
            guard now < token.expiresAt else { return nil }
            try db.query(
                "UPDATE refresh_tokens SET spent_at = ? WHERE digest = ?", [.int64(now.milliseconds), .bytes(digest)])
            return token
        }
    }

    public func revokeToken(id: String, expiresAt: Timestamp, refreshFamily: UUID?, audit: AuditRecord) async throws {
        try await transaction { db in
            if let refreshFamily { try Self.endFamily(db, refreshFamily, at: .now) }
            try db.query(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING",
                [.text(id), .int64(expiresAt.milliseconds)])
            try db.query(
                "DELETE FROM revoked_tokens WHERE expires_at < ?", [.int64(Timestamp.now.milliseconds - 60_000)])
            try Self.append(db, audit)
        }
    }

    /// Deletes a refresh family's tokens and records it as ended (kept a little longer than a refresh token lives).
    static func endFamily(_ db: SQLiteDB, _ family: UUID, at now: Timestamp) throws {
        try db.query("DELETE FROM refresh_tokens WHERE family = ?", [.uuid(family)])
        try db.query(
            "INSERT INTO ended_refresh_families (family, ended_at) VALUES (?, ?) ON CONFLICT (family) DO NOTHING",
            [.uuid(family), .int64(now.milliseconds)])
        try db.query(
            "DELETE FROM ended_refresh_families WHERE ended_at < ?",
            [.int64(now.milliseconds - (AuthService.refreshLifetime + 86_400) * 1000)])
    }

    public func isTokenRevoked(id: String) async throws -> Bool {
        !(try await read { try $0.query("SELECT 1 AS x FROM revoked_tokens WHERE jti = ?", [.text(id)]).isEmpty })
    }
}

// MARK: policies

extension SQLiteStorage {
    public func createPolicy(_ policy: Policy, audit: AuditRecord) async throws {
        try await transaction { db in
            try db.query(
                """
                INSERT INTO policies (id, vault_id, pattern, principal_type, principal_id, permissions, conditions,
                    expires_at, effect, priority, created_by, created_by_type, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(policy.id), .uuid(policy.vaultID), .text(policy.pattern.rawValue),
                    .text(policy.principalKind.rawValue), .uuid(policy.principalID),
                    .text(StoredJSON.encode(policy.permissions.map(\.rawValue))),
                    .optionalText(policy.conditions.json?.jsonString()), .optionalInteger(policy.expiresAt?.milliseconds),
                    .text(policy.effect.rawValue), .int64(Int64(policy.priority)), .uuid(policy.createdBy),
                    .text(policy.createdByType.rawValue), .int64(policy.createdAt.milliseconds),
                ])
            try Self.append(db, audit)
        }
    }

    public func policy(id: UUID, vaultID: UUID) async throws -> Policy? {
        try await read { try $0.query("SELECT * FROM policies WHERE id = ? AND vault_id = ?", [.uuid(id), .uuid(vaultID)])
            .first.map(StoredRecords.policy) }
    }

    public func policies(vaultID: UUID) async throws -> [Policy] {
        try await read { try $0.query(
            "SELECT * FROM policies WHERE vault_id = ? ORDER BY priority DESC, created_at, id", [.uuid(vaultID)]
        ).map(StoredRecords.policy) }
    }

    public func policies(principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await read { try $0.query(
            "SELECT * FROM policies WHERE principal_type = ? AND principal_id = ?",
            [.text(principalKind.rawValue), .uuid(principalID)]
        ).map(StoredRecords.policy) }
    }

    public func policies(vaultID: UUID, principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await read { try $0.query(
            "SELECT * FROM policies WHERE vault_id = ? AND principal_type = ? AND principal_id = ?",
            [.uuid(vaultID), .text(principalKind.rawValue), .uuid(principalID)]
        ).map(StoredRecords.policy) }
    }

    public func updatePolicy(_ policy: Policy, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                """
                UPDATE policies SET permissions = ?, conditions = ?, expires_at = ?, effect = ?, priority = ?
                WHERE id = ? AND vault_id = ? RETURNING id
                """,
                [
                    .text(StoredJSON.encode(policy.permissions.map(\.rawValue))),
                    .optionalText(policy.conditions.json?.jsonString()), .optionalInteger(policy.expiresAt?.milliseconds),
                    .text(policy.effect.rawValue), .int64(Int64(policy.priority)), .uuid(policy.id), .uuid(policy.vaultID),
                ]
            ).isEmpty) else { return false }
            try Self.append(db, audit)
            return true
        }
    }

    public func deletePolicy(id: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try db.query(
                "DELETE FROM policies WHERE id = ? AND vault_id = ? RETURNING id", [.uuid(id), .uuid(vaultID)]
            ).isEmpty) else { return false }
            try Self.append(db, audit)
            return true
        }
    }

}

import Foundation
import KeyholdCore
import PostgresNIO

// MARK: agents

extension PostgresStorage {
    public func createAgent(_ agent: Agent, audit: AuditRecord) async throws {
        try await transaction { db in
            try await db.execute(
                """
                INSERT INTO agents (id, org_id, name, description, is_active, scopes, vault_ids, token_ttl_seconds,
                    expires_at, created_by, created_at, key_prefix, key_digest, key_version)
                VALUES (\(agent.id), \(agent.orgID), \(agent.name), \(agent.description), \(agent.isActive),
                    \(agent.scopes.map(StoredJSON.encode)), \(Self.vaultIDs(agent)), \(agent.tokenTTLSeconds),
                    \(agent.expiresAt?.milliseconds), \(agent.createdBy), \(agent.createdAt.milliseconds),
                    \(agent.keyPrefix), \(agent.keyDigest), \(agent.keyVersion))
                """)
            try await Self.append(db, audit)
        }
    }

    public func agent(id: UUID) async throws -> Agent? {
        try await read("SELECT * FROM agents WHERE id = \(id)").first.map(StoredRecords.agent)
    }

    public func agents(orgID: UUID) async throws -> [Agent] {
        try await read("SELECT * FROM agents WHERE org_id = \(orgID) ORDER BY created_at, id").map(StoredRecords.agent)
    }

    public func agents(keyPrefix: String) async throws -> [Agent] {
        try await read("SELECT * FROM agents WHERE key_prefix = \(keyPrefix) ORDER BY created_at, id").map(StoredRecords.agent)
    }

    public func updateAgent(_ agent: Agent, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                """
                UPDATE agents SET name = \(agent.name), description = \(agent.description),
                    is_active = \(agent.isActive), scopes = \(agent.scopes.map(StoredJSON.encode)),
                    vault_ids = \(Self.vaultIDs(agent)), token_ttl_seconds = \(agent.tokenTTLSeconds),
                    expires_at = \(agent.expiresAt?.milliseconds), key_prefix = \(agent.keyPrefix),
                    key_digest = \(agent.keyDigest), key_version = \(agent.keyVersion)
                WHERE id = \(agent.id) AND org_id = \(agent.orgID) RETURNING id
                """
            ).isEmpty) else { return false }
            try await Self.append(db, audit)
            return true
        }
    }

    public func deleteAgent(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                "DELETE FROM agents WHERE id = \(id) AND org_id = \(orgID) RETURNING id"
            ).isEmpty) else { return false }
            try await db.execute("DELETE FROM policies WHERE principal_type = 'agent' AND principal_id = \(id)")
            try await db.execute("DELETE FROM refresh_tokens WHERE principal_type = 'agent' AND principal_id = \(id)")
            // Shares die with the principal who made them.
            try await db.execute(
                """
                UPDATE shares SET revoked_at = \(Timestamp.now.milliseconds)
                WHERE created_by_type = 'agent' AND created_by = \(id) AND revoked_at IS NULL
                """)
            try await Self.append(db, audit)
            return true
        }
    }

    static func vaultIDs(_ agent: Agent) -> String {
        StoredJSON.encode(agent.vaultIDs.map { $0.wire })
    }

}

// MARK: credentials

extension PostgresStorage {
    public func createAPIKey(_ key: UserAPIKey, audit: AuditRecord) async throws {
        try await transaction { db in
            try await db.execute(
                """
                INSERT INTO user_api_keys (id, user_id, org_id, name, key_prefix, key_digest, scopes, is_active,
                    created_at, expires_at)
                VALUES (\(key.id), \(key.userID), \(key.orgID), \(key.name), \(key.keyPrefix), \(key.keyDigest),
                    \(key.scopes.map(StoredJSON.encode)), \(key.isActive), \(key.createdAt.milliseconds),
                    \(key.expiresAt?.milliseconds))
                """)
            try await Self.append(db, audit)
        }
    }

    public func apiKeys(userID: UUID) async throws -> [UserAPIKey] {
        try await read("SELECT * FROM user_api_keys WHERE user_id = \(userID) ORDER BY created_at, id").map(StoredRecords.apiKey)
    }

    public func apiKey(id: UUID) async throws -> UserAPIKey? {
        try await read("SELECT * FROM user_api_keys WHERE id = \(id)").first.map(StoredRecords.apiKey)
    }

    public func apiKeys(keyPrefix: String) async throws -> [UserAPIKey] {
        try await read("SELECT * FROM user_api_keys WHERE key_prefix = \(keyPrefix) ORDER BY created_at, id")
            .map(StoredRecords.apiKey)
    }

    public func deactivateAPIKey(id: UUID, userID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                """
                UPDATE user_api_keys SET is_active = false WHERE id = \(id) AND user_id = \(userID) AND is_active
                RETURNING id
                """
            ).isEmpty) else { return false }
            try await Self.append(db, audit)
            return true
        }
    }


    public func createRefreshToken(_ token: RefreshTokenRecord, audit: AuditRecord) async throws {
        try await transaction { db in
            // The family's lock orders this insert and a concurrent logout: the token is either refused here or
            // deleted by the logout.
            try await Self.lockFamily(db, token.family)
            guard try await db.query(
                "SELECT 1 AS x FROM ended_refresh_families WHERE family = \(token.family)"
            ).isEmpty else { throw KeyholdError(.unauthorized, "Invalid or expired refresh token") }
            try await db.execute(
                """
                INSERT INTO refresh_tokens (digest, family, principal_type, principal_id, org_id, expires_at, scopes,
                    api_key_id, key_version)
                VALUES (\(token.digest), \(token.family), \(token.principalKind.rawValue), \(token.principalID),
                    \(token.orgID), \(token.expiresAt.milliseconds), \(token.scopes.map(StoredJSON.encode)),
                    \(token.apiKeyID), \(token.keyVersion))
                """)
            try await Self.append(db, audit)
        }
    }

    public func spendRefreshToken(digest: Data, now: Timestamp) async throws -> RefreshTokenRecord? {
        // The row lock makes two concurrent spends of one token serialise: the second sees it spent, exactly as
        // a replay, and ends the family.
        try await transaction { db -> RefreshTokenRecord? in
            // The family's lock first, then the row's, in the order a logout takes them (no deadlock).
            guard let found = try await db.query("SELECT family FROM refresh_tokens WHERE digest = \(digest)").first
            else { return nil }
            try await Self.lockFamily(db, try found.uuid("family"))
            guard let row = try await db.query("SELECT * FROM refresh_tokens WHERE digest = \(digest) FOR UPDATE").first
            else { return nil }
            let token = try StoredRecords.refreshToken(row)
            if try StoredFields(row, table: "refresh_tokens").optionalInt("spent_at") != nil {
                // A spent token presented again: someone holds a copy. End the whole family.
                try await Self.endFamily(db, token.family, at: now)
                return nil
            }
            guard now < token.expiresAt else { return nil }
            try await db.execute("UPDATE refresh_tokens SET spent_at = \(now.milliseconds) WHERE digest = \(digest)")
            return token
        }
    }

    public func revokeToken(id: String, expiresAt: Timestamp, refreshFamily: UUID?, audit: AuditRecord) async throws {
        try await transaction { db in
            if let refreshFamily { try await Self.endFamily(db, refreshFamily, at: .now) }
            try await db.execute(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (\(id), \(expiresAt.milliseconds)) ON CONFLICT (jti) DO NOTHING")
            try await db.execute(
                "DELETE FROM revoked_tokens WHERE expires_at < \(Timestamp.now.milliseconds - 60_000)")
            try await Self.append(db, audit)
        }
    }

    static func lockFamily(_ db: DB, _ family: UUID) async throws {
        try await db.execute("SELECT pg_advisory_xact_lock(hashtext(\(family.wire))::bigint)")
    }

    /// Deletes a refresh family's tokens and records it as ended (kept a little longer than a refresh token lives).
    static func endFamily(_ db: DB, _ family: UUID, at now: Timestamp) async throws {
        try await lockFamily(db, family)
        try await db.execute("DELETE FROM refresh_tokens WHERE family = \(family)")
        try await db.execute(
            "INSERT INTO ended_refresh_families (family, ended_at) VALUES (\(family), \(now.milliseconds)) ON CONFLICT (family) DO NOTHING")
        try await db.execute(
            "DELETE FROM ended_refresh_families WHERE ended_at < \(now.milliseconds - (AuthService.refreshLifetime + 86_400) * 1000)")
    }

    public func isTokenRevoked(id: String) async throws -> Bool {
        !(try await read("SELECT 1 AS x FROM revoked_tokens WHERE jti = \(id)").isEmpty)
    }
}

// MARK: policies

extension PostgresStorage {
    public func createPolicy(_ policy: Policy, audit: AuditRecord) async throws {
        try await transaction { db in
            try await db.execute(
                """
                INSERT INTO policies (id, vault_id, pattern, principal_type, principal_id, permissions, conditions,
                    expires_at, effect, priority, created_by, created_by_type, created_at)
                VALUES (\(policy.id), \(policy.vaultID), \(policy.pattern.rawValue), \(policy.principalKind.rawValue),
                    \(policy.principalID), \(StoredJSON.encode(policy.permissions.map(\.rawValue))),
                    \(policy.conditions.json?.jsonString()), \(policy.expiresAt?.milliseconds),
                    \(policy.effect.rawValue), \(policy.priority), \(policy.createdBy),
                    \(policy.createdByType.rawValue), \(policy.createdAt.milliseconds))
                """)
            try await Self.append(db, audit)
        }
    }

    public func policy(id: UUID, vaultID: UUID) async throws -> Policy? {
        try await read("SELECT * FROM policies WHERE id = \(id) AND vault_id = \(vaultID)").first.map(StoredRecords.policy)
    }

    public func policies(vaultID: UUID) async throws -> [Policy] {
        try await read(
            "SELECT * FROM policies WHERE vault_id = \(vaultID) ORDER BY priority DESC, created_at, id"
        ).map(StoredRecords.policy)
    }

    public func policies(principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await read(
            """
            SELECT * FROM policies WHERE principal_type = \(principalKind.rawValue) AND principal_id = \(principalID)
            ORDER BY created_at, id
            """
        ).map(StoredRecords.policy)
    }

    public func policies(vaultID: UUID, principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await read(
            """
            SELECT * FROM policies
            WHERE vault_id = \(vaultID) AND principal_type = \(principalKind.rawValue) AND principal_id = \(principalID)
            ORDER BY created_at, id
            """
        ).map(StoredRecords.policy)
    }

    public func updatePolicy(_ policy: Policy, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                """
                UPDATE policies SET permissions = \(StoredJSON.encode(policy.permissions.map(\.rawValue))),
                    conditions = \(policy.conditions.json?.jsonString()), expires_at = \(policy.expiresAt?.milliseconds),
                    effect = \(policy.effect.rawValue), priority = \(policy.priority)
                WHERE id = \(policy.id) AND vault_id = \(policy.vaultID) RETURNING id
                """
            ).isEmpty) else { return false }
            try await Self.append(db, audit)
            return true
        }
    }

    public func deletePolicy(id: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool {
        try await transaction { db in
            guard !(try await db.query(
                "DELETE FROM policies WHERE id = \(id) AND vault_id = \(vaultID) RETURNING id"
            ).isEmpty) else { return false }
            try await Self.append(db, audit)
            return true
        }
    }

}

import Foundation
import KeyholdCore

// MARK: agents

extension SQLStore {
    public func createAgent(_ agent: Agent, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            try await db.query(
                """
                INSERT INTO agents (name, description, is_active, scopes, vault_ids, token_ttl_seconds, expires_at,
                    key_prefix, key_digest, key_version, id, org_id, created_by, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                SQLStore.agentFields(agent) + [.uuid(agent.id), .uuid(agent.orgID), .uuid(agent.createdBy), .time(agent.createdAt)])
            try await db.append(audit)
        }
    }

    public func agent(id: UUID) async throws -> Agent? {
        try await database.reading {
            try await $0.first("SELECT * FROM agents WHERE id = ?", [.uuid(id)]).map(StoredRecords.agent)
        }
    }

    public func agents(orgID: UUID) async throws -> [Agent] {
        try await database.reading {
            try await $0.query("SELECT * FROM agents WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
                .map(StoredRecords.agent)
        }
    }

    public func agents(keyPrefix: String) async throws -> [Agent] {
        try await database.reading {
            try await $0.query("SELECT * FROM agents WHERE key_prefix = ? ORDER BY created_at, id", [.text(keyPrefix)])
                .map(StoredRecords.agent)
        }
    }

    public func updateAgent(_ agent: Agent, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first(
                """
                UPDATE agents SET name = ?, description = ?, is_active = ?, scopes = ?, vault_ids = ?,
                    token_ttl_seconds = ?, expires_at = ?, key_prefix = ?, key_digest = ?, key_version = ?
                WHERE id = ? AND org_id = ? RETURNING id
                """, SQLStore.agentFields(agent) + [.uuid(agent.id), .uuid(agent.orgID)]
            ) != nil else { return false }
            try await db.append(audit)
            return true
        }
    }

    /// Deletes the agent with everything that acted in its name: its policies and refresh tokens go, the shares it
    /// made are revoked.
    public func deleteAgent(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("DELETE FROM agents WHERE id = ? AND org_id = ? RETURNING id", [.uuid(id), .uuid(orgID)])
                != nil
            else { return false }
            try await db.query("DELETE FROM policies WHERE principal_type = 'agent' AND principal_id = ?", [.uuid(id)])
            try await db.query("DELETE FROM refresh_tokens WHERE principal_type = 'agent' AND principal_id = ?", [.uuid(id)])
            try await db.query(
                "UPDATE shares SET revoked_at = ? WHERE created_by_type = 'agent' AND created_by = ? AND revoked_at IS NULL",
                [.time(.now), .uuid(id)])
            try await db.append(audit)
            return true
        }
    }

    /// The fields an update may change, in the order both statements above name them.
    static func agentFields(_ agent: Agent) -> [SQLValue] {
        [
            .text(agent.name), .optional(agent.description), .boolean(agent.isActive),
            .optional(agent.scopes.map(StoredJSON.encode)), .text(StoredJSON.encode(agent.vaultIDs.map(\.wire))),
            .optional(agent.tokenTTLSeconds), .optional(agent.expiresAt), .text(agent.keyPrefix),
            .bytes(agent.keyDigest), .int(agent.keyVersion),
        ]
    }
}

// MARK: credentials

extension SQLStore {
    public func createAPIKey(_ key: UserAPIKey, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            try await db.query(
                """
                INSERT INTO user_api_keys (id, user_id, org_id, name, key_prefix, key_digest, scopes, is_active,
                    created_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(key.id), .uuid(key.userID), .uuid(key.orgID), .text(key.name), .text(key.keyPrefix),
                    .bytes(key.keyDigest), .optional(key.scopes.map(StoredJSON.encode)), .boolean(key.isActive),
                    .time(key.createdAt), .optional(key.expiresAt),
                ])
            try await db.append(audit)
        }
    }

    public func apiKeys(userID: UUID) async throws -> [UserAPIKey] {
        try await database.reading {
            try await $0.query("SELECT * FROM user_api_keys WHERE user_id = ? ORDER BY created_at, id", [.uuid(userID)])
                .map(StoredRecords.apiKey)
        }
    }

    public func apiKey(id: UUID) async throws -> UserAPIKey? {
        try await database.reading {
            try await $0.first("SELECT * FROM user_api_keys WHERE id = ?", [.uuid(id)]).map(StoredRecords.apiKey)
        }
    }

    public func apiKeys(keyPrefix: String) async throws -> [UserAPIKey] {
        try await database.reading {
            try await $0.query("SELECT * FROM user_api_keys WHERE key_prefix = ? ORDER BY created_at, id", [.text(keyPrefix)])
                .map(StoredRecords.apiKey)
        }
    }

    public func deactivateAPIKey(id: UUID, userID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first(
                "UPDATE user_api_keys SET is_active = ? WHERE id = ? AND user_id = ? AND is_active = ? RETURNING id",
                [.boolean(false), .uuid(id), .uuid(userID), .boolean(true)]
            ) != nil else { return false }
            try await db.append(audit)
            return true
        }
    }

    /// A family ended by logout or reuse stays ended: no token may join it again. The family's lock orders this
    /// insert and a concurrent logout, so the token is either refused here or deleted by the logout.
    public func createRefreshToken(_ token: RefreshTokenRecord, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            try await db.lock(token.family.wire)
            guard try await db.first("SELECT family FROM ended_refresh_families WHERE family = ?", [.uuid(token.family)])
                == nil
            else { throw KeyholdError(.unauthorized, "Invalid or expired refresh token") }
            try await db.query(
                """
                INSERT INTO refresh_tokens (digest, family, principal_type, principal_id, org_id, expires_at, scopes,
                    api_key_id, key_version)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .bytes(token.digest), .uuid(token.family), .text(token.principalKind.rawValue),
                    .uuid(token.principalID), .uuid(token.orgID), .time(token.expiresAt),
                    .optional(token.scopes.map(StoredJSON.encode)), .optional(token.apiKeyID), .optional(token.keyVersion),
                ])
            try await db.append(audit)
        }
    }

    /// Single use: a token presented again means someone holds a copy, and its whole family ends. Two concurrent
    /// spends serialise on the family's lock and the row's, taken in the order a logout takes them.
    public func spendRefreshToken(digest: Data, now: Timestamp) async throws -> RefreshTokenRecord? {
        try await database.inTransaction { db -> RefreshTokenRecord? in
            guard let found = try await db.first("SELECT family FROM refresh_tokens WHERE digest = ?", [.bytes(digest)])
            else { return nil }
            try await db.lock(try StoredFields(found, table: "refresh_tokens").uuid("family").wire)
            guard let row = try await db.first("SELECT * FROM refresh_tokens WHERE digest = ?" + db.forUpdate, [.bytes(digest)])
            else { return nil }
            let token = try StoredRecords.refreshToken(row)
            if try StoredFields(row, table: "refresh_tokens").optionalInt("spent_at") != nil {
                try await db.endFamily(token.family, at: now)
                return nil
            }
            guard now < token.expiresAt else { return nil }
            try await db.query("UPDATE refresh_tokens SET spent_at = ? WHERE digest = ?", [.time(now), .bytes(digest)])
            return token
        }
    }

    public func revokeToken(id: String, expiresAt: Timestamp, refreshFamily: UUID?, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            if let refreshFamily { try await db.endFamily(refreshFamily, at: .now) }
            try await db.query(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING",
                [.text(id), .time(expiresAt)])
            try await db.query("DELETE FROM revoked_tokens WHERE expires_at < ?", [.integer(Timestamp.now.milliseconds - 60_000)])
            try await db.append(audit)
        }
    }

    public func isTokenRevoked(id: String) async throws -> Bool {
        try await database.reading { try await $0.first("SELECT jti FROM revoked_tokens WHERE jti = ?", [.text(id)]) != nil }
    }

    public func tokenSubject(kind: PrincipalKind, id: UUID, tokenID: String) async throws -> TokenSubject? {
        try await database.reading { db in
            guard try await db.first("SELECT jti FROM revoked_tokens WHERE jti = ?", [.text(tokenID)]) == nil else {
                return nil
            }
            switch kind {
            case .user: return try await db.first("SELECT * FROM users WHERE id = ?", [.uuid(id)]).map { .user(try StoredRecords.user($0)) }
            case .agent:
                return try await db.first("SELECT * FROM agents WHERE id = ?", [.uuid(id)]).map { .agent(try StoredRecords.agent($0)) }
            }
        }
    }
}

extension SQLConnection {
    /// Deletes a refresh family's tokens and records it as ended (kept a little longer than a refresh token lives).
    func endFamily(_ family: UUID, at now: Timestamp) async throws {
        try await lock(family.wire)
        try await query("DELETE FROM refresh_tokens WHERE family = ?", [.uuid(family)])
        try await query(
            "INSERT INTO ended_refresh_families (family, ended_at) VALUES (?, ?) ON CONFLICT (family) DO NOTHING",
            [.uuid(family), .time(now)])
        try await query(
            "DELETE FROM ended_refresh_families WHERE ended_at < ?",
            [.integer(now.milliseconds - Int64(AuthService.refreshLifetime + 86_400) * 1000)])
    }
}

// MARK: policies

extension SQLStore {
    public func createPolicy(_ policy: Policy, audit: AuditRecord) async throws {
        try await database.inTransaction { db in
            try await db.query(
                """
                INSERT INTO policies (permissions, conditions, expires_at, effect, priority, id, vault_id, pattern,
                    principal_type, principal_id, created_by, created_by_type, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                SQLStore.policyFields(policy) + [
                    .uuid(policy.id), .uuid(policy.vaultID), .text(policy.pattern.rawValue),
                    .text(policy.principalKind.rawValue), .uuid(policy.principalID), .uuid(policy.createdBy),
                    .text(policy.createdByType.rawValue), .time(policy.createdAt),
                ])
            try await db.append(audit)
        }
    }

    public func policy(id: UUID, vaultID: UUID) async throws -> Policy? {
        try await database.reading {
            try await $0.first("SELECT * FROM policies WHERE id = ? AND vault_id = ?", [.uuid(id), .uuid(vaultID)])
                .map(StoredRecords.policy)
        }
    }

    public func policies(vaultID: UUID) async throws -> [Policy] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM policies WHERE vault_id = ? ORDER BY priority DESC, created_at, id", [.uuid(vaultID)]
            ).map(StoredRecords.policy)
        }
    }

    public func policies(principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM policies WHERE principal_type = ? AND principal_id = ? ORDER BY created_at, id",
                [.text(principalKind.rawValue), .uuid(principalID)]
            ).map(StoredRecords.policy)
        }
    }

    public func policies(vaultID: UUID, principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await database.reading {
            try await $0.query(
                """
                SELECT * FROM policies WHERE vault_id = ? AND principal_type = ? AND principal_id = ?
                ORDER BY created_at, id
                """, [.uuid(vaultID), .text(principalKind.rawValue), .uuid(principalID)]
            ).map(StoredRecords.policy)
        }
    }

    public func updatePolicy(_ policy: Policy, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first(
                """
                UPDATE policies SET permissions = ?, conditions = ?, expires_at = ?, effect = ?, priority = ?
                WHERE id = ? AND vault_id = ? RETURNING id
                """, SQLStore.policyFields(policy) + [.uuid(policy.id), .uuid(policy.vaultID)]
            ) != nil else { return false }
            try await db.append(audit)
            return true
        }
    }

    public func deletePolicy(id: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("DELETE FROM policies WHERE id = ? AND vault_id = ? RETURNING id", [.uuid(id), .uuid(vaultID)])
                != nil
            else { return false }
            try await db.append(audit)
            return true
        }
    }

    /// The fields an update may change, in the order both statements above name them.
    static func policyFields(_ policy: Policy) -> [SQLValue] {
        [
            .text(StoredJSON.encode(policy.permissions.map(\.rawValue))), .optional(policy.conditions.json?.jsonString()),
            .optional(policy.expiresAt), .text(policy.effect.rawValue), .int(policy.priority),
        ]
    }
}

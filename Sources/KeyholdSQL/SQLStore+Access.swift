import Foundation
import KeyholdCore

// MARK: agents

extension SQLStore {
    public func createAgent(_ agent: Agent, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.insert(
                Self.agents,
                [
                    "id": .uuid(agent.id), "org_id": .uuid(agent.orgID), "name": .text(agent.name),
                    "description": .optional(agent.description), "is_active": .boolean(agent.isActive),
                    "scopes": .optional(agent.scopes.map(StoredJSON.encode)),
                    "vault_ids": .text(StoredJSON.encode(agent.vaultIDs.map(\.wire))),
                    "token_ttl_seconds": .optional(agent.tokenTTLSeconds), "expires_at": .optional(agent.expiresAt),
                    "key_prefix": .text(agent.keyPrefix), "key_digest": .bytes(agent.keyDigest),
                    "key_version": .int(agent.keyVersion), "environment": .optional(agent.environment),
                    "environment_locked": .boolean(agent.environmentLocked),
                    "env_auto_resolve": .boolean(agent.envAutoResolve),
                    "api_key_expires_at": .optional(agent.apiKeyExpiresAt),
                    "intents_api_enabled": .boolean(agent.intentsAPIEnabled), "created_by": .uuid(agent.createdBy),
                    "ssh_public_key": .optional(agent.sshPublicKey), "ecdh_public_key": .optional(agent.ecdhPublicKey),
                    "identity_keys_created_at": .optional(agent.identityKeysCreatedAt),
                    "identity_key_history": .text(StoredJSON.encode(agent.identityKeyHistory)),
                    "created_at": .time(agent.createdAt),
                ], seal: seal)
            try await db.append(audit)
        }
    }

    public func agent(id: UUID) async throws -> Agent? {
        try await database.reading {
            try await $0.first("SELECT * FROM agents WHERE id = ?", [.uuid(id)]).map(self.agent(_:))
        }
    }

    public func agents(orgID: UUID) async throws -> [Agent] {
        try await database.reading {
            try await $0.query("SELECT * FROM agents WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
                .map(self.agent(_:))
        }
    }

    public func agents(keyPrefix: String) async throws -> [Agent] {
        try await database.reading {
            try await $0.query("SELECT * FROM agents WHERE key_prefix = ? ORDER BY created_at, id", [.text(keyPrefix)])
                .map(self.agent(_:))
        }
    }

    public func updateAgent(_ agent: Agent, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, _) = try await db.lockedRow(
                Self.agents, where: "id = ? AND org_id = ?", [.uuid(agent.id), .uuid(agent.orgID)], seal: seal,
                as: StoredRecords.agent)
            else { return false }
            try await db.update(
                Self.agents, row: row,
                set: [
                    "name": .text(agent.name), "description": .optional(agent.description),
                    "is_active": .boolean(agent.isActive), "scopes": .optional(agent.scopes.map(StoredJSON.encode)),
                    "vault_ids": .text(StoredJSON.encode(agent.vaultIDs.map(\.wire))),
                    "token_ttl_seconds": .optional(agent.tokenTTLSeconds), "expires_at": .optional(agent.expiresAt),
                    "key_prefix": .text(agent.keyPrefix), "key_digest": .bytes(agent.keyDigest),
                    "key_version": .int(agent.keyVersion), "environment": .optional(agent.environment),
                    "environment_locked": .boolean(agent.environmentLocked),
                    "env_auto_resolve": .boolean(agent.envAutoResolve),
                    "api_key_expires_at": .optional(agent.apiKeyExpiresAt),
                    "intents_api_enabled": .boolean(agent.intentsAPIEnabled),
                    "ssh_public_key": .optional(agent.sshPublicKey), "ecdh_public_key": .optional(agent.ecdhPublicKey),
                    "identity_keys_created_at": .optional(agent.identityKeysCreatedAt),
                    "identity_key_history": .text(StoredJSON.encode(agent.identityKeyHistory)),
                ], seal: seal)
            try await db.append(audit)
            return true
        }
    }

    /// Deletes the agent with everything that acted in its name: its policies and refresh tokens go, the shares it
    /// made are revoked.
    public func deleteAgent(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard try await db.first("DELETE FROM agents WHERE id = ? AND org_id = ? RETURNING id", [.uuid(id), .uuid(orgID)])
                != nil
            else { return false }
            try await db.query("DELETE FROM policies WHERE principal_type = 'agent' AND principal_id = ?", [.uuid(id)])
            try await db.query("DELETE FROM refresh_tokens WHERE principal_type = 'agent' AND principal_id = ?", [.uuid(id)])
            try await db.revokeShares(where: "created_by_type = 'agent' AND created_by = ?", [.uuid(id)], at: .now, seal: seal)
            try await db.append(audit)
            return true
        }
    }
}

// MARK: credentials

extension SQLStore {
    public func createAPIKey(_ key: UserAPIKey, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.insert(
                Self.apiKeys,
                [
                    "id": .uuid(key.id), "user_id": .uuid(key.userID), "org_id": .uuid(key.orgID), "name": .text(key.name),
                    "key_prefix": .text(key.keyPrefix), "key_digest": .bytes(key.keyDigest),
                    "scopes": .optional(key.scopes.map(StoredJSON.encode)), "is_active": .boolean(key.isActive),
                    "created_at": .time(key.createdAt), "expires_at": .optional(key.expiresAt),
                ], seal: seal)
            try await db.append(audit)
        }
    }

    public func apiKeys(userID: UUID) async throws -> [UserAPIKey] {
        try await database.reading {
            try await $0.query("SELECT * FROM user_api_keys WHERE user_id = ? ORDER BY created_at, id", [.uuid(userID)])
                .map(self.apiKey(_:))
        }
    }

    public func apiKey(id: UUID) async throws -> UserAPIKey? {
        try await database.reading {
            try await $0.first("SELECT * FROM user_api_keys WHERE id = ?", [.uuid(id)]).map(self.apiKey(_:))
        }
    }

    public func apiKeys(keyPrefix: String) async throws -> [UserAPIKey] {
        try await database.reading {
            try await $0.query("SELECT * FROM user_api_keys WHERE key_prefix = ? ORDER BY created_at, id", [.text(keyPrefix)])
                .map(self.apiKey(_:))
        }
    }

    public func deactivateAPIKey(id: UUID, userID: UUID, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, _) = try await db.lockedRow(
                Self.apiKeys, where: "id = ? AND user_id = ? AND is_active = ?", [.uuid(id), .uuid(userID), .boolean(true)],
                seal: seal, as: StoredRecords.apiKey)
            else { return false }
            try await db.update(Self.apiKeys, row: row, set: ["is_active": .boolean(false)], seal: seal)
            try await db.append(audit)
            return true
        }
    }

    /// A family ended by logout or reuse stays ended: no token may join it again. The family's lock orders this
    /// insert and a concurrent logout, so the token is either refused here or deleted by the logout.
    public func createRefreshToken(_ token: RefreshTokenRecord, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.lock(token.family.wire)
            guard try await db.first("SELECT family FROM ended_refresh_families WHERE family = ?", [.uuid(token.family)])
                == nil
            else { throw KeyholdError(.unauthorized, "Invalid or expired refresh token") }
            try await db.insert(
                Self.refreshTokens,
                [
                    "digest": .bytes(token.digest), "family": .uuid(token.family),
                    "principal_type": .text(token.principalKind.rawValue), "principal_id": .uuid(token.principalID),
                    "org_id": .uuid(token.orgID), "expires_at": .time(token.expiresAt),
                    "scopes": .optional(token.scopes.map(StoredJSON.encode)), "api_key_id": .optional(token.apiKeyID),
                    "key_version": .optional(token.keyVersion), "spent_at": .null,
                ], seal: seal)
            try await db.append(audit)
        }
    }

    /// Single use: a token presented again means someone holds a copy, and its whole family ends. Two concurrent
    /// spends serialise on the family's lock and the row's, taken in the order a logout takes them.
    public func spendRefreshToken(digest: Data, now: Timestamp) async throws -> RefreshTokenRecord? {
        let seal = try self.seal
        return try await database.inTransaction { db -> RefreshTokenRecord? in
            guard let found = try await db.first("SELECT family FROM refresh_tokens WHERE digest = ?", [.bytes(digest)])
            else { return nil }
            try await db.lock(try StoredFields(found, table: "refresh_tokens").uuid("family").wire)
            guard let (row, token) = try await db.lockedRow(
                Self.refreshTokens, where: "digest = ?", [.bytes(digest)], seal: seal, as: StoredRecords.refreshToken)
            else { return nil }
            if try StoredFields(row, table: "refresh_tokens").optionalInt("spent_at") != nil {
                try await db.endFamily(token.family, at: now)
                return nil
            }
            guard now < token.expiresAt else { return nil }
            try await db.update(Self.refreshTokens, row: row, set: ["spent_at": .time(now)], seal: seal)
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
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.insertPolicy(policy, seal: seal)
            try await db.append(audit)
        }
    }

    public func policy(id: UUID, vaultID: UUID) async throws -> Policy? {
        try await database.reading {
            try await $0.first("SELECT * FROM policies WHERE id = ? AND vault_id = ?", [.uuid(id), .uuid(vaultID)])
                .map(self.policy(_:))
        }
    }

    public func policies(vaultID: UUID) async throws -> [Policy] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM policies WHERE vault_id = ? ORDER BY priority DESC, created_at, id", [.uuid(vaultID)]
            ).map(self.policy(_:))
        }
    }

    public func policies(principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM policies WHERE principal_type = ? AND principal_id = ? ORDER BY created_at, id",
                [.text(principalKind.rawValue), .uuid(principalID)]
            ).map(self.policy(_:))
        }
    }

    public func policies(vaultID: UUID, principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy] {
        try await database.reading {
            try await $0.query(
                """
                SELECT * FROM policies WHERE vault_id = ? AND principal_type = ? AND principal_id = ?
                ORDER BY created_at, id
                """, [.uuid(vaultID), .text(principalKind.rawValue), .uuid(principalID)]
            ).map(self.policy(_:))
        }
    }

    public func updatePolicy(_ policy: Policy, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, _) = try await db.lockedRow(
                Self.policies, where: "id = ? AND vault_id = ?", [.uuid(policy.id), .uuid(policy.vaultID)], seal: seal,
                as: StoredRecords.policy)
            else { return false }
            try await db.update(
                Self.policies, row: row,
                set: [
                    "permissions": .text(StoredJSON.encode(policy.permissions.map(\.rawValue))),
                    "conditions": .optional(policy.conditions.json?.jsonString()), "expires_at": .optional(policy.expiresAt),
                    "effect": .text(policy.effect.rawValue), "priority": .int(policy.priority),
                ], seal: seal)
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
}

extension SQLConnection {
    func insertPolicy(_ policy: Policy, seal: GrantSeal) async throws {
        try await insert(
            GrantSeal.table("policies"),
            [
                "id": .uuid(policy.id), "vault_id": .uuid(policy.vaultID), "pattern": .text(policy.pattern.rawValue),
                "principal_type": .text(policy.principalKind.rawValue), "principal_id": .uuid(policy.principalID),
                "permissions": .text(StoredJSON.encode(policy.permissions.map(\.rawValue))),
                "conditions": .optional(policy.conditions.json?.jsonString()), "expires_at": .optional(policy.expiresAt),
                "effect": .text(policy.effect.rawValue), "priority": .int(policy.priority),
                "created_by": .uuid(policy.createdBy), "created_by_type": .text(policy.createdByType.rawValue),
                "created_at": .time(policy.createdAt),
            ], seal: seal)
    }
}

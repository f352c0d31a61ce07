import Foundation
import KeyholdCore

/// The lookups every authenticated request makes: from the backend's `AuthorizationCache` (SQLite's clock,
/// PostgreSQL's epoch) inside a request, otherwise one plain read each. Either way the rows are decoded strictly and
/// their seals verified when they are read from storage.
extension SQLStore {
    /// The subject's row and whether the token is revoked, in one statement (one round trip on PostgreSQL, where a
    /// round trip costs more CPU than the statement).
    public func tokenSubject(kind: PrincipalKind, id: UUID, tokenID: String) async throws -> TokenSubject? {
        try await lookup(.subject(kind, id, tokenID: tokenID)) { rows in
            guard let row = rows.first, try !StoredFields(row, table: "revoked_tokens").bool("token_revoked") else {
                return nil
            }
            return kind == .user ? .user(try self.user(row)) : .agent(try self.agent(row))
        }
    }

    /// The vault in this org, then the principal's policies on it (an empty list for a missing vault).
    public func vaultAndPolicies(id: UUID, orgID: UUID, principalKind: PrincipalKind, principalID: UUID) async throws
        -> (Vault, [Policy])?
    {
        try await lookup(.vault(id, orgID: orgID, principalKind, principalID)) { rows in
            guard let first = rows.first, first.names["vault_row"] != nil else { return nil }
            return (try self.vault(first), try rows.dropFirst().map(self.policy(_:)))
        }
    }

    /// One indexed read; every row is decoded strictly and its seal verified, so one bad row fails the whole list
    /// (a deny rule that does not verify must never read as "no rule").
    public func ipRules(orgID: UUID) async throws -> [IPRule] {
        try await lookup(.ipRules(orgID: orgID)) { try $0.map(self.ipRule(_:)) }
    }

    private func lookup<Value: Sendable>(
        _ key: AuthorizationCache.Key, decode: @escaping @Sendable ([StoredRow]) throws -> Value
    ) async throws -> Value {
        let load = { @Sendable in
            try await self.database.reading { db in
                let rows = try await AuthorizationCache.rows(key, on: db)
                return AuthorizationCache.Loaded(value: try decode(rows), rows: rows.map(\.values))
            }
        }
        guard let cache = authorization else { return try await load().value }
        return try await cache.value(key, load: load)
    }
}

extension AuthorizationCache {
    /// The rows behind `key`, as a lookup reads them and as a transaction reads them again to check them. For a
    /// vault: the vault's row (with a `vault_row` column), then the principal's policies; nothing without the vault.
    static func rows(_ key: Key, on db: any SQLConnection) async throws -> [StoredRow] {
        switch key {
        case .subject(let kind, let id, let tokenID):
            let table = kind == .user ? "users" : "agents"
            return try await db.query(
                "SELECT t.*, EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?) AS token_revoked FROM \(table) t WHERE t.id = ?",
                [.text(tokenID), .uuid(id)])
        case .vault(let id, let orgID, let kind, let principalID):
            guard let vault = try await db.first(
                "SELECT v.*, 1 AS vault_row FROM vaults v WHERE v.id = ? AND v.org_id = ?", [.uuid(id), .uuid(orgID)])
            else { return [] }
            return [vault] + (try await db.query(
                "SELECT * FROM policies WHERE vault_id = ? AND principal_type = ? AND principal_id = ? ORDER BY id",
                [.uuid(id), .text(kind.rawValue), .uuid(principalID)]))
        case .ipRules(let orgID):
            return try await db.query("SELECT * FROM ip_rules WHERE org_id = ? ORDER BY created_at, id", [.uuid(orgID)])
        }
    }

    /// Inside a transaction of a request that was served facts from memory: when the clock has moved since any of
    /// them was read, or an earlier transaction of this commit group changed authorization, each fact's rows are
    /// read again on the transaction's connection and must be exactly the rows the request was served.
    static func check(_ observation: AuthorizationObservation, clock: AuthorizationClock, on db: any SQLConnection)
        async throws
    {
        let facts = observation.facts
        guard !facts.isEmpty else { return }
        let now = clock.now
        guard db.changedAuthorization || facts.contains(where: { $0.tick != now }) else { return }
        for fact in facts {
            guard let key = fact.key as? Key, try await rows(key, on: db).map(\.values) == fact.rows else {
                throw AuthorizationObservation.changed
            }
        }
    }
}

import Foundation

/// Authentication: bearer credentials to principals, token exchange, refresh, revocation and personal API keys.
///
/// Every check that revocation depends on runs on every request against storage (revoked token ids, the agent's
/// active flag, expiry and key version, the API key's active flag, the user's membership), so a revocation made
/// on any node is refused by every node on the next request. (The token's subject comes from an exact in-memory
/// copy that any change to it invalidates for the next request on every node: `AuthorizationCache`.)
public struct AuthService: Sendable {
    let identities: any IdentityStore
    let agents: any AgentStore
    let credentials: any CredentialStore
    let tokens: TokenService
    let hasher: CredentialHasher
    let audit: AuditLog
    /// Failures that name no org: counted, and written as one event per address and interval.
    let failures: FailedAuthentications
    /// The org's IP rules, applied once the caller is known (every bearer, every token exchange).
    let ipRules: IPRuleService

    public static let refreshLifetime: Int64 = 30 * 24 * 3600
    public static let defaultAgentTokenLifetime: Int64 = 3600

    public init(
        identities: any IdentityStore, agents: any AgentStore, credentials: any CredentialStore, tokens: TokenService,
        hasher: CredentialHasher, audit: AuditLog, failures: FailedAuthentications, ipRules: IPRuleService
    ) {
        self.ipRules = ipRules
        self.audit = audit
        self.failures = failures
        self.identities = identities
        self.agents = agents
        self.credentials = credentials
        self.tokens = tokens
        self.hasher = hasher
    }

    /// An access token, and a refresh token when the flow hands one out.
    public struct Session: Sendable {
        public let access: TokenService.IssuedToken
        public let refreshToken: String?
        public let principal: Principal
    }

    // MARK: bearer credentials

    /// Resolves `Authorization: Bearer <credential>`: an EdDSA access token, or a personal `1ck_` API key. A
    /// refused credential is counted for the system chain (whose it was is unknown; see `FailedAuthentications`).
    /// Then, before anything else, the caller's org IP rules (403 when they refuse `ip`).
    public func authenticate(bearer credential: String?, ip: IPAddress?) async throws -> Principal {
        let principal: Principal
        do {
            guard let credential else { throw KeyholdError.unauthenticated }
            principal = try await self.principal(bearer: credential)
        } catch let error as KeyholdError where error.code == .unauthorized {
            failures.record(method: credential == nil ? "none" : "bearer", resourceType: "token", ip: ip)
            throw error
        }
        try await ipRules.enforce(principal, ip: ip, method: principal.tokenID == nil ? "api_key" : "bearer")
        return principal
    }

    func principal(bearer credential: String, now: Timestamp = .now) async throws -> Principal {
        if credential.hasPrefix(CredentialKind.userKey.rawValue) {
            return try await userKeyPrincipal(credential, now: now)
        }
        let claims = try await tokens.verify(credential)
        let subject = claims.sub.value.split(separator: ":", maxSplits: 1)
        guard subject.count == 2, let id = UUID(fast: String(subject[1])),
            let orgID = UUID(fast: claims.org)
        else { throw KeyholdError.unauthenticated }
        let expiresAt = Timestamp(claims.exp.value)
        guard let kind = PrincipalKind(rawValue: String(subject[0])),
            let current = try await credentials.tokenSubject(kind: kind, id: id, tokenID: claims.jti.value)
        else { throw KeyholdError.unauthenticated }
        switch current {
        case .user(let user):
            guard user.orgID == orgID else { throw KeyholdError.unauthenticated }
            var apiKeyID: UUID?
            if let akid = claims.akid {
                // A session exchanged from a personal API key ends when the key is deleted or expires.
                guard let keyID = UUID(uuidString: akid), try await activeAPIKey(keyID, userID: user.id, now: now)
                else { throw KeyholdError.unauthenticated }
                apiKeyID = keyID
            }
            return Principal(
                kind: .user, id: user.id, orgID: user.orgID, role: user.role, scopes: claims.scopes,
                tokenID: claims.jti.value, tokenExpiresAt: expiresAt, apiKeyID: apiKeyID,
                refreshFamily: claims.rfam.flatMap(UUID.init(uuidString:)))
        case .agent(let agent):
            guard agent.orgID == orgID, agent.isUsable(at: now), claims.kv == agent.keyVersion else {
                throw KeyholdError.unauthenticated
            }
            return Self.principal(
                for: agent, tokenID: claims.jti.value, tokenExpiresAt: expiresAt,
                refreshFamily: claims.rfam.flatMap(UUID.init(uuidString:)))
        }
    }

    static func principal(
        for agent: Agent, tokenID: String? = nil, tokenExpiresAt: Timestamp? = nil, refreshFamily: UUID? = nil
    ) -> Principal {
        Principal(
            kind: .agent, id: agent.id, orgID: agent.orgID, role: nil, scopes: agent.scopes, vaultIDs: agent.vaultIDs,
            tokenID: tokenID, tokenExpiresAt: tokenExpiresAt, refreshFamily: refreshFamily,
            intentsAPIEnabled: agent.intentsAPIEnabled)
    }

    /// Someone who lent their access (a share's or a capability lease's creator) as they stand now: a member of
    /// `orgID` with their current role, or an agent of it that is active and unexpired; nil otherwise.
    static func current(
        _ kind: PrincipalKind, _ id: UUID, orgID: UUID, identities: any IdentityStore, agents: any AgentStore
    ) async throws -> Principal? {
        switch kind {
        case .user:
            guard let user = try await identities.user(id: id), user.orgID == orgID else { return nil }
            return Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role)
        case .agent:
            guard let agent = try await agents.agent(id: id), agent.orgID == orgID, agent.isUsable(at: .now) else {
                return nil
            }
            return principal(for: agent)
        }
    }

    private func userKeyPrincipal(_ credential: String, now: Timestamp) async throws -> Principal {
        let key = try await activeUserKey(credential, now: now)
        guard let user = try await identities.user(id: key.userID), user.orgID == key.orgID else {
            throw KeyholdError.unauthenticated
        }
        return Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role, scopes: key.scopes, apiKeyID: key.id)
    }

    private func activeAPIKey(_ id: UUID, userID: UUID, now: Timestamp) async throws -> Bool {
        guard let key = try await credentials.apiKey(id: id) else { return false }
        return key.userID == userID && key.isUsable(at: now)
    }

    private func activeUserKey(_ credential: String, now: Timestamp) async throws -> UserAPIKey {
        let kind = CredentialKind.userKey
        guard kind.matchesShape(credential) else { throw KeyholdError.unauthenticated }
        let digest = hasher.digest(credential)
        let candidates = try await credentials.apiKeys(keyPrefix: kind.lookupPrefix(of: credential))
        guard let key = candidates.first(where: { CredentialHasher.constantTimeEqual($0.keyDigest, digest) }),
            key.isUsable(at: now)
        else { throw KeyholdError.unauthenticated }
        return key
    }

    // MARK: sessions

    /// After a password login, an MFA verification or an invited sign-up (`method` `invite`): the org's IP rules,
    /// then an access token and a refresh token starting a new family.
    public func session(for user: User, ip: IPAddress?, action: String = "auth.success", method: String = "password")
        async throws -> Session
    {
        let principal = Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role)
        try await ipRules.enforce(principal, ip: ip, method: method)
        return try await session(
            for: principal, family: UUID(), lifetime: nil, keyVersion: nil,
            audit: audit.record(org: user.orgID, actor: principal, ip: ip, action, "user", user.id.wire, ["method": .string(method)]))
    }

    private func session(
        for principal: Principal, family: UUID, lifetime: Int64?, keyVersion: Int?, now: Timestamp = .now,
        audit record: AuditRecord
    ) async throws -> Session {
        let access = try await tokens.issue(
            for: principal, lifetime: lifetime, keyVersion: keyVersion, refreshFamily: family, now: now.date)
        let refresh = CredentialKind.refreshToken.generate()
        try await credentials.createRefreshToken(
            RefreshTokenRecord(
                digest: hasher.digest(refresh), family: family, principalKind: principal.kind,
                principalID: principal.id, orgID: principal.orgID,
                expiresAt: Timestamp.now.adding(seconds: Self.refreshLifetime), scopes: principal.scopes,
                apiKeyID: principal.apiKeyID, keyVersion: keyVersion),
            audit: record)
        return Session(access: access, refreshToken: refresh, principal: principal)
    }

    /// `ocv_` key (and optionally the agent id) to an agent access token.
    public func exchangeAgentKey(_ apiKey: String, agentID: UUID?, ip: IPAddress?, now: Timestamp = .now) async throws
        -> (Session, Agent)
    {
        let kind = CredentialKind.agentKey
        let candidates =
            kind.matchesShape(apiKey) ? try await agents.agents(keyPrefix: kind.lookupPrefix(of: apiKey)) : []
        let digest = hasher.digest(apiKey)
        let match = candidates.first { CredentialHasher.constantTimeEqual($0.keyDigest, digest) }
        let lifetime = match.map { $0.tokenLifetime(at: now, default: Self.defaultAgentTokenLifetime) } ?? 0
        guard let agent = match, agentID == nil || agentID == agent.id, agent.isUsable(at: now), lifetime > 0 else {
            let reason =
                if let match, agentID == nil || agentID == match.id {
                    match.isActive && match.expiresAt.map({ now < $0 }) ?? true ? "key_expired" : "agent_inactive"
                } else { "invalid_key" }
            // Counted, not written one by one: whoever holds a deactivated agent's key could flood with it.
            failures.record(
                org: match?.orgID ?? AuditEntry.systemOrg, method: "agent_key", resourceType: "agent",
                resourceID: match?.id.wire, reason: match == nil ? nil : reason, ip: ip)
            // An expired key answers as a wrong one: the answer does not tell that the key was ever good.
            throw reason == "agent_inactive"
                ? KeyholdError(.unauthorized, "Agent is deactivated or expired")
                : KeyholdError(.unauthorized, "Invalid agent_id or api_key")
        }
        let principal = Self.principal(for: agent)
        try await ipRules.enforce(principal, ip: ip, method: "agent_key")
        try await audit.append(
            audit.record(org: agent.orgID, actor: principal, ip: ip, "auth.success", "agent", agent.id.wire, ["method": "agent_key"]))
        let access = try await tokens.issue(for: principal, lifetime: lifetime, keyVersion: agent.keyVersion, now: now.date)
        return (Session(access: access, refreshToken: nil, principal: principal), agent)
    }

    /// `1ck_` key to a user access token carrying the key's scopes.
    public func exchangeUserKey(_ apiKey: String, ip: IPAddress?, now: Timestamp = .now) async throws -> Session {
        let principal: Principal
        do {
            principal = try await userKeyPrincipal(apiKey, now: now)
        } catch let error as KeyholdError where error.code == .unauthorized {
            failures.record(method: "api_key", resourceType: "api_key", ip: ip)
            throw error
        }
        try await ipRules.enforce(principal, ip: ip, method: "api_key")
        try await audit.append(
            audit.record(org: principal.orgID, actor: principal, ip: ip, "auth.success", "user", principal.id.wire, ["method": "api_key"]))
        return Session(access: try await tokens.issue(for: principal), refreshToken: nil, principal: principal)
    }

    /// Spends a refresh token for a new access token and a new refresh token of the same family. `consoleOnly`
    /// (the web console's refresh): only a person's own, unscoped token is renewed; any other is spent and refused,
    /// with nothing minted.
    public func refresh(token: String, ip: IPAddress?, now: Timestamp = .now, consoleOnly: Bool = false) async throws
        -> Session
    {
        let invalid = KeyholdError(.unauthorized, "Invalid or expired refresh token")
        var principal: Principal?
        var family = UUID()
        var lifetime: Int64?
        var keyVersion: Int?
        if CredentialKind.refreshToken.matchesShape(token),
            let record = try await credentials.spendRefreshToken(digest: hasher.digest(token), now: now)
        {
            family = record.family
            switch record.principalKind {
            case .user:
                if let user = try await identities.user(id: record.principalID), user.orgID == record.orgID {
                    if let keyID = record.apiKeyID {
                        guard try await activeAPIKey(keyID, userID: user.id, now: now) else { break }
                    }
                    principal = Principal(
                        kind: .user, id: user.id, orgID: user.orgID, role: user.role, scopes: record.scopes,
                        apiKeyID: record.apiKeyID)
                }
            case .agent:
                if let agent = try await agents.agent(id: record.principalID), agent.isUsable(at: now),
                    record.keyVersion == agent.keyVersion,
                    case let left = agent.tokenLifetime(at: now, default: Self.defaultAgentTokenLifetime), left > 0
                {
                    principal = Self.principal(for: agent)
                    lifetime = left
                    keyVersion = agent.keyVersion
                }
            }
        }
        guard let principal, !consoleOnly || (principal.kind == .user && !principal.isScoped && principal.apiKeyID == nil)
        else {
            failures.record(method: "refresh_token", resourceType: "token", ip: ip)
            throw invalid
        }
        // After the spend: a refresh refused here has used up its token (the holder signs in again from an allowed
        // address; presenting the spent token again ends its family).
        try await ipRules.enforce(principal, ip: ip, method: "refresh_token")
        return try await session(
            for: principal, family: family, lifetime: lifetime, keyVersion: keyVersion, now: now,
            audit: audit.record(org: principal.orgID, actor: principal, ip: ip, "auth.refresh", principal.kind.rawValue, principal.id.wire))
    }

    /// Refresh with the current access token (the SDK posts no body): revokes it and issues a new one, with a
    /// refresh token of the same family.
    public func refresh(current caller: Caller) async throws -> Session {
        let principal = caller.principal
        guard principal.tokenID != nil else {
            throw KeyholdError(.badRequest, "An API key cannot be refreshed; exchange it at /v1/auth/api-key-token")
        }
        let now = Timestamp.now
        var lifetime: Int64?
        var keyVersion: Int?
        if principal.kind == .agent, let agent = try await agents.agent(id: principal.id) {
            // Never past the key's expiry; under a second before it, there is nothing left to hand out.
            lifetime = agent.tokenLifetime(at: now, default: Self.defaultAgentTokenLifetime)
            guard lifetime ?? 0 > 0 else { throw KeyholdError.unauthenticated }
            keyVersion = agent.keyVersion
        }
        try await revoke(caller, endingRefreshFamily: false)
        return try await session(
            for: principal, family: principal.refreshFamily ?? UUID(), lifetime: lifetime, keyVersion: keyVersion, now: now,
            audit: audit.record(caller, "auth.refresh", principal.kind.rawValue, principal.id.wire))
    }

    /// Logout: revokes the access token the caller presented and, unless it is being refreshed, every refresh
    /// token of the family it was issued with.
    public func revoke(_ caller: Caller, endingRefreshFamily: Bool = true) async throws {
        let principal = caller.principal
        guard let tokenID = principal.tokenID, let expiresAt = principal.tokenExpiresAt else {
            throw KeyholdError(.badRequest, "Only access tokens can be revoked here; delete an API key at /v1/auth/api-keys/{id}")
        }
        let family = endingRefreshFamily ? principal.refreshFamily : nil
        var details: [String: JSONValue] = [:]
        if family != nil { details["refresh_family_ended"] = true }
        try await credentials.revokeToken(
            id: tokenID, expiresAt: expiresAt, refreshFamily: family,
            audit: audit.record(caller, "auth.token_revoke", principal.kind.rawValue, principal.id.wire, details))
    }

    // MARK: personal API keys

    public func createAPIKey(for request: Caller, name: String, scopes: [String]?, expiresAt: Timestamp?) async throws
        -> (UserAPIKey, String)
    {
        let caller = request.principal
        try await audit.recordingDenial(request, "api_key.create", "api_key", nil) { try caller.requireManager() }
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...255).contains(name.count) else { throw KeyholdError.badRequest("name must be 1 to 255 characters") }
        try Self.validateScopes(scopes)
        if let expiresAt, expiresAt <= .now { throw KeyholdError.badRequest("expires_at must be in the future") }
        let secret = CredentialKind.userKey.generate()
        let key = UserAPIKey(
            id: UUID(), userID: caller.id, orgID: caller.orgID, name: name,
            keyPrefix: CredentialKind.userKey.lookupPrefix(of: secret), keyDigest: hasher.digest(secret),
            scopes: scopes, isActive: true, createdAt: .now, expiresAt: expiresAt)
        try await credentials.createAPIKey(
            key, audit: audit.record(request, "api_key.create", "api_key", key.id.wire, ["name": .string(name)]))
        return (key, secret)
    }

    public func apiKeys(for caller: Principal) async throws -> [UserAPIKey] {
        try caller.requireHuman()
        return try await credentials.apiKeys(userID: caller.id)
    }

    public func deleteAPIKey(_ id: UUID, for request: Caller) async throws {
        try await audit.recordingDenial(request, "api_key.revoke", "api_key", id.wire) {
            try request.principal.requireManager()
        }
        guard try await credentials.deactivateAPIKey(
            id: id, userID: request.principal.id, audit: audit.record(request, "api_key.revoke", "api_key", id.wire))
        else {
            throw KeyholdError.notFound("API key not found")
        }
    }

    /// Scopes are path globs (`api-keys/**`) or `*`; anything else (1Claw's examples use `vaults:read`) is kept
    /// but matches no path, so it never widens access. At most 64, each at most 512 bytes.
    public static func validateScopes(_ scopes: [String]?) throws {
        guard let scopes else { return }
        guard scopes.count <= 64, scopes.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 512 }) else {
            throw KeyholdError.badRequest("scopes: at most 64 non-empty strings of at most 512 bytes")
        }
    }
}

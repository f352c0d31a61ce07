import Foundation

/// Agents: registered by people, authenticated by an `ocv_` key shown once, bound to vaults and capped by scopes.
public struct AgentService: Sendable {
    let agents: any AgentStore
    let vaults: VaultService
    let secrets: SecretService
    let hasher: CredentialHasher
    let audit: AuditLog

    public init(
        agents: any AgentStore, vaults: VaultService, secrets: SecretService, hasher: CredentialHasher, audit: AuditLog
    ) {
        self.agents = agents
        self.vaults = vaults
        self.secrets = secrets
        self.hasher = hasher
        self.audit = audit
    }

    public static let notFound = KeyholdError.notFound("Agent not found")

    /// Fields a request may set; `nil` leaves a field as it is, `.some(nil)` clears it.
    public struct Changes: Sendable {
        public var name: String?
        public var description: String??
        public var isActive: Bool?
        public var scopes: [String]??
        public var vaultIDs: [UUID]?
        public var tokenTTLSeconds: Int??
        public var expiresAt: Timestamp??
        public var environment: String??
        public var environmentLocked: Bool?
        public var envAutoResolve: Bool?
        public var apiKeyExpiresAt: Timestamp??
        public var intentsAPIEnabled: Bool?

        public init(
            name: String? = nil, description: String?? = nil, isActive: Bool? = nil, scopes: [String]?? = nil,
            vaultIDs: [UUID]? = nil, tokenTTLSeconds: Int?? = nil, expiresAt: Timestamp?? = nil,
            environment: String?? = nil, environmentLocked: Bool? = nil, envAutoResolve: Bool? = nil,
            apiKeyExpiresAt: Timestamp?? = nil, intentsAPIEnabled: Bool? = nil
        ) {
            self.intentsAPIEnabled = intentsAPIEnabled
            self.name = name
            self.description = description
            self.isActive = isActive
            self.scopes = scopes
            self.vaultIDs = vaultIDs
            self.tokenTTLSeconds = tokenTTLSeconds
            self.expiresAt = expiresAt
            self.environment = environment
            self.environmentLocked = environmentLocked
            self.envAutoResolve = envAutoResolve
            self.apiKeyExpiresAt = apiKeyExpiresAt
        }
    }

    public func create(
        by caller: Caller, name: String, changes: Changes, id: UUID = UUID(), details: [String: JSONValue] = [:]
    ) async throws -> (Agent, String) {
        try await audit.recordingDenial(caller, "agent.register", "agent", nil) { try caller.principal.requireManager() }
        let key = CredentialKind.agentKey.generate()
        var agent = Agent(
            id: id, orgID: caller.principal.orgID, name: "", description: nil, isActive: true, scopes: nil,
            vaultIDs: [], tokenTTLSeconds: nil, expiresAt: nil, createdBy: caller.principal.id, createdAt: .now,
            keyPrefix: CredentialKind.agentKey.lookupPrefix(of: key), keyDigest: hasher.digest(key), keyVersion: 1)
        var changes = changes
        changes.name = name
        try await apply(changes, to: &agent, by: caller)
        // Identity keys: the private halves are stored first, so that a registered agent never lacks them (a failure
        // after this leaves only secrets of an agent that does not exist, which only owners and admins can read).
        let vault = try await vaults.agentKeysVault(orgID: agent.orgID, by: caller)
        let keys = AgentIdentityKeys.generate(comment: "keyhold-agent-\(agent.id.wire)")
        try await secrets.storeAgentKeys(keys, agentID: agent.id, in: vault, by: caller)
        (agent.sshPublicKey, agent.ecdhPublicKey) = (keys.sshPublicKey, keys.ecdhPublicKey)
        agent.identityKeysCreatedAt = .now
        try await agents.createAgent(
            agent,
            audit: audit.record(
                caller, "agent.register", "agent", agent.id.wire, details.merging(["name": .string(agent.name)]) { $1 }))
        try await vaults.grantAgentKeys(agent.id, vault: vault, by: caller)
        return (agent, key)
    }

    /// Registers the agent an approved self-enrolment asks for, with the id it was promised and the name and
    /// description it gave and nothing more: like any agent just registered, it reads only its own identity keys
    /// until a policy grants it more. Its key is shown once, to the approver.
    public func enrol(_ approval: Approval, by caller: Caller) async throws -> (Agent, String) {
        guard approval.action == Approval.agentEnrollment, case .object(let fields)? = approval.payload,
            case .string(let name)? = fields["name"]
        else { throw KeyholdError.internalError("An enrolment request without a name") }
        var description: String?
        if case .string(let text)? = fields["description"], !text.isEmpty { description = text }
        guard try await agents.agent(id: approval.requesterID) == nil else {
            throw KeyholdError(.conflict, "This enrolment's agent is already registered")
        }
        return try await create(
            by: caller, name: name, changes: Changes(description: .some(description)),
            id: approval.requesterID, details: ["approval_id": .string(approval.id.wire), "via": "enrolment"])
    }

    /// Checks an enrolment's name and description as registration would, before anything is stored.
    static func validateEnrolment(name: String, description: String?) throws {
        _ = try validName(name)
        try validateDescription(description)
    }

    /// The name trimmed: 1 to 255 characters and at most 255 bytes of UTF-8.
    static func validName(_ name: String) throws -> String {
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...255).contains(name.count), name.utf8.count <= 255 else {
            throw KeyholdError.badRequest("name must be 1 to 255 characters (at most 255 bytes of UTF-8)")
        }
        return name
    }

    static func validateDescription(_ description: String?) throws {
        guard (description?.count ?? 0) <= 4096, (description?.utf8.count ?? 0) <= 16_384 else {
            throw KeyholdError.badRequest("description must be at most 4096 characters (16 KiB of UTF-8)")
        }
    }

    /// New identity keypairs: the private halves become the next versions of the agent's two secrets in
    /// `__agent-keys` (earlier versions stay, readable as versions), the public halves replace the agent's and the
    /// ones they replace join its history. Also gives an agent made before identity keys existed its first ones,
    /// and the policy on its own keys if it lacks it.
    public func rotateIdentityKeys(_ id: UUID, by caller: Caller) async throws -> Agent {
        var agent = try await audit.recordingDenial(caller, "agent.rotate_identity_keys", "agent", id.wire) {
            try await self.agent(id, by: caller.principal)
        }
        let vault = try await vaults.agentKeysVault(orgID: agent.orgID, by: caller)
        let keys = AgentIdentityKeys.generate(comment: "keyhold-agent-\(agent.id.wire)")
        try await secrets.storeAgentKeys(keys, agentID: agent.id, in: vault, by: caller)
        let now = Timestamp.now
        if let ssh = agent.sshPublicKey, let ecdh = agent.ecdhPublicKey {
            agent.identityKeyHistory.append(
                AgentIdentityKey(
                    sshPublicKey: ssh, ecdhPublicKey: ecdh, createdAt: agent.identityKeysCreatedAt ?? agent.createdAt,
                    retiredAt: now))
        }
        (agent.sshPublicKey, agent.ecdhPublicKey) = (keys.sshPublicKey, keys.ecdhPublicKey)
        agent.identityKeysCreatedAt = now
        guard try await agents.updateAgent(
            agent, audit: audit.record(caller, "agent.rotate_identity_keys", "agent", agent.id.wire))
        else { throw Self.notFound }
        try await vaults.grantAgentKeys(agent.id, vault: vault, by: caller)
        return agent
    }

    public func list(by caller: Principal) async throws -> [Agent] {
        try caller.requireManager()
        return try await agents.agents(orgID: caller.orgID).filter { mayManage($0, caller) }
    }

    public func agent(_ id: UUID, by caller: Principal) async throws -> Agent {
        try caller.requireManager()
        guard let agent = try await agents.agent(id: id), agent.orgID == caller.orgID, mayManage(agent, caller) else {
            throw Self.notFound
        }
        return agent
    }

    /// The calling agent's own record.
    public func me(_ caller: Principal) async throws -> Agent {
        guard caller.kind == .agent else { throw KeyholdError.forbidden("Only agents have an agent profile") }
        guard let agent = try await agents.agent(id: caller.id) else { throw KeyholdError.unauthenticated }
        return agent
    }

    public func update(_ id: UUID, by caller: Caller, changes: Changes) async throws -> Agent {
        var agent = try await audit.recordingDenial(caller, "agent.update", "agent", id.wire) {
            try await self.agent(id, by: caller.principal)
        }
        let wasActive = agent.isActive
        try await apply(changes, to: &agent, by: caller)
        let deactivated = wasActive && !agent.isActive
        // Deactivation ends every session for good: a later reactivation does not revive old tokens.
        if deactivated { agent.keyVersion += 1 }
        let action = deactivated ? "agent.deactivate" : "agent.update"
        guard try await agents.updateAgent(agent, audit: audit.record(caller, action, "agent", agent.id.wire)) else {
            throw Self.notFound
        }
        return agent
    }

    /// `DELETE /v1/agents/{id}`, as 1Claw's docs describe it: deactivates the agent. It stays listed (inactive),
    /// so its history stays attributable; its key, tokens and refresh tokens stop working at once (the key version
    /// moves on, so a later reactivation revives none of them), and its shares no longer open. Deactivating an
    /// inactive agent changes nothing. With `purge` the agent is removed, with its policies and refresh tokens, its
    /// shares are revoked and its identity private keys deleted.
    public func delete(_ id: UUID, purge: Bool = false, by caller: Caller) async throws {
        let action = purge ? "agent.delete" : "agent.deactivate"
        var agent = try await audit.recordingDenial(caller, action, "agent", id.wire) {
            try await self.agent(id, by: caller.principal)
        }
        if purge {
            guard try await agents.deleteAgent(
                id: agent.id, orgID: agent.orgID, audit: audit.record(caller, action, "agent", agent.id.wire))
            else { throw Self.notFound }
            // Its identity private keys go too (its policy on them went with it).
            if let vault = try await vaults.store.vault(
                id: VaultService.agentKeysVaultID(orgID: agent.orgID), orgID: agent.orgID)
            {
                try await secrets.deleteAgentKeys(agentID: agent.id, in: vault, by: caller)
            }
            return
        }
        guard agent.isActive else { return }
        agent.isActive = false
        agent.keyVersion += 1
        guard try await agents.updateAgent(agent, audit: audit.record(caller, action, "agent", agent.id.wire)) else {
            throw Self.notFound
        }
    }

    /// A new key; the old one, and every token minted under it, stop working at once. The key's expiry is the
    /// agent's, and rotating does not move it (a rotation after a leak must not lengthen access): the new key
    /// expires when the old one would have, unless `apiKeyExpiresAt` sets a new expiry (`.some(nil)`: none). A
    /// rotation that would hand out a key already expired is refused.
    public func rotateKey(_ id: UUID, by caller: Caller, apiKeyExpiresAt: Timestamp?? = nil) async throws -> (Agent, String) {
        var agent = try await audit.recordingDenial(caller, "agent.rotate_key", "agent", id.wire) {
            try await self.agent(id, by: caller.principal)
        }
        if let apiKeyExpiresAt { agent.apiKeyExpiresAt = try Self.futureKeyExpiry(apiKeyExpiresAt) }
        if let expiry = agent.apiKeyExpiresAt, expiry <= .now {
            throw KeyholdError.badRequest("api_key_expires_at has passed: send a new one (or null) with the rotation")
        }
        let key = CredentialKind.agentKey.generate()
        agent.keyPrefix = CredentialKind.agentKey.lookupPrefix(of: key)
        agent.keyDigest = hasher.digest(key)
        agent.keyVersion += 1
        let record = audit.record(caller, "agent.rotate_key", "agent", agent.id.wire, ["key_version": .number(Double(agent.keyVersion))])
        guard try await agents.updateAgent(agent, audit: record) else { throw Self.notFound }
        return (agent, key)
    }

    /// Owners and admins manage every agent of the org; members the agents they registered.
    func mayManage(_ agent: Agent, _ caller: Principal) -> Bool {
        agent.orgID == caller.orgID && (caller.isOrgAdmin || agent.createdBy == caller.id)
    }

    private func apply(_ changes: Changes, to agent: inout Agent, by caller: Caller) async throws {
        if let name = changes.name { agent.name = try Self.validName(name) }
        if let description = changes.description {
            try Self.validateDescription(description)
            agent.description = description
        }
        if let isActive = changes.isActive { agent.isActive = isActive }
        if let scopes = changes.scopes {
            try AuthService.validateScopes(scopes)
            agent.scopes = scopes
        }
        if let vaultIDs = changes.vaultIDs {
            guard vaultIDs.count <= 256 else { throw KeyholdError.badRequest("at most 256 vault_ids") }
            for vaultID in vaultIDs {
                // Only vaults the caller may see, so the answer tells nothing about the others.
                do {
                    _ = try await vaults.access(vaultID, for: caller)
                } catch let error as KeyholdError where error.code == .notFound {
                    throw KeyholdError.badRequest("vault_ids names a vault that does not exist or that you cannot see")
                }
            }
            agent.vaultIDs = Array(Set(vaultIDs)).sorted { $0.uuidString < $1.uuidString }
        }
        if let ttl = changes.tokenTTLSeconds {
            if let ttl, !(60...86_400).contains(ttl) {
                throw KeyholdError.badRequest("token_ttl_seconds must be between 60 and 86400")
            }
            agent.tokenTTLSeconds = ttl
        }
        if let expiresAt = changes.expiresAt { agent.expiresAt = expiresAt }
        if let environment = changes.environment {
            if let environment, !Agent.isEnvironmentSlug(environment) {
                throw KeyholdError.badRequest("environment must be 2 to 30 lower-case letters, digits or '-'")
            }
            agent.environment = environment
        }
        if let locked = changes.environmentLocked { agent.environmentLocked = locked }
        if let autoResolve = changes.envAutoResolve { agent.envAutoResolve = autoResolve }
        if let apiKeyExpiresAt = changes.apiKeyExpiresAt { agent.apiKeyExpiresAt = try Self.futureKeyExpiry(apiKeyExpiresAt) }
        if let intents = changes.intentsAPIEnabled { agent.intentsAPIEnabled = intents }
    }

    /// A key expiry a request sets: none, or an instant still to come.
    static func futureKeyExpiry(_ expiry: Timestamp?) throws -> Timestamp? {
        if let expiry, expiry <= .now { throw KeyholdError.badRequest("api_key_expires_at must be in the future") }
        return expiry
    }
}

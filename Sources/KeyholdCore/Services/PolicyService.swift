import Foundation

/// Policies on a vault. Only the vault's owners (its creator, the org's owners and admins) manage them; an agent
/// only on vaults it created.
public struct PolicyService: Sendable {
    let policies: any PolicyStore
    let identities: any IdentityStore
    let agents: any AgentStore
    let vaults: VaultService
    let authorizer: Authorizer
    let audit: AuditLog

    public init(
        policies: any PolicyStore, identities: any IdentityStore, agents: any AgentStore, vaults: VaultService,
        authorizer: Authorizer, audit: AuditLog
    ) {
        self.audit = audit
        self.policies = policies
        self.identities = identities
        self.agents = agents
        self.vaults = vaults
        self.authorizer = authorizer
    }

    public static let notFound = KeyholdError.notFound("Policy not found")

    public struct Draft: Sendable {
        public var pattern: String
        public var principalKind: String
        public var principalID: String
        public var permissions: [String]
        public var conditions: JSONValue?
        public var expiresAt: Timestamp?
        public var effect: String?
        public var priority: Int?

        public init(
            pattern: String, principalKind: String, principalID: String, permissions: [String], conditions: JSONValue?,
            expiresAt: Timestamp?, effect: String?, priority: Int?
        ) {
            self.pattern = pattern
            self.principalKind = principalKind
            self.principalID = principalID
            self.permissions = permissions
            self.conditions = conditions
            self.expiresAt = expiresAt
            self.effect = effect
            self.priority = priority
        }
    }

    /// Fields of an update; `nil` keeps a field, `.some(nil)` clears an optional one.
    public struct Changes: Sendable {
        public var permissions: [String]?
        public var conditions: JSONValue??
        public var expiresAt: Timestamp??
        public var effect: String?
        public var priority: Int?

        public init(
            permissions: [String]? = nil, conditions: JSONValue?? = nil, expiresAt: Timestamp?? = nil,
            effect: String? = nil, priority: Int? = nil
        ) {
            self.permissions = permissions
            self.conditions = conditions
            self.expiresAt = expiresAt
            self.effect = effect
            self.priority = priority
        }
    }

    public func create(vaultID: UUID, draft: Draft, by caller: Caller) async throws -> Policy {
        let policy = try await prepare(vaultID: vaultID, draft: draft, by: caller)
        try await policies.createPolicy(policy, audit: record(caller, "policy.create", policy))
        return policy
    }

    /// The policy `draft` describes, checked (the caller manages the vault, the principal is of its org, every
    /// field parses), not yet stored.
    func prepare(vaultID: UUID, draft: Draft, by caller: Caller) async throws -> Policy {
        let vault = try await managedVault(vaultID, caller)
        guard let kind = PrincipalKind(rawValue: draft.principalKind) else {
            throw KeyholdError.badRequest("principal_type must be user or agent")
        }
        guard let principalID = UUID(uuidString: draft.principalID) else {
            throw KeyholdError.badRequest("principal_id must be a UUID")
        }
        switch kind {
        case .user:
            guard let user = try await identities.user(id: principalID), user.orgID == vault.orgID else {
                throw KeyholdError.badRequest("principal_id names no user of this org")
            }
        case .agent:
            guard let agent = try await agents.agent(id: principalID), agent.orgID == vault.orgID else {
                throw KeyholdError.badRequest("principal_id names no agent of this org")
            }
        }
        let policy = Policy(
            id: UUID(), vaultID: vault.id, pattern: try PathPattern(validating: draft.pattern), principalKind: kind,
            principalID: principalID, permissions: try Policy.permissions(draft.permissions),
            conditions: try PolicyConditions(json: draft.conditions), expiresAt: draft.expiresAt,
            effect: try Self.effect(draft.effect ?? "allow"), priority: try Self.priority(draft.priority ?? 0),
            createdBy: caller.principal.id, createdByType: caller.principal.kind, createdAt: .now)
        try Self.checkApproval(policy)
        return policy
    }

    /// The fields of `draft` that parse without the store (a policy change's payload, checked when it is asked for).
    static func validate(_ draft: Draft) throws {
        guard PrincipalKind(rawValue: draft.principalKind) != nil else {
            throw KeyholdError.badRequest("principal_type must be user or agent")
        }
        guard let principalID = UUID(uuidString: draft.principalID) else {
            throw KeyholdError.badRequest("principal_id must be a UUID")
        }
        try checkApproval(
            Policy(
                id: UUID(), vaultID: UUID(), pattern: try PathPattern(validating: draft.pattern), principalKind: .agent,
                principalID: principalID, permissions: try Policy.permissions(draft.permissions),
                conditions: try PolicyConditions(json: draft.conditions), expiresAt: draft.expiresAt,
                effect: try effect(draft.effect ?? "allow"), priority: try priority(draft.priority ?? 0), createdBy: UUID(),
                createdByType: .user, createdAt: .now))
    }

    /// `require_approval` gates reads: it belongs on an allow that grants `read` and nothing else, and stands alone
    /// (a gate that an IP list or a time window switched off would let another grant serve the read ungated).
    static func checkApproval(_ policy: Policy) throws {
        guard policy.conditions.approval != nil else { return }
        guard policy.effect == .allow, policy.permissions == [.read] else {
            throw KeyholdError.badRequest("conditions.require_approval applies to an allow policy whose permissions are [\"read\"]")
        }
        guard policy.conditions.ipAllowlist == nil, policy.conditions.timeWindow == nil else {
            throw KeyholdError.badRequest("conditions.require_approval cannot be combined with ip_allowlist or time_window")
        }
    }

    /// A policy that requires approval gates its principal: only a person without a scope cap who manages the vault
    /// changes or removes it (or turns a policy into one), never an agent and never the principal it names, who could
    /// otherwise lift its own gate.
    private func checkGateChange(_ old: Policy, gated: Bool, by caller: Caller) async throws {
        guard old.conditions.approval != nil || gated else { return }
        let principal = caller.principal
        guard principal.kind == .user, !principal.isScoped,
            !(old.principalKind == principal.kind && old.principalID == principal.id)
        else {
            try await audit.append(
                audit.record(
                    caller, "policy.manage", "policy", old.id.wire,
                    ["outcome": "denied", "reason": "a policy requiring approval is changed only by a person other than its principal"]))
            throw KeyholdError.forbidden("A policy that requires approval is changed only by a person who manages the vault and is not its principal")
        }
    }

    public func list(vaultID: UUID, by caller: Caller) async throws -> [Policy] {
        let vault = try await managedVault(vaultID, caller)
        return try await policies.policies(vaultID: vault.id)
    }

    public func update(vaultID: UUID, policyID: UUID, changes: Changes, by caller: Caller) async throws -> Policy {
        let vault = try await managedVault(vaultID, caller)
        guard let old = try await policies.policy(id: policyID, vaultID: vault.id) else { throw Self.notFound }
        let conditions = try changes.conditions.map { try PolicyConditions(json: $0) } ?? old.conditions
        try await checkGateChange(old, gated: conditions.approval != nil, by: caller)
        let policy = Policy(
            id: old.id, vaultID: old.vaultID, pattern: old.pattern, principalKind: old.principalKind,
            principalID: old.principalID,
            permissions: try changes.permissions.map(Policy.permissions) ?? old.permissions,
            conditions: conditions,
            expiresAt: changes.expiresAt ?? old.expiresAt,
            effect: try changes.effect.map(Self.effect) ?? old.effect,
            priority: try changes.priority.map(Self.priority) ?? old.priority,
            createdBy: old.createdBy, createdByType: old.createdByType, createdAt: old.createdAt)
        try Self.checkApproval(policy)
        guard try await policies.updatePolicy(policy, audit: record(caller, "policy.update", policy)) else {
            throw Self.notFound
        }
        return policy
    }

    public func delete(vaultID: UUID, policyID: UUID, by caller: Caller) async throws {
        let vault = try await managedVault(vaultID, caller)
        guard let old = try await policies.policy(id: policyID, vaultID: vault.id) else { throw Self.notFound }
        try await checkGateChange(old, gated: false, by: caller)
        let record = audit.record(caller, "policy.delete", "policy", policyID.wire, ["vault_id": .string(vault.id.wire)])
        guard try await policies.deletePolicy(id: policyID, vaultID: vault.id, audit: record) else {
            throw Self.notFound
        }
    }

    func record(_ caller: Caller, _ action: String, _ policy: Policy, _ extra: [String: JSONValue] = [:]) -> AuditRecord {
        audit.record(
            caller, action, "policy", policy.id.wire,
            [
                "vault_id": .string(policy.vaultID.wire), "secret_path_pattern": .string(policy.pattern.rawValue),
                "principal_type": .string(policy.principalKind.rawValue), "principal_id": .string(policy.principalID.wire),
                "permissions": .array(policy.permissions.map { .string($0.rawValue) }),
                "effect": .string(policy.effect.rawValue),
            ].merging(extra) { first, _ in first })
    }

    private func managedVault(_ vaultID: UUID, _ caller: Caller) async throws -> Vault {
        if caller.principal.kind == .user {
            try await audit.recordingDenial(caller, "policy.manage", "vault", vaultID.wire) {
                try caller.principal.requireManager()
            }
        }
        let access = try await vaults.access(vaultID, for: caller)
        guard authorizer.isOwner(caller.principal, of: access.vault) else {
            try await audit.append(
                audit.record(
                    caller, "policy.manage", "vault", access.vault.id.wire,
                    ["outcome": "denied", "reason": "only the vault's owners may manage its policies"]))
            throw KeyholdError.forbidden("Not allowed to manage policies on this vault")
        }
        return access.vault
    }

    static func effect(_ name: String) throws -> PolicyEffect {
        guard let effect = PolicyEffect(rawValue: name) else { throw KeyholdError.badRequest("effect must be allow or deny") }
        return effect
    }

    static func priority(_ value: Int) throws -> Int {
        guard (0...1_000_000).contains(value) else { throw KeyholdError.badRequest("priority must be between 0 and 1000000") }
        return value
    }
}

import Crypto
import Foundation

/// Environment variables (contract §1.5): a vault's variables per environment, its custom environments, the org's
/// shared variables and `resolve`, which merges them for one environment.
///
/// Access: a variable `KEY` is decided by the `Authorizer` as the path `env-vars/KEY` of its vault (policies,
/// scopes, the owner bypass), so `**` or `env-vars/*` covers a whole vault. Agents may read (list, get, resolve)
/// where a policy lets them; changes are for people. A vault's environments are managed by its owners; the org's
/// shared variables by the org's owners and admins. Every read that returns values is one audit event naming the
/// keys, never the values.
///
/// Values are sealed like secret values: a fresh data key per version (AES-256-GCM, bound to the org, the vault or
/// org, the row's id and its version), wrapped by the vault's KEK, or for a shared variable by the server's
/// shared-variable key, which the keystore seals.
public struct EnvVarService: Sendable {
    let store: any EnvVarStore
    let agents: any AgentStore
    let vaults: VaultService
    let keystore: any Keystore
    let authorizer: Authorizer
    let audit: AuditLog
    let sharedKey: SymmetricKey

    public static let notFound = KeyholdError.notFound("Environment variable not found")
    public static let environmentNotFound = KeyholdError.notFound("Environment not found")
    static let vaultDomain = "keyhold.env-var.v1"
    static let sharedDomain = "keyhold.org-env-var.v1"

    public init(
        store: any EnvVarStore, agents: any AgentStore, vaults: VaultService, keystore: any Keystore,
        authorizer: Authorizer, audit: AuditLog, sharedKey: SymmetricKey
    ) {
        self.store = store
        self.agents = agents
        self.vaults = vaults
        self.keystore = keystore
        self.authorizer = authorizer
        self.audit = audit
        self.sharedKey = sharedKey
    }

    /// The server's key for shared variables' data keys, sealed by the keystore, made on first start.
    public static func loadSharedKey(system: any SystemStore, keystore: any Keystore) async throws -> SymmetricKey {
        try await keystore.serverKey("org-env-var-key", in: system)
    }

    /// A variable with its value; `value` is nil in lists for a sensitive one.
    public struct Revealed: Sendable {
        public let record: EnvVarRecord
        public let value: String?
    }

    public struct RevealedShared: Sendable {
        public let record: OrgEnvVarRecord
        public let value: String?
    }

    /// A new variable as the client sends it.
    public struct Draft: Sendable {
        public var key: String
        public var value: String
        public var environments: [String]?
        public var gitBranch: String?
        public var sensitive: Bool?
        public var comment: String?

        public init(key: String, value: String, environments: [String]?, gitBranch: String?, sensitive: Bool?, comment: String?) {
            self.key = key
            self.value = value
            self.environments = environments
            self.gitBranch = gitBranch
            self.sensitive = sensitive
            self.comment = comment
        }
    }

    /// A change: nil leaves a field as it is.
    public struct Changes: Sendable {
        public var value: String?
        public var environments: [String]?
        public var sensitive: Bool?
        public var comment: String?

        public init(value: String?, environments: [String]?, sensitive: Bool?, comment: String?) {
            self.value = value
            self.environments = environments
            self.sensitive = sensitive
            self.comment = comment
        }
    }

    /// Which variable of a key a request means: `environment` and `git_branch` from the query.
    public struct Selector: Sendable {
        public var key: String
        public var environment: String?
        public var gitBranch: String?

        public init(key: String, environment: String?, gitBranch: String?) {
            self.key = key
            self.environment = environment
            self.gitBranch = gitBranch
        }
    }

    public struct Resolution: Sendable {
        public let vars: [String: String]
        public let sources: [String: String]
        public let environment: String
        public let gitBranch: String?
        public let resolvedAt: Timestamp
    }

    // MARK: a vault's variables

    public func list(vaultID: UUID, environment: String?, by caller: Caller) async throws -> [Revealed] {
        let requested = try environment.map { try EnvVarRules.slug($0, field: "environment") }
        let access = try await vaults.access(vaultID, for: caller)
        let environment = try await confined(requested, vaultID: vaultID, "env_var.list", by: caller).environment
        let visible = try await store.envVars(vaultID: vaultID).filter {
            (environment.map($0.environments.contains) ?? true) && permits(caller, access, $0.key, .read)
        }
        var revealed: [Revealed] = []
        for record in visible {
            revealed.append(Revealed(record: record, value: record.sensitive ? nil : try await open(record, in: access.vault)))
        }
        let shown = revealed.filter { $0.value != nil }.map(\.record.key)
        if !shown.isEmpty {
            var details = Self.details(access.vault, keys: shown)
            if let environment { details["environment"] = .string(environment) }
            try await audit.append(audit.record(caller, "env_var.list", "env_var", nil, details))
        }
        return revealed
    }

    public func get(vaultID: UUID, _ selector: Selector, by caller: Caller) async throws -> Revealed {
        let (access, record) = try await select(vaultID, selector, .read, "env_var.read", by: caller)
        let value = try await open(record, in: access.vault)
        try await audit.append(audit.record(caller, "env_var.read", "env_var", record.key, Self.details(access.vault, record)))
        return Revealed(record: record, value: value)
    }

    public func create(vaultID: UUID, _ draft: Draft, by caller: Caller) async throws -> Revealed {
        let key = try EnvVarRules.key(draft.key)
        let value = try EnvVarRules.value(draft.value)
        let comment = try EnvVarRules.comment(draft.comment)
        let gitBranch = try draft.gitBranch.map(EnvVarRules.branch)
        let environments = try draft.environments.map(EnvVarRules.environments)
            ?? (gitBranch == nil ? EnvVarRules.builtins.sorted() : [EnvVarRules.branchEnvironment])
        try Self.checkBranch(gitBranch, environments)
        let access = try await authorizeChange(vaultID, key, .write, "env_var.create", by: caller)
        let now = Timestamp.now
        var record = EnvVarRecord(
            id: UUID(), vaultID: vaultID, key: key, environments: environments, gitBranch: gitBranch,
            sensitive: draft.sensitive ?? false, comment: comment, version: 1, kekID: "", wrappedDataKey: Data(),
            ciphertext: Data(), createdBy: caller.principal.id, createdAt: now, updatedAt: now)
        try await seal(value, into: &record, in: access.vault)
        try await store.saveEnvVar(
            record, replacing: nil,
            audit: audit.record(caller, "env_var.create", "env_var", key, Self.details(access.vault, record)))
        return Revealed(record: record, value: value)
    }

    public func update(vaultID: UUID, _ selector: Selector, _ changes: Changes, by caller: Caller) async throws -> Revealed {
        let value = try changes.value.map(EnvVarRules.value)
        let comment = try EnvVarRules.comment(changes.comment)
        let environments = try changes.environments.map(EnvVarRules.environments)
        try await refuseAgent(caller, "env_var.update", selector.key)
        let (access, current) = try await select(vaultID, selector, .write, "env_var.update", by: caller)
        var record = current
        if let environments {
            try Self.checkBranch(record.gitBranch, environments)
            record.environments = environments
        }
        if let sensitive = changes.sensitive { record.sensitive = sensitive }
        if let comment { record.comment = comment }
        let newValue: String
        if let value { newValue = value } else { newValue = try await open(current, in: access.vault) }
        record.version += 1
        record.updatedAt = .now
        try await seal(newValue, into: &record, in: access.vault)
        var details = Self.details(access.vault, record)
        let changed: [(String, Bool)] = [
            ("value", value != nil), ("environments", environments != nil), ("sensitive", changes.sensitive != nil),
            ("comment", comment != nil),
        ]
        details["changed"] = .array(changed.filter(\.1).map { .string($0.0) })
        try await store.saveEnvVar(
            record, replacing: current.version, audit: audit.record(caller, "env_var.update", "env_var", record.key, details))
        // The answer carries the value only when the caller sent it or may read it (write does not imply read).
        return Revealed(record: record, value: value ?? (permits(caller, access, record.key, .read) ? newValue : nil))
    }

    public func delete(vaultID: UUID, _ selector: Selector, by caller: Caller) async throws {
        try await refuseAgent(caller, "env_var.delete", selector.key)
        let (access, record) = try await select(vaultID, selector, .delete, "env_var.delete", by: caller)
        guard try await store.deleteEnvVar(
            id: record.id, vaultID: vaultID,
            audit: audit.record(caller, "env_var.delete", "env_var", record.key, Self.details(access.vault, record)))
        else { throw Self.notFound }
    }

    // MARK: a vault's environments

    /// The built-in environments (as old as the vault, with ids derived from the vault and slug), then the vault's own.
    public func environments(vaultID: UUID, by caller: Caller) async throws -> [VaultEnvironment] {
        let vault = try await vaults.access(vaultID, for: caller).vault
        let builtins = EnvVarRules.builtins.map { slug in
            var bytes = Array(SHA256.hash(data: Data("keyhold.environment:\(vault.id.wire):\(slug)".utf8)).prefix(16))
            bytes[6] = bytes[6] & 0x0F | 0x50
            bytes[8] = bytes[8] & 0x3F | 0x80
            let id = bytes.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
            return VaultEnvironment(
                id: id, vaultID: vault.id, slug: slug, description: nil, copiedFrom: nil, createdBy: vault.createdBy,
                createdAt: vault.createdAt)
        }
        return builtins + (try await store.vaultEnvironments(vaultID: vaultID))
    }

    public func createEnvironment(
        vaultID: UUID, slug: String, description: String?, copyFrom: String?, by caller: Caller
    ) async throws -> VaultEnvironment {
        let slug = try EnvVarRules.slug(slug)
        let copyFrom = try copyFrom.map { try EnvVarRules.slug($0, field: "copy_from") }
        let description = try EnvVarRules.comment(description, field: "description")
        let access = try await authorizeEnvironments(vaultID, "environment.create", slug, by: caller)
        let existing = try await store.vaultEnvironments(vaultID: vaultID).map(\.slug)
        guard !EnvVarRules.builtins.contains(slug), !existing.contains(slug) else {
            throw KeyholdError(.conflict, "The vault already has an environment '\(slug)'")
        }
        var copies: [EnvVarRecord] = []
        if let copyFrom {
            guard EnvVarRules.builtins.contains(copyFrom) || existing.contains(copyFrom) else {
                throw KeyholdError.badRequest("copy_from names no environment of this vault")
            }
            let now = Timestamp.now
            for source in try await store.envVars(vaultID: vaultID)
            where source.gitBranch == nil && source.environments.contains(copyFrom) {
                // Copying reads the source and writes the copy: both decided per key (a deny policy holds for owners).
                guard permits(caller, access, source.key, .read), permits(caller, access, source.key, .write) else {
                    try await audit.append(
                        audit.record(
                            caller, "environment.create", "environment", slug,
                            ["vault_id": .string(vaultID.wire), "outcome": "denied", "reason": .string("no read and write on \(source.key)")]))
                    throw KeyholdError.forbidden("Access denied to \(source.key)")
                }
                var copy = source
                (copy.id, copy.environments, copy.version, copy.createdBy, copy.createdAt, copy.updatedAt) =
                    (UUID(), [slug], 1, caller.principal.id, now, now)
                try await seal(try await open(source, in: access.vault), into: &copy, in: access.vault)
                copies.append(copy)
            }
        }
        let environment = VaultEnvironment(
            id: UUID(), vaultID: vaultID, slug: slug, description: description, copiedFrom: copyFrom,
            createdBy: caller.principal.id, createdAt: .now)
        var details: [String: JSONValue] = ["vault_id": .string(vaultID.wire), "slug": .string(slug)]
        if let copyFrom {
            details["copied_from"] = .string(copyFrom)
            details["keys"] = .array(copies.map { .string($0.key) })
        }
        try await store.createVaultEnvironment(
            environment, copies: copies, audit: audit.record(caller, "environment.create", "environment", slug, details))
        return environment
    }

    public func deleteEnvironment(vaultID: UUID, slug: String, by caller: Caller) async throws {
        guard (try? EnvVarRules.slug(slug)) != nil else { throw Self.environmentNotFound }
        let access = try await authorizeEnvironments(vaultID, "environment.delete", slug, by: caller)
        guard !EnvVarRules.builtins.contains(slug) else {
            throw KeyholdError(.conflict, "The built-in environments cannot be deleted")
        }
        // The slug leaves (or deletes) every variable naming it: each such key needs write (which covers delete).
        if let denied = try await store.envVars(vaultID: vaultID).first(where: {
            $0.environments.contains(slug) && !permits(caller, access, $0.key, .write)
        }) {
            try await audit.append(
                audit.record(
                    caller, "environment.delete", "environment", slug,
                    ["vault_id": .string(vaultID.wire), "outcome": "denied", "reason": .string("no write on \(denied.key)")]))
            throw KeyholdError.forbidden("Access denied to \(denied.key)")
        }
        guard try await store.deleteVaultEnvironment(
            vaultID: vaultID, slug: slug,
            audit: audit.record(caller, "environment.delete", "environment", slug, ["vault_id": .string(vaultID.wire)]))
        else { throw Self.environmentNotFound }
    }

    // MARK: resolve

    /// The variables of one environment: the org's shared variables linked to the vault, then the vault's own, then
    /// (in `preview`) the branch's overrides, each later one winning; only keys the caller may read. An agent may
    /// omit `environment` to get the one it is tagged with (unless its `env_auto_resolve` is off); an agent locked
    /// to its environment gets no other.
    public func resolve(vaultID: UUID, environment: String?, gitBranch: String?, by caller: Caller) async throws
        -> Resolution
    {
        let requested = try environment.map { try EnvVarRules.slug($0, field: "environment") }
        let gitBranch = try gitBranch.map(EnvVarRules.branch)
        let access = try await vaults.access(vaultID, for: caller)
        // Named, or an agent's own tag (unless its `env_auto_resolve` is off); the agent's row is read once.
        let (confinedTo, agent) = try await confined(requested, vaultID: vaultID, "env_var.resolve", by: caller)
        guard let environment = confinedTo ?? agent.flatMap({ $0.envAutoResolve ? $0.environment : nil }) else {
            throw KeyholdError.badRequest(
                agent == nil
                    ? "environment is required" : "environment is required: this agent has no environment to resolve by default")
        }
        let custom = try await store.vaultEnvironments(vaultID: vaultID).map(\.slug)
        guard EnvVarRules.builtins.contains(environment) || custom.contains(environment) else {
            throw KeyholdError.badRequest("The vault has no environment '\(environment)'")
        }
        var vars: [String: String] = [:]
        var sources: [String: String] = [:]
        for shared in try await store.linkedOrgEnvVars(vaultID: vaultID)
        where shared.environments.contains(environment) && permits(caller, access, shared.key, .read) {
            vars[shared.key] = try openShared(shared)
            sources[shared.key] = "shared"
        }
        let own = try await store.envVars(vaultID: vaultID).filter {
            $0.environments.contains(environment) && permits(caller, access, $0.key, .read)
        }
        for record in own where record.gitBranch == nil {
            vars[record.key] = try await open(record, in: access.vault)
            sources[record.key] = "vault"
        }
        if let gitBranch, environment == EnvVarRules.branchEnvironment {
            for record in own where record.gitBranch == gitBranch {
                vars[record.key] = try await open(record, in: access.vault)
                sources[record.key] = "branch_override"
            }
        }
        var details = Self.details(access.vault, keys: vars.keys.sorted())
        details["environment"] = .string(environment)
        if let gitBranch { details["git_branch"] = .string(gitBranch) }
        try await audit.append(audit.record(caller, "env_var.resolve", "env_var", nil, details))
        return Resolution(vars: vars, sources: sources, environment: environment, gitBranch: gitBranch, resolvedAt: .now)
    }

    /// The environment a request may see: for an agent locked to its environment (`environment_locked`), its own
    /// tag, whatever it asked for (another one is 403, recorded; locked without a tag sees none: fail closed); for
    /// everyone else, what was asked (nil: every environment). Also the agent's row, for an agent.
    private func confined(_ requested: String?, vaultID: UUID, _ action: String, by caller: Caller) async throws
        -> (environment: String?, agent: Agent?)
    {
        guard caller.principal.kind == .agent else { return (requested, nil) }
        guard let agent = try await agents.agent(id: caller.principal.id) else { throw KeyholdError.unauthenticated }
        guard agent.environmentLocked else { return (requested, agent) }
        if let tag = agent.environment, requested.map({ $0 == tag }) ?? true { return (tag, agent) }
        var details: [String: JSONValue] = [
            "vault_id": .string(vaultID.wire), "outcome": "denied", "reason": "agent is locked to its environment",
        ]
        if let environment = requested ?? agent.environment { details["environment"] = .string(environment) }
        try await audit.append(audit.record(caller, action, "env_var", nil, details))
        throw KeyholdError.forbidden(
            agent.environment.map { "This agent may only use the '\($0)' environment" }
                ?? "This agent is locked to an environment but has none")
    }

    // MARK: the org's shared variables

    public func listShared(by caller: Caller) async throws -> [RevealedShared] {
        try await audit.recordingDenial(caller, "org_env_var.list", "org_env_var", nil) {
            try Self.requireAdmin(caller)
            let revealed = try await store.orgEnvVars(orgID: caller.principal.orgID).map {
                RevealedShared(record: $0, value: $0.sensitive ? nil : try openShared($0))
            }
            let shown = revealed.filter { $0.value != nil }.map { JSONValue.string($0.record.key) }
            if !shown.isEmpty {
                try await audit.append(audit.record(caller, "org_env_var.list", "org_env_var", nil, ["keys": .array(shown)]))
            }
            return revealed
        }
    }

    public func createShared(_ draft: Draft, by caller: Caller) async throws -> RevealedShared {
        let key = try EnvVarRules.key(draft.key)
        let value = try EnvVarRules.value(draft.value)
        let comment = try EnvVarRules.comment(draft.comment)
        let environments = try draft.environments.map(EnvVarRules.environments) ?? EnvVarRules.builtins.sorted()
        guard draft.gitBranch == nil else { throw KeyholdError.badRequest("A shared variable has no git_branch") }
        return try await audit.recordingDenial(caller, "org_env_var.create", "org_env_var", key) {
            try Self.requireAdmin(caller)
            let now = Timestamp.now
            var record = OrgEnvVarRecord(
                id: UUID(), orgID: caller.principal.orgID, key: key, environments: environments,
                sensitive: draft.sensitive ?? false, comment: comment, version: 1, wrappedDataKey: Data(), ciphertext: Data(),
                linkedVaults: [], createdBy: caller.principal.id, createdAt: now, updatedAt: now)
            try sealShared(value, into: &record)
            try await store.saveOrgEnvVar(
                record, replacing: nil, audit: audit.record(caller, "org_env_var.create", "org_env_var", key, Self.details(record)))
            return RevealedShared(record: record, value: value)
        }
    }

    public func updateShared(key: String, _ changes: Changes, by caller: Caller) async throws -> RevealedShared {
        let value = try changes.value.map(EnvVarRules.value)
        let comment = try EnvVarRules.comment(changes.comment)
        let environments = try changes.environments.map(EnvVarRules.environments)
        return try await audit.recordingDenial(caller, "org_env_var.update", "org_env_var", key) {
            try Self.requireAdmin(caller)
            guard let current = try await store.orgEnvVars(orgID: caller.principal.orgID).first(where: { $0.key == key })
            else { throw Self.notFound }
            var record = current
            if let environments { record.environments = environments }
            if let sensitive = changes.sensitive { record.sensitive = sensitive }
            if let comment { record.comment = comment }
            let newValue = try value ?? openShared(current)
            record.version += 1
            record.updatedAt = .now
            try sealShared(newValue, into: &record)
            try await store.saveOrgEnvVar(
                record, replacing: current.version,
                audit: audit.record(caller, "org_env_var.update", "org_env_var", key, Self.details(record)))
            // As in lists: a sensitive value is never shown unless the caller just sent it.
            return RevealedShared(record: record, value: value ?? (record.sensitive ? nil : newValue))
        }
    }

    public func deleteShared(id: UUID, by caller: Caller) async throws {
        try await audit.recordingDenial(caller, "org_env_var.delete", "org_env_var", id.wire) {
            try Self.requireAdmin(caller)
            guard try await store.deleteOrgEnvVar(
                id: id, orgID: caller.principal.orgID,
                audit: audit.record(caller, "org_env_var.delete", "org_env_var", id.wire))
            else { throw Self.notFound }
        }
    }

    public func link(id: UUID, vaultID: UUID, by caller: Caller) async throws {
        try await audit.recordingDenial(caller, "org_env_var.link", "org_env_var", id.wire) {
            try Self.requireAdmin(caller)
            guard try await store.linkOrgEnvVar(
                id: id, orgID: caller.principal.orgID, vaultID: vaultID,
                audit: audit.record(caller, "org_env_var.link", "org_env_var", id.wire, ["vault_id": .string(vaultID.wire)]))
            else { throw KeyholdError.notFound("Shared variable or vault not found") }
        }
    }

    public func unlink(id: UUID, vaultID: UUID, by caller: Caller) async throws {
        try await audit.recordingDenial(caller, "org_env_var.unlink", "org_env_var", id.wire) {
            try Self.requireAdmin(caller)
            guard try await store.unlinkOrgEnvVar(
                id: id, orgID: caller.principal.orgID, vaultID: vaultID,
                audit: audit.record(caller, "org_env_var.unlink", "org_env_var", id.wire, ["vault_id": .string(vaultID.wire)]))
            else { throw KeyholdError.notFound("Link not found") }
        }
    }

    // MARK: access

    private func permits(_ caller: Caller, _ access: VaultAccess, _ key: String, _ permission: Permission) -> Bool {
        authorizer.decide(
            caller.principal, vault: access.vault, path: EnvVarRules.policyPath(key), permission: permission,
            policies: access.policies, context: caller.context
        ).isAllowed
    }

    /// The vault, once the caller may do `permission` on `key` there; a refusal is recorded (403).
    private func authorize(
        _ vaultID: UUID, _ key: String, _ permission: Permission, _ action: String, by caller: Caller
    ) async throws -> VaultAccess {
        let access = try await vaults.access(vaultID, for: caller)
        let decision = authorizer.decide(
            caller.principal, vault: access.vault, path: EnvVarRules.policyPath(key), permission: permission,
            policies: access.policies, context: caller.context)
        // Environment variables are not served under approval leases: a gated policy refuses them (fail closed).
        if let reason = decision.refusal {
            try await audit.append(
                audit.record(
                    caller, action, "env_var", key,
                    ["vault_id": .string(vaultID.wire), "outcome": "denied", "reason": .string(reason)]))
            throw KeyholdError.forbidden("Access denied")
        }
        return access
    }

    private func authorizeChange(
        _ vaultID: UUID, _ key: String, _ permission: Permission, _ action: String, by caller: Caller
    ) async throws -> VaultAccess {
        try await refuseAgent(caller, action, key)
        return try await authorize(vaultID, key, permission, action, by: caller)
    }

    /// The one variable the selector names, once the caller may do `permission` on its key: 404 when none, 409 when
    /// several answer (the request must name the environment).
    private func select(
        _ vaultID: UUID, _ selector: Selector, _ permission: Permission, _ action: String, by caller: Caller
    ) async throws -> (VaultAccess, EnvVarRecord) {
        guard (try? EnvVarRules.key(selector.key)) != nil else { throw Self.notFound }
        let requested = try selector.environment.map { try EnvVarRules.slug($0, field: "environment") }
        let gitBranch = try selector.gitBranch.map(EnvVarRules.branch)
        let access = try await authorize(vaultID, selector.key, permission, action, by: caller)
        let environment = try await confined(requested, vaultID: vaultID, action, by: caller).environment
        let matching = try await store.envVars(vaultID: vaultID).filter {
            $0.key == selector.key && $0.gitBranch == gitBranch && (environment.map($0.environments.contains) ?? true)
        }
        guard let record = matching.first else { throw Self.notFound }
        guard matching.count == 1 else {
            throw KeyholdError(
                .conflict, "\(selector.key) has a value per environment; name one with ?environment= "
                    + "(\(matching.flatMap(\.environments).sorted().joined(separator: ", ")))")
        }
        return (access, record)
    }

    private func authorizeEnvironments(_ vaultID: UUID, _ action: String, _ slug: String, by caller: Caller) async throws
        -> VaultAccess
    {
        let access = try await vaults.access(vaultID, for: caller)
        guard caller.principal.kind == .user, !caller.principal.isScoped, authorizer.isOwner(caller.principal, of: access.vault)
        else {
            try await audit.append(
                audit.record(
                    caller, action, "environment", slug,
                    ["vault_id": .string(vaultID.wire), "outcome": "denied", "reason": "only the vault's owners manage its environments"]))
            throw KeyholdError.forbidden("Only the vault's owners may manage its environments")
        }
        return access
    }

    /// Agents read variables; a change by one is refused (403) and recorded.
    private func refuseAgent(_ caller: Caller, _ action: String, _ key: String) async throws {
        try await audit.recordingDenial(caller, action, "env_var", key) {
            guard caller.principal.kind == .user else {
                throw KeyholdError.forbidden("Agents may read environment variables, not change them")
            }
        }
    }

    /// Owners and admins with an unscoped credential: a shared variable reaches every vault it is linked to, beyond
    /// any path a scoped key is capped to.
    static func requireAdmin(_ caller: Caller) throws {
        guard caller.principal.isOrgAdmin, !caller.principal.isScoped else {
            throw KeyholdError.forbidden("Only the organization's owners and admins, with an unscoped credential, manage shared variables")
        }
    }

    static func checkBranch(_ gitBranch: String?, _ environments: [String]) throws {
        if gitBranch != nil, environments != [EnvVarRules.branchEnvironment] {
            throw KeyholdError.badRequest("A git_branch override belongs to the preview environment only")
        }
    }

    // MARK: sealing

    private func seal(_ value: String, into record: inout EnvVarRecord, in vault: Vault) async throws {
        let kek = try await vaults.kek(vault.kekID)
        let dataKey = KeyMaterial.randomKey()
        record.kekID = kek.id
        record.wrappedDataKey = try await keystore.wrap(dataKey: dataKey, with: kek)
        record.ciphertext = try EnvelopeCipher.seal(Data(value.utf8), key: dataKey, binding: Self.binding(record, vault))
    }

    private func open(_ record: EnvVarRecord, in vault: Vault) async throws -> String {
        let dataKey = try await keystore.unwrap(record.wrappedDataKey, with: try await vaults.kek(record.kekID))
        return String(
            decoding: try EnvelopeCipher.open(record.ciphertext, key: dataKey, binding: Self.binding(record, vault)),
            as: UTF8.self)
    }

    private func sealShared(_ value: String, into record: inout OrgEnvVarRecord) throws {
        let dataKey = KeyMaterial.randomKey()
        record.wrappedDataKey = try KeyMaterial.seal(
            KeyMaterial.bytes(of: dataKey), key: sharedKey, label: Self.sharedLabel(record))
        record.ciphertext = try EnvelopeCipher.seal(Data(value.utf8), key: dataKey, binding: Self.binding(record))
    }

    private func openShared(_ record: OrgEnvVarRecord) throws -> String {
        let dataKey: SymmetricKey
        do {
            dataKey = SymmetricKey(data: try KeyMaterial.open(record.wrappedDataKey, key: sharedKey, label: Self.sharedLabel(record)))
        } catch {
            throw KeyholdError.internalError("Stored secret failed its integrity check")
        }
        return String(
            decoding: try EnvelopeCipher.open(record.ciphertext, key: dataKey, binding: Self.binding(record)), as: UTF8.self)
    }

    static func binding(_ record: EnvVarRecord, _ vault: Vault) -> EnvelopeCipher.Binding {
        .init(orgID: vault.orgID, vaultID: vault.id, path: record.id.wire, version: record.version, domain: vaultDomain)
    }

    static func binding(_ record: OrgEnvVarRecord) -> EnvelopeCipher.Binding {
        .init(orgID: record.orgID, vaultID: record.orgID, path: record.id.wire, version: record.version, domain: sharedDomain)
    }

    static func sharedLabel(_ record: OrgEnvVarRecord) -> String {
        "keyhold.org-env-var.key:\(record.orgID.wire):\(record.id.wire):\(record.version)"
    }

    // MARK: audit details (keys and where they apply, never values)

    static func details(_ vault: Vault, keys: [String]) -> [String: JSONValue] {
        ["vault_id": .string(vault.id.wire), "keys": .array(keys.map(JSONValue.string))]
    }

    static func details(_ vault: Vault, _ record: EnvVarRecord) -> [String: JSONValue] {
        var details: [String: JSONValue] = [
            "vault_id": .string(vault.id.wire), "environments": .array(record.environments.map(JSONValue.string)),
            "version": .number(Double(record.version)),
        ]
        if let gitBranch = record.gitBranch { details["git_branch"] = .string(gitBranch) }
        return details
    }

    static func details(_ record: OrgEnvVarRecord) -> [String: JSONValue] {
        [
            "id": .string(record.id.wire), "environments": .array(record.environments.map(JSONValue.string)),
            "version": .number(Double(record.version)),
        ]
    }
}

import Crypto
import Foundation
import Synchronization

/// A vault the caller may see, with the caller's policies on it (fetched once per request).
public struct VaultAccess: Sendable {
    public let vault: Vault
    public let policies: [Policy]
}

/// Vault lifecycle. Every lookup is scoped to the caller's org, and a vault the caller may not see at all answers
/// exactly like one that does not exist.
public final class VaultService: Sendable {
    let store: any VaultStore
    let policies: any PolicyStore
    let keystore: any Keystore
    let authorizer: Authorizer
    let audit: AuditLog
    /// KEK handles never change once written, so they are cached by id.
    private let kekCache = Mutex<[String: KEKHandle]>([:])

    public init(
        store: any VaultStore, policies: any PolicyStore, keystore: any Keystore, authorizer: Authorizer,
        audit: AuditLog
    ) {
        self.store = store
        self.policies = policies
        self.keystore = keystore
        self.authorizer = authorizer
        self.audit = audit
    }

    public static let notFound = KeyholdError.notFound("Vault not found")

    /// A person needs an unscoped credential (a scoped key manages nothing); an agent may create vaults.
    public func create(by caller: Caller, name: String, description: String?) async throws -> Vault {
        if caller.principal.kind == .user, caller.principal.isScoped {
            try await audit.append(
                audit.record(
                    caller, "vault.create", "vault", nil,
                    ["outcome": "denied", "reason": "a scoped API key cannot create vaults"]))
            throw KeyholdError.forbidden("A scoped API key cannot create vaults")
        }
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...255).contains(name.count) else { throw KeyholdError.badRequest("name must be 1 to 255 characters") }
        if let description, description.count > 4096 {
            throw KeyholdError.badRequest("description must be at most 4096 characters")
        }
        let id = UUID()
        let kek = try await keystore.createKEK(id: "vault-\(id.wire)-v1")
        let vault = Vault(
            id: id, orgID: caller.principal.orgID, name: name, description: description,
            createdBy: caller.principal.id, createdByType: caller.principal.kind, kekID: kek.id, createdAt: .now)
        try await store.createVault(
            vault, kek: kek, audit: audit.record(caller, "vault.create", "vault", id.wire, ["name": .string(name)]))
        kekCache.withLock { $0[kek.id] = kek }
        return vault
    }

    /// The name of the vault that holds an org's agents' identity private keys (1Claw's).
    public static let agentKeysVaultName = "__agent-keys"

    /// The id of an org's `__agent-keys` vault: derived from the org's id, so there is one per org whoever makes it
    /// first, and finding it needs nothing stored.
    public static func agentKeysVaultID(orgID: UUID) -> UUID {
        var bytes = Array(SHA256.hash(data: Data("keyhold.agent-keys-vault|\(orgID.wire)".utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80  // version 8 (custom)
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 9562 variant
        return UUID(uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
            bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// The org's `__agent-keys` vault, made with its first agent (or the first rotation of an agent made before).
    /// Envelope-encrypted like any vault, under its own KEK. Its creator is no one (`created_by` is the org's id,
    /// `created_by_type` agent): only the org's owners and admins (owner bypass) and each agent through a policy on
    /// its own prefix (`grantAgentKeys`) read it. `caller` is the person whose request makes it (the audit event's
    /// actor).
    func agentKeysVault(orgID: UUID, by caller: Caller) async throws -> Vault {
        let id = Self.agentKeysVaultID(orgID: orgID)
        if let vault = try await store.vault(id: id, orgID: orgID) { return vault }
        let kek = try await keystore.createKEK(id: "vault-\(id.wire)-v1")
        let vault = Vault(
            id: id, orgID: orgID, name: Self.agentKeysVaultName,
            description: "Agents' identity private keys (made by Keyhold)", createdBy: orgID, createdByType: .agent,
            kekID: kek.id, createdAt: .now)
        do {
            try await store.createVault(
                vault, kek: kek,
                audit: audit.record(
                    caller, "vault.create", "vault", id.wire,
                    ["name": .string(vault.name), "reason": "agent identity keys"]))
        } catch {
            // Made meanwhile by a concurrent request (the id is the org's): use that one.
            guard let made = try await store.vault(id: id, orgID: orgID) else { throw error }
            return made
        }
        kekCache.withLock { $0[kek.id] = kek }
        return vault
    }

    /// The policy that lets an agent read its own identity keys in the `__agent-keys` vault (read on
    /// `agents/{id}/**`, nothing else), unless it has it already.
    func grantAgentKeys(_ agentID: UUID, vault: Vault, by caller: Caller) async throws {
        let pattern = try PathPattern(validating: AgentIdentityKeys.ownPattern(agentID))
        let existing = try await policies.policies(principalKind: .agent, principalID: agentID)
        if existing.contains(where: { $0.vaultID == vault.id && $0.pattern == pattern && $0.permissions == [.read] }) {
            return
        }
        let policy = Policy(
            id: UUID(), vaultID: vault.id, pattern: pattern, principalKind: .agent, principalID: agentID,
            permissions: [.read], conditions: .none, expiresAt: nil, effect: .allow, priority: 0,
            createdBy: caller.principal.id, createdByType: caller.principal.kind, createdAt: .now)
        try await policies.createPolicy(
            policy,
            audit: audit.record(
                caller, "policy.create", "policy", policy.id.wire,
                ["vault_id": .string(vault.id.wire), "secret_path_pattern": .string(pattern.rawValue),
                 "principal_type": "agent", "principal_id": .string(agentID.wire), "permissions": .array(["read"]),
                 "effect": "allow", "reason": "agent identity keys"]))
    }

    /// The vault in the principal's org with the principal's policies on it, without deciding or recording
    /// anything.
    func lookup(_ id: UUID, for principal: Principal) async throws -> VaultAccess? {
        try await store.vaultAndPolicies(
            id: id, orgID: principal.orgID, principalKind: principal.kind, principalID: principal.id
        ).map { VaultAccess(vault: $0.0, policies: $0.1) }
    }

    /// The vault with the caller's policies on it, if the caller may see it.
    public func access(_ id: UUID, for caller: Caller) async throws -> VaultAccess {
        let principal = caller.principal
        guard let (vault, policies) = try await lookup(id, for: principal).map({ ($0.vault, $0.policies) })
        else { throw Self.notFound }
        guard authorizer.canSee(principal, vault: vault, policies: policies, context: caller.context) else {
            try await audit.append(
                audit.record(
                    caller, "vault.access", "vault", vault.id.wire,
                    ["outcome": "denied", "reason": "no policy in force lets the caller see this vault"]))
            throw Self.notFound
        }
        return VaultAccess(vault: vault, policies: policies)
    }

    /// The vaults of the caller's org that the caller may see.
    public func list(for caller: Caller) async throws -> [Vault] {
        let principal = caller.principal
        let mine = try await policies.policies(principalKind: principal.kind, principalID: principal.id)
        return try await store.vaults(orgID: principal.orgID).filter {
            authorizer.canSee(principal, vault: $0, policies: mine, context: caller.context)
        }
    }

    /// Deletes the vault with its secrets and keys; only its owners may.
    public func delete(_ id: UUID, by caller: Caller) async throws {
        let vault = try await access(id, for: caller).vault
        let scopedKey = caller.principal.kind == .user && caller.principal.isScoped
        guard !scopedKey, authorizer.isOwner(caller.principal, of: vault) else {
            let reason = scopedKey ? "a scoped API key cannot delete vaults" : "only the vault's owners may delete it"
            try await audit.append(
                audit.record(caller, "vault.delete", "vault", vault.id.wire, ["outcome": "denied", "reason": .string(reason)]))
            throw KeyholdError.forbidden(scopedKey ? "A scoped API key cannot delete vaults" : "Only the vault's owners may delete it")
        }
        guard try await store.deleteVault(
            id: vault.id, orgID: vault.orgID, audit: audit.record(caller, "vault.delete", "vault", vault.id.wire))
        else { throw Self.notFound }
    }

    public func kek(_ id: String) async throws -> KEKHandle {
        if let cached = kekCache.withLock({ $0[id] }) { return cached }
        guard let kek = try await store.kek(id: id) else {
            throw KeyholdError.gone("The key for this secret no longer exists")
        }
        kekCache.withLock { $0[id] = kek }
        return kek
    }
}

import Foundation
import Synchronization

/// Vault lifecycle. Every lookup is scoped to the caller's org: another org's vault is "not found".
public final class VaultService: Sendable {
    let store: any VaultStore
    let keystore: any Keystore
    let authorizer: Authorizer
    /// KEK handles never change once written, so they are cached by id.
    private let kekCache = Mutex<[String: KEKHandle]>([:])

    public init(store: any VaultStore, keystore: any Keystore, authorizer: Authorizer) {
        self.store = store
        self.keystore = keystore
        self.authorizer = authorizer
    }

    public static let notFound = KeyholdError.notFound("Vault not found")

    public func create(by principal: Principal, name: String, description: String?) async throws -> Vault {
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...255).contains(name.count) else { throw KeyholdError.badRequest("name must be 1 to 255 characters") }
        if let description, description.count > 4096 {
            throw KeyholdError.badRequest("description must be at most 4096 characters")
        }
        let id = UUID()
        let kek = try await keystore.createKEK(id: "vault-\(id.uuidString.lowercased())-v1")
        let vault = Vault(
            id: id, orgID: principal.orgID, name: name, description: description, createdBy: principal.id,
            createdByType: principal.kind, kekID: kek.id, createdAt: .now)
        try await store.createVault(vault, kek: kek)
        kekCache.withLock { $0[kek.id] = kek }
        return vault
    }

    /// The vault, if it exists in the caller's org and the caller may use it with `permission`.
    public func vault(_ id: UUID, for principal: Principal, permission: Permission = .read) async throws -> Vault {
        guard let vault = try await store.vault(id: id, orgID: principal.orgID) else { throw Self.notFound }
        try authorizer.require(principal, vault: vault, path: nil, permission: permission)
        return vault
    }

    /// The vaults of the caller's org that the caller may read.
    public func list(for principal: Principal) async throws -> [Vault] {
        try await store.vaults(orgID: principal.orgID).filter {
            authorizer.decide(principal, vault: $0, path: nil, permission: .read) == .allow
        }
    }

    public func delete(_ id: UUID, by principal: Principal) async throws {
        let vault = try await vault(id, for: principal, permission: .delete)
        guard try await store.deleteVault(id: vault.id, orgID: principal.orgID) else { throw Self.notFound }
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

import Foundation

/// Key rotation: a new KEK version per vault for new writes, rewrapping existing data keys under each vault's
/// newest KEK (in batches, resumable: what is left is whatever is still wrapped by an older KEK), and retiring KEKs
/// nothing uses any more. Ciphertexts are never touched: a value's associated data names where it lives, not
/// which KEK wraps its data key.
public struct KeyService: Sendable {
    let store: any KeyRotationStore
    let vaultStore: any VaultStore
    let vaults: VaultService
    let keystore: any Keystore
    let audit: AuditLog

    public init(
        store: any KeyRotationStore, vaultStore: any VaultStore, vaults: VaultService, keystore: any Keystore,
        audit: AuditLog
    ) {
        self.store = store
        self.vaultStore = vaultStore
        self.vaults = vaults
        self.keystore = keystore
        self.audit = audit
    }

    /// The next KEK id of a vault: `vault-<id>-v<n+1>`.
    static func nextKEKID(after current: String, vaultID: UUID) -> String {
        let version = current.split(separator: "-").last.flatMap { Int($0.dropFirst()) } ?? 1
        return "vault-\(vaultID.wire)-v\(version + 1)"
    }

    /// A vault owner's request (`POST /v1/vaults/{id}/rotate-key`).
    public func rotate(vaultID: UUID, by caller: Caller) async throws -> KEKHandle {
        let vault = try await vaults.access(vaultID, for: caller).vault
        let scopedKey = caller.principal.kind == .user && caller.principal.isScoped
        guard !scopedKey, Authorizer().isOwner(caller.principal, of: vault) else {
            let reason = scopedKey ? "a scoped API key cannot rotate keys" : "only the vault's owners may rotate its key"
            try await audit.append(
                audit.record(caller, "vault.rotate_key", "vault", vault.id.wire, ["outcome": "denied", "reason": .string(reason)]))
            throw KeyholdError.forbidden(scopedKey ? "A scoped API key cannot rotate keys" : "Only the vault's owners may rotate its key")
        }
        return try await rotate(vault, audit: { audit.record(caller, "vault.rotate_key", "vault", vault.id.wire, $0) })
    }

    /// An operator's command (`keyhold keys rotate --vault ID`).
    public func rotate(vaultID: UUID) async throws -> KEKHandle {
        guard let vault = try await vaultStore.vault(id: vaultID) else { throw VaultService.notFound }
        return try await rotate(vault) { details in
            AuditRecord(
                AuditEntry(
                    orgID: vault.orgID, actorType: .system, actorID: "keyhold keys rotate", action: "vault.rotate_key",
                    resourceType: "vault", resourceID: vault.id.wire, details: details, ipAddress: nil),
                chain: audit.chain)
        }
    }

    private func rotate(_ vault: Vault, audit record: ([String: JSONValue]) -> AuditRecord) async throws -> KEKHandle {
        let kek = try await keystore.createKEK(id: Self.nextKEKID(after: vault.kekID, vaultID: vault.id))
        let details: [String: JSONValue] = ["previous_kek_id": .string(vault.kekID), "kek_id": .string(kek.id)]
        guard try await store.rotateVaultKEK(vaultID: vault.id, orgID: vault.orgID, kek: kek, audit: record(details))
        else { throw VaultService.notFound }
        return kek
    }

    public struct RewrapProgress: Sendable {
        public var rewrapped = 0
        public var batches = 0
    }

    /// Rewraps every data key still under an older KEK, `batchSize` per transaction, until none is left.
    public func rewrap(batchSize: Int = 500, onBatch: @Sendable (RewrapProgress) -> Void = { _ in }) async throws
        -> RewrapProgress
    {
        precondition(batchSize > 0)
        var progress = RewrapProgress()
        while true {
            let stale = try await store.staleWrappedKeys(limit: batchSize)
            if stale.isEmpty { return progress }
            var rewrapped: [(StaleWrappedKey, Data)] = []
            for key in stale {
                let dataKey = try await keystore.unwrap(key.wrappedDataKey, with: try await vaults.kek(key.currentKEKID))
                rewrapped.append((key, try await keystore.wrap(dataKey: dataKey, with: try await vaults.kek(key.targetKEKID))))
            }
            progress.rewrapped += try await store.rewrap(rewrapped)
            progress.batches += 1
            onBatch(progress)
        }
    }

    /// Deletes KEKs that no vault and no version uses any more, in storage and in the keystore.
    public func retireUnused() async throws -> [String] {
        var retired: [String] = []
        for kek in try await store.unusedKEKs() where try await store.deleteKEK(id: kek.id) {
            try await keystore.destroyKEK(id: kek.id)
            retired.append(kek.id)
        }
        return retired
    }
}

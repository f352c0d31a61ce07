import Crypto
import Foundation
import Synchronization

/// Customer-managed keys (contract §1.2): turning CMEK on and off for a vault, and rotating the client's key.
///
/// Only the vault's owners (its creator, the org's owners and admins) manage it, with an unscoped credential, and
/// never an agent (1Claw's CMEK routes are human-only). A rotation runs in the background, one task per job, owned by
/// this service: the two keys live in that task's memory only (never in a log, an audit event, an error or the
/// database). It works in batches of `batchSize` versions, each batch one transaction, and is resumable: a version
/// moved carries the new fingerprint, so posting the same rotation again continues with the versions still under the
/// old key. A job whose node stopped stays `running` (or `failed`) in its row; post the rotation again.
public final class CMEKService: Sendable {
    let store: any CMEKStore
    let vaults: VaultService
    let keystore: any Keystore
    let authorizer: Authorizer
    let audit: AuditLog
    /// Vaults with a rotation running in this process (a second one for the same vault is refused).
    private let running = Mutex<Set<UUID>>([])

    public static let batchSize = 100
    /// Batches found changed under the job (a concurrent job of another node) before the job gives up.
    static let conflictLimit = 5

    public init(
        store: any CMEKStore, vaults: VaultService, keystore: any Keystore, authorizer: Authorizer, audit: AuditLog
    ) {
        self.store = store
        self.vaults = vaults
        self.keystore = keystore
        self.authorizer = authorizer
        self.audit = audit
    }

    /// Turns CMEK on with the client key's fingerprint. Enabling again with the same fingerprint changes nothing;
    /// another fingerprint while CMEK is on is refused (409): the versions under the current key need a rotation.
    public func enable(_ vaultID: UUID, fingerprint: String, by caller: Caller) async throws -> Vault {
        let vault = try await ownedVault(vaultID, by: caller, action: "vault.cmek_enable")
        guard let fingerprint = CMEK.fingerprint(parsing: fingerprint) else {
            throw KeyholdError.badRequest("fingerprint must be the SHA-256 of the key as 64 hex digits")
        }
        if let current = vault.cmekFingerprint {
            guard current == fingerprint else {
                throw KeyholdError(
                    .conflict, "CMEK is already enabled with another key; rotate to the new key with cmek-rotate instead")
            }
            return vault
        }
        return try await set(vault, fingerprint: fingerprint, by: caller, action: "vault.cmek_enable")
    }

    /// Turns CMEK off: new values are stored as the server receives them; versions already written stay CMEK values
    /// with their fingerprint.
    public func disable(_ vaultID: UUID, by caller: Caller) async throws -> Vault {
        let vault = try await ownedVault(vaultID, by: caller, action: "vault.cmek_disable")
        guard vault.cmekFingerprint != nil else { return vault }
        return try await set(vault, fingerprint: nil, by: caller, action: "vault.cmek_disable")
    }

    private func set(_ vault: Vault, fingerprint: String?, by caller: Caller, action: String) async throws -> Vault {
        var details: [String: JSONValue] = [:]
        if let fingerprint { details["fingerprint"] = .string(fingerprint) }
        guard let updated = try await store.setVaultCMEK(
            vaultID: vault.id, orgID: vault.orgID, fingerprint: fingerprint,
            audit: audit.record(caller, action, "vault", vault.id.wire, details))
        else { throw VaultService.notFound }
        return updated
    }

    /// Starts a rotation from the vault's key to a new one: the keys are the headers' base64, checked against the
    /// vault's fingerprint and `newFingerprint`. Returns the job as created (pending); it runs in the background.
    public func startRotation(
        _ vaultID: UUID, oldKey: String?, newKey: String?, newFingerprint: String, by caller: Caller
    ) async throws -> CMEKRotationJob {
        let vault = try await ownedVault(vaultID, by: caller, action: "vault.cmek_rotate")
        guard let newFingerprint = CMEK.fingerprint(parsing: newFingerprint) else {
            throw KeyholdError.badRequest("new_fingerprint must be the SHA-256 of the new key as 64 hex digits")
        }
        let old = try CMEK.key(header: "x-cmek-old-key", oldKey)
        let new = try CMEK.key(header: "x-cmek-new-key", newKey)
        guard let oldFingerprint = vault.cmekFingerprint else {
            throw KeyholdError.badRequest("CMEK is not enabled on this vault")
        }
        guard CMEK.fingerprint(of: old) == oldFingerprint else {
            throw KeyholdError.badRequest("x-cmek-old-key does not match the vault's CMEK fingerprint")
        }
        guard CMEK.fingerprint(of: new) == newFingerprint else {
            throw KeyholdError.badRequest("x-cmek-new-key does not match new_fingerprint")
        }
        guard newFingerprint != oldFingerprint else {
            throw KeyholdError.badRequest("The new key must differ from the old one")
        }
        // Versions under a third key are what an unfinished rotation to that key left: rotating to yet another key
        // would leave them under a key the vault no longer names. Finish that one first.
        if let (stranded, count) = try await store.cmekFingerprints(vaultID: vault.id)
            .first(where: { $0.key != oldFingerprint && $0.key != newFingerprint })
        {
            throw KeyholdError(
                .conflict,
                "\(count) versions are under another key (\(stranded)), left by an unfinished rotation to it: post that rotation again to finish it first")
        }
        guard running.withLock({ $0.insert(vault.id).inserted }) else {
            throw KeyholdError(.conflict, "A rotation of this vault's key is already running")
        }
        do {
            let job = CMEKRotationJob(
                id: UUID(), vaultID: vault.id, orgID: vault.orgID, oldFingerprint: oldFingerprint,
                newFingerprint: newFingerprint, status: .pending,
                totalSecrets: try await store.cmekVersionCount(vaultID: vault.id, fingerprint: oldFingerprint),
                processed: 0, error: nil, startedAt: nil, completedAt: nil, createdBy: caller.principal.id,
                createdAt: .now)
            try await store.createCMEKJob(
                job,
                audit: audit.record(
                    caller, "vault.cmek_rotate", "vault", vault.id.wire,
                    [
                        "job_id": .string(job.id.wire), "old_fingerprint": .string(oldFingerprint),
                        "new_fingerprint": .string(newFingerprint), "total_secrets": .number(Double(job.totalSecrets)),
                    ]))
            Task { [self] in
                // The job outlives the request: nothing the request was served is checked by the job's transactions.
                await AuthorizationObservation.$current.withValue(nil) { await run(job, from: old, to: new, by: caller) }
                running.withLock { _ = $0.remove(job.vaultID) }
            }
            return job
        } catch {
            running.withLock { _ = $0.remove(vault.id) }
            throw error
        }
    }

    /// A rotation job of a vault the caller owns; 404 when the vault has no such job.
    public func job(_ jobID: UUID, vaultID: UUID, by caller: Caller) async throws -> CMEKRotationJob {
        let vault = try await ownedVault(vaultID, by: caller, action: "vault.cmek_rotate")
        guard let job = try await store.cmekJob(id: jobID, vaultID: vault.id) else {
            throw KeyholdError.notFound("Rotation job not found")
        }
        return job
    }

    /// The job's work: batches until no version of the vault is under the old key, then the vault moves to the new
    /// fingerprint. Any failure ends the job as `failed` with its reason; the batch it was in changed nothing.
    private func run(_ job: CMEKRotationJob, from old: SymmetricKey, to new: SymmetricKey, by caller: Caller) async {
        var job = job
        job.status = .running
        job.startedAt = .now
        do {
            try await store.saveCMEKJob(job)
            var conflicts = 0
            while true {
                let batch = try await store.cmekVersions(
                    vaultID: job.vaultID, fingerprint: job.oldFingerprint, limit: Self.batchSize)
                if batch.isEmpty {
                    var done = job
                    done.status = .completed
                    done.completedAt = .now
                    let record = audit.record(
                        caller, "vault.cmek_rotate", "vault", job.vaultID.wire,
                        [
                            "job_id": .string(job.id.wire), "outcome": "completed",
                            "processed": .number(Double(job.processed)), "new_fingerprint": .string(job.newFingerprint),
                        ])
                    if try await store.finishCMEKRotation(done, audit: record) { return }
                    continue  // versions written under the old key meanwhile
                }
                let replacements = try await rotate(batch, of: job, from: old, to: new)
                var next = job
                next.processed += batch.count
                next.totalSecrets = max(next.totalSecrets, next.processed)
                do {
                    try await store.replaceCMEKVersions(
                        replacements, from: job.oldFingerprint, to: job.newFingerprint, job: next)
                    job = next
                    conflicts = 0
                } catch let error as KeyholdError where error.code == .conflict && conflicts < Self.conflictLimit {
                    conflicts += 1
                }
            }
        } catch {
            job.status = .failed
            job.completedAt = .now
            job.error = (error as? KeyholdError)?.detail ?? "The rotation failed unexpectedly; post it again to resume"
            try? await store.saveCMEKJob(job)
            try? await audit.append(
                audit.record(
                    caller, "vault.cmek_rotate", "vault", job.vaultID.wire,
                    [
                        "job_id": .string(job.id.wire), "outcome": "failed", "reason": .string(job.error ?? ""),
                        "processed": .number(Double(job.processed)),
                    ]))
        }
    }

    /// Each version opened from our envelope, decrypted with the old key, encrypted with the new one under a fresh
    /// IV, and sealed again under a fresh data key wrapped by the vault's current KEK.
    private func rotate(_ batch: [CMEKVersion], of job: CMEKRotationJob, from old: SymmetricKey, to new: SymmetricKey)
        async throws -> [CMEKReplacement]
    {
        guard let vault = try await vaults.store.vault(id: job.vaultID, orgID: job.orgID) else { throw VaultService.notFound }
        let kek = try await vaults.kek(vault.kekID)
        var replacements: [CMEKReplacement] = []
        replacements.reserveCapacity(batch.count)
        for version in batch {
            let binding = EnvelopeCipher.Binding(
                orgID: job.orgID, vaultID: job.vaultID, path: version.path, version: version.version)
            let dataKey = try await keystore.unwrap(version.wrappedDataKey, with: try await vaults.kek(version.kekID))
            let value = try EnvelopeCipher.open(version.ciphertext, key: dataKey, binding: binding)
            let rotated: String
            do {
                rotated = try CMEK.reencrypt(String(decoding: value, as: UTF8.self), from: old, to: new)
            } catch {
                throw KeyholdError.badRequest(
                    "Version \(version.version) of '\(version.path)' does not decrypt under the old key; nothing in its batch was changed")
            }
            let fresh = KeyMaterial.randomKey()
            replacements.append(
                CMEKReplacement(
                    original: version, kekID: kek.id, wrappedDataKey: try await keystore.wrap(dataKey: fresh, with: kek),
                    ciphertext: try EnvelopeCipher.seal(Data(rotated.utf8), key: fresh, binding: binding)))
        }
        return replacements
    }

    /// The vault, if the caller owns it with an unscoped credential: 404 when the caller may not see it, 403 (recorded)
    /// when they may see it but not manage its keys.
    private func ownedVault(_ id: UUID, by caller: Caller, action: String) async throws -> Vault {
        let vault = try await vaults.access(id, for: caller).vault
        let principal = caller.principal
        let reason: String? =
            if principal.kind == .agent { "agents cannot manage customer-managed keys" }
            else if principal.isScoped { "a scoped API key cannot manage customer-managed keys" }
            else if !authorizer.isOwner(principal, of: vault) { "only the vault's owners may manage its customer-managed keys" }
            else { nil }
        if let reason {
            try await audit.append(
                audit.record(caller, action, "vault", vault.id.wire, ["outcome": "denied", "reason": .string(reason)]))
            throw KeyholdError.forbidden("Only the vault's owners may manage its customer-managed keys")
        }
        return vault
    }
}

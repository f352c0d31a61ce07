import Crypto
import Foundation

/// What `StoreVerification` found: the facts a backup's manifest records, and every problem (none: the store can be
/// trusted as it is).
public struct StoreReport: Sendable {
    public var schemaVersion = 0
    public var statistics = StorageStatistics(orgs: 0, vaults: 0, secrets: 0, secretVersions: 0, auditEvents: 0)
    public var auditHeads: [UUID: AuditHead] = [:]
    /// Audit events whose keyed hash was recomputed and matched, over every chain.
    public var eventsVerified = 0
    /// KEKs that unwrapped a data key they protect, and KEKs that protect none yet (nothing to unwrap).
    public var keysChecked = 0
    public var keysUnused = 0
    /// Sealed server values (signing, audit, credential keys) that this keystore unsealed.
    public var serverKeysChecked = 0
    public var problems: [String] = []
    /// The key a backup's manifest is authenticated with, derived from the store's audit key: nil when that key did
    /// not unseal (so nothing from this store can be authenticated).
    public var backupKey: SymmetricKey?

    public var valid: Bool { problems.isEmpty }

    public init() {}
}

/// The checks a restore runs before it trusts a database, and a backup runs before it writes one: the schema is the
/// one this build knows, every sealed server key unseals and every KEK unwraps a data key with the keystore at hand
/// (the master key and the HSM are not in a backup), and every org's audit chain verifies from its first event to
/// its recorded head with nothing after it.
public enum StoreVerification {
    public static func verify(_ storage: any Storage, keystore: any Keystore, schemaVersion expected: Int) async throws
        -> StoreReport
    {
        let inventory = try await storage.inventory()
        var report = StoreReport()
        report.schemaVersion = inventory.schemaVersion
        report.statistics = inventory.statistics
        report.auditHeads = inventory.auditHeads
        if inventory.schemaVersion != expected {
            report.problems.append("schema version \(inventory.schemaVersion), where this build knows \(expected)")
        }

        var auditKey: SymmetricKey?
        var sealedWrongly: [String] = []
        for (purpose, sealed) in inventory.systemValues.sorted(by: { $0.key < $1.key }) {
            guard let opened = try? await keystore.unprotect(sealed, purpose: purpose) else {
                sealedWrongly.append(purpose)
                continue
            }
            report.serverKeysChecked += 1
            if purpose == "audit-hmac-key" { auditKey = SymmetricKey(data: opened) }
        }
        if !sealedWrongly.isEmpty {
            report.problems.append(
                "the server keys \(sealedWrongly.joined(separator: ", ")) do not unseal with this \(keystore.kind) keystore: it is not the master key or HSM token that sealed them"
            )
        }
        var unwrappedWrongly: [String] = []
        for sample in inventory.keys {
            guard let wrapped = sample.wrappedDataKey else {
                report.keysUnused += 1
                continue
            }
            if (try? await keystore.unwrap(wrapped, with: sample.kek)) != nil {
                report.keysChecked += 1
            } else {
                unwrappedWrongly.append(sample.kek.id)
            }
        }
        if !unwrappedWrongly.isEmpty {
            report.problems.append(
                "\(unwrappedWrongly.count) vault keys do not unwrap their data keys with this \(keystore.kind) keystore (first: \(unwrappedWrongly[0]))"
            )
        }

        let orgs = Set(inventory.auditHeads.keys).union(inventory.auditChains.keys)
        if let auditKey {
            let chain = AuditChain(key: auditKey)
            for org in orgs.sorted(by: { $0.wire < $1.wire }) {
                if let problem = try await verifyChain(
                    of: org, in: storage, chain: chain, head: inventory.auditHeads[org], extent: inventory.auditChains[org],
                    report: &report)
                {
                    report.problems.append("audit chain of org \(org.wire): \(problem)")
                }
            }
            report.backupKey = BackupManifest.key(fromAuditKey: auditKey)
        } else if inventory.systemValues["audit-hmac-key"] == nil {
            // (A key that is there but does not unseal is among the server keys named above.)
            report.problems.append("the audit chain key is missing: no audit chain can be verified")
        }
        return report
    }

    /// Walks one org's chain up to its recorded head; nil when it verifies.
    private static func verifyChain(
        of org: UUID, in storage: any Storage, chain: AuditChain, head: AuditHead?,
        extent: StorageInventory.ChainExtent?, report: inout StoreReport
    ) async throws -> String? {
        guard let head else { return "\(extent?.events ?? 0) events but no recorded head" }
        guard let extent, extent.events == Int(head.sequence), extent.lastSequence == head.sequence else {
            return "the head is at sequence \(head.sequence) but the table holds \(extent?.events ?? 0) events up to \(extent?.lastSequence ?? 0)"
        }
        var verifier = ChainVerifier(chain: chain)
        var after: Int64 = 0
        while after < head.sequence {
            let page = try await storage.auditChain(orgID: org, afterSequence: after, limit: 1000)
            guard let last = page.last else { break }
            for event in page where event.sequence <= head.sequence {
                if !verifier.check(event) {
                    report.eventsVerified += verifier.result.eventsVerified
                    return "\(verifier.result.reason ?? "broken") (event \(verifier.result.brokenAt?.wire ?? "?"))"
                }
            }
            after = last.sequence
        }
        verifier.finish(head: head)
        report.eventsVerified += verifier.result.eventsVerified
        return verifier.result.valid ? nil : verifier.result.reason
    }
}

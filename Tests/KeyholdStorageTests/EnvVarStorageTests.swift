import Foundation
import KeyholdCore
import Testing

/// Environment variables in storage: the rules that span a vault's variables (one value per key, environment and
/// branch; only environments the vault has), optimistic replacement, environments with copies and deletion, shared
/// variables and their links, the KEK rules (rotation and retirement), audit in the change's transaction, and seals.
/// Run against every backend.
extension StorageConformanceTests {
    func envVar(
        _ f: Fixture, _ key: String, _ environments: [String], branch: String? = nil, vault: Vault? = nil, version: Int = 1
    ) -> EnvVarRecord {
        let vault = vault ?? f.vault
        return EnvVarRecord(
            id: UUID(), vaultID: vault.id, key: key, environments: environments.sorted(), gitBranch: branch, sensitive: false,
            comment: "c", version: version, kekID: vault.kekID, wrappedDataKey: Data([1, 2]), ciphertext: Data([3, 4]),
            createdBy: f.owner.id, createdAt: .now, updatedAt: .now)
    }

    func sharedVar(_ f: Fixture, _ key: String, orgID: UUID? = nil) -> OrgEnvVarRecord {
        OrgEnvVarRecord(
            id: UUID(), orgID: orgID ?? f.org.id, key: key, environments: ["production"], sensitive: true, comment: nil,
            version: 1, wrappedDataKey: Data([5]), ciphertext: Data([6]), linkedVaults: [], createdBy: f.owner.id,
            createdAt: .now, updatedAt: .now)
    }

    @Test(arguments: Backend.enabled)
    func envVarsHoldOneValuePerKeyEnvironmentAndBranch(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let prod = envVar(f, "API_URL", ["production"])
            let rest = envVar(f, "API_URL", ["development", "preview"])
            let branch = envVar(f, "API_URL", ["preview"], branch: "feature/x")
            for variable in [prod, rest, branch] { try await f.storage.saveEnvVar(variable, replacing: nil, audit: testAudit) }
            #expect(Set(try await f.storage.envVars(vaultID: f.vault.id)) == [prod, rest, branch], "every field kept")

            let before = try await f.storage.envVars(vaultID: f.vault.id)
            await #expect(throws: KeyholdError(.conflict, "")) {
                try await f.storage.saveEnvVar(self.envVar(f, "API_URL", ["preview"]), replacing: nil, audit: testAudit)
            }
            await #expect(throws: KeyholdError(.badRequest, "")) {
                try await f.storage.saveEnvVar(self.envVar(f, "OTHER", ["staging"]), replacing: nil, audit: testAudit)
            }
            var moved = rest
            (moved.environments, moved.version) = (["development", "production"], 2)
            await #expect(throws: KeyholdError(.conflict, ""), "would overlap production's value") {
                try await f.storage.saveEnvVar(moved, replacing: 1, audit: testAudit)
            }
            #expect(try await f.storage.envVars(vaultID: f.vault.id) == before, "a refused write changes nothing")

            var changed = rest
            (changed.environments, changed.version, changed.ciphertext) = (["development"], 2, Data([9]))
            try await f.storage.saveEnvVar(changed, replacing: 1, audit: testAudit)
            await #expect(throws: KeyholdError(.conflict, ""), "the stored version is 2 now") {
                try await f.storage.saveEnvVar(changed, replacing: 1, audit: testAudit)
            }
            #expect(try await f.storage.envVars(vaultID: f.vault.id).first { $0.id == rest.id } == changed)

            let other = try await otherOrg(f)
            #expect(try await f.storage.envVars(vaultID: other.vault.id).isEmpty)
            #expect(try await !f.storage.deleteEnvVar(id: prod.id, vaultID: other.vault.id, audit: testAudit))
            #expect(try await f.storage.deleteEnvVar(id: prod.id, vaultID: f.vault.id, audit: testAudit))
            #expect(try await !f.storage.deleteEnvVar(id: prod.id, vaultID: f.vault.id, audit: testAudit), "already gone")
            #expect(Set(try await f.storage.envVars(vaultID: f.vault.id).map(\.id)) == [rest.id, branch.id])
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentWritesOfOneKeyAndEnvironmentStoreOne(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let outcomes = await withTaskGroup(of: KeyholdError.Code?.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        do {
                            try await f.storage.saveEnvVar(self.envVar(f, "RACE", ["production"]), replacing: nil, audit: testAudit)
                            return nil
                        } catch let error as KeyholdError {
                            return error.code
                        } catch {
                            return .internalError
                        }
                    }
                }
                return await group.reduce(into: [KeyholdError.Code?]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == nil }.count == 1, "one is stored")
            #expect(outcomes.compactMap { $0 } == Array(repeating: .conflict, count: 5), "the others are refused with 409")
            #expect(try await f.storage.envVars(vaultID: f.vault.id).count == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func environmentsAreCreatedWithCopiesAndDeletedFromEveryVariable(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let staging = VaultEnvironment(
                id: UUID(), vaultID: f.vault.id, slug: "staging", description: "pre", copiedFrom: "production",
                createdBy: f.owner.id, createdAt: Timestamp(milliseconds: 1_000))
            let copy = envVar(f, "REGION", ["staging"])
            try await f.storage.createVaultEnvironment(staging, copies: [copy], audit: testAudit)
            #expect(try await f.storage.vaultEnvironments(vaultID: f.vault.id) == [staging])
            await #expect(throws: KeyholdError(.conflict, "")) {
                try await f.storage.createVaultEnvironment(staging, copies: [], audit: testAudit)
            }
            let both = envVar(f, "BOTH", ["production", "staging"])
            try await f.storage.saveEnvVar(both, replacing: nil, audit: testAudit)

            #expect(try await !f.storage.deleteVaultEnvironment(vaultID: f.vault.id, slug: "qa", audit: testAudit))
            #expect(try await f.storage.deleteVaultEnvironment(vaultID: f.vault.id, slug: "staging", audit: testAudit))
            #expect(try await f.storage.vaultEnvironments(vaultID: f.vault.id).isEmpty)
            let left = try await f.storage.envVars(vaultID: f.vault.id)
            #expect(left.map(\.key) == ["BOTH"], "a variable left with no environment is deleted")
            #expect(left.first?.environments == ["production"], "the slug left the other, and its seal still verifies")
        }
    }

    @Test(arguments: Backend.enabled)
    func sharedVariablesAreLinkedToVaultsOfTheirOrg(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let shared = sharedVar(f, "SENTRY_DSN")
            try await f.storage.saveOrgEnvVar(shared, replacing: nil, audit: testAudit)
            await #expect(throws: KeyholdError(.conflict, "")) {
                try await f.storage.saveOrgEnvVar(self.sharedVar(f, "SENTRY_DSN"), replacing: nil, audit: testAudit)
            }
            #expect(try await f.storage.orgEnvVars(orgID: f.org.id) == [shared])
            let other = try await otherOrg(f)
            #expect(try await !f.storage.linkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: other.vault.id, audit: testAudit))
            #expect(try await !f.storage.linkOrgEnvVar(id: shared.id, orgID: other.org.id, vaultID: other.vault.id, audit: testAudit))
            #expect(try await f.storage.linkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: f.vault.id, audit: testAudit))
            #expect(try await f.storage.linkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: f.vault.id, audit: testAudit))
            var linked = shared
            linked.linkedVaults = [f.vault.id]
            #expect(try await f.storage.orgEnvVars(orgID: f.org.id) == [linked])
            #expect(try await f.storage.linkedOrgEnvVars(vaultID: f.vault.id) == [linked])
            #expect(try await f.storage.linkedOrgEnvVars(vaultID: other.vault.id).isEmpty)

            var changed = shared
            (changed.version, changed.environments) = (2, ["development"])
            try await f.storage.saveOrgEnvVar(changed, replacing: 1, audit: testAudit)
            await #expect(throws: KeyholdError(.conflict, "")) {
                try await f.storage.saveOrgEnvVar(changed, replacing: 1, audit: testAudit)
            }
            #expect(try await f.storage.linkedOrgEnvVars(vaultID: f.vault.id).first?.environments == ["development"])

            #expect(try await f.storage.unlinkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: f.vault.id, audit: testAudit))
            #expect(try await !f.storage.unlinkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: f.vault.id, audit: testAudit))
            #expect(try await f.storage.linkedOrgEnvVars(vaultID: f.vault.id).isEmpty)
            #expect(try await !f.storage.deleteOrgEnvVar(id: shared.id, orgID: other.org.id, audit: testAudit))
            #expect(try await f.storage.deleteOrgEnvVar(id: shared.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.orgEnvVars(orgID: f.org.id).isEmpty)
        }
    }

    /// A variable's data key is wrapped by its vault's KEK: rotation lists it as stale, rewrap moves it, and a KEK
    /// that still wraps one is not retired.
    @Test(arguments: Backend.enabled)
    func envVarKeysAreRewrappedAndKeepTheirKEK(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let old = f.vault.kekID
            let variable = envVar(f, "ROTATED", ["production"])
            try await f.storage.saveEnvVar(variable, replacing: nil, audit: testAudit)
            let new = KEKHandle(id: "kek-\(UUID())", material: Data([4]))
            #expect(try await f.storage.rotateVaultKEK(vaultID: f.vault.id, orgID: f.org.id, kek: new, audit: testAudit))
            #expect(try await f.storage.unusedKEKs().isEmpty, "the old key still wraps the variable's")
            #expect(try await !f.storage.deleteKEK(id: old))
            let stale = try await f.storage.staleWrappedKeys(limit: 10)
            #expect(stale.map(\.holder) == [.envVar(id: variable.id, version: 1)])
            // A new version written under the old KEK after the listing keeps its own key: the rewrap was for version 1.
            var changed = variable
            (changed.version, changed.wrappedDataKey, changed.ciphertext) = (2, Data([9, 9]), Data([8, 8]))
            try await f.storage.saveEnvVar(changed, replacing: 1, audit: testAudit)
            #expect(try await f.storage.rewrap(stale.map { ($0, Data([7])) }) == 0, "version 1 is gone")
            #expect(try await f.storage.envVars(vaultID: f.vault.id).first?.wrappedDataKey == Data([9, 9]))
            let fresh = try await f.storage.staleWrappedKeys(limit: 10)
            #expect(fresh.map(\.holder) == [.envVar(id: variable.id, version: 2)])
            #expect(try await f.storage.rewrap(fresh.map { ($0, Data([7])) }) == 1)
            #expect(try await f.storage.rewrap(fresh.map { ($0, Data([8])) }) == 0, "already moved")
            let stored = try #require(try await f.storage.envVars(vaultID: f.vault.id).first)
            #expect(stored.kekID == new.id && stored.wrappedDataKey == Data([7]) && stored.version == 2)
            #expect(try await f.storage.unusedKEKs().map(\.id) == [old])
            // A write under a KEK that is gone is refused rather than stored without its key.
            #expect(try await f.storage.deleteKEK(id: old))
            await #expect(throws: KeyholdError(.unavailable, "")) {
                try await f.storage.saveEnvVar(self.envVar(f, "LATE", ["production"]), replacing: nil, audit: testAudit)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func envVarChangesAreAuditedInTheirTransaction(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let kept = envVar(f, "KEPT", ["production"])
            try await f.storage.saveEnvVar(kept, replacing: nil, audit: testAudit)
            let shared = sharedVar(f, "SHARED")
            try await f.storage.saveOrgEnvVar(shared, replacing: nil, audit: testAudit)
            try await backend.breakAuditLog(f.storage)
            await #expect(throws: KeyholdError.auditUnavailable) {
                try await f.storage.saveEnvVar(self.envVar(f, "NEW", ["production"]), replacing: nil, audit: testAudit)
            }
            await #expect(throws: KeyholdError.auditUnavailable) {
                _ = try await f.storage.deleteEnvVar(id: kept.id, vaultID: f.vault.id, audit: testAudit)
            }
            await #expect(throws: KeyholdError.auditUnavailable) {
                _ = try await f.storage.linkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: f.vault.id, audit: testAudit)
            }
            await #expect(throws: KeyholdError.auditUnavailable) {
                try await f.storage.createVaultEnvironment(
                    VaultEnvironment(
                        id: UUID(), vaultID: f.vault.id, slug: "qa", description: nil, copiedFrom: nil, createdBy: f.owner.id,
                        createdAt: .now), copies: [], audit: testAudit)
            }
            #expect(try await f.storage.envVars(vaultID: f.vault.id) == [kept], "no change without its event")
            #expect(try await f.storage.linkedOrgEnvVars(vaultID: f.vault.id).isEmpty)
            #expect(try await f.storage.vaultEnvironments(vaultID: f.vault.id).isEmpty)
        }
    }

    /// Where a value applies is sealed: a variable moved to another environment, a sensitive flag cleared or a
    /// shared variable linked into a vault with SQL is refused (503), never served.
    @Test(arguments: Backend.enabled)
    func envVarPlacementsChangedWithSQLAreRefused(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let refused = { (table: String) in StoredDataError(table: table, column: "seal", problem: "does not verify") }
            var sensitive = envVar(f, "TOKEN", ["production"])
            sensitive.sensitive = true
            try await f.storage.saveEnvVar(sensitive, replacing: nil, audit: testAudit)
            try await backend.execute(f.storage, "UPDATE env_vars SET environments = '[\"development\"]'")
            await #expect(throws: refused("env_vars")) { _ = try await f.storage.envVars(vaultID: f.vault.id) }
            try await backend.execute(f.storage, "UPDATE env_vars SET environments = '[\"production\"]'")
            #expect(try await f.storage.envVars(vaultID: f.vault.id) == [sensitive], "restored, it verifies again")
            try await backend.execute(
                f.storage, "UPDATE env_vars SET sensitive = \(backend == .postgres ? "false" : "0")")
            await #expect(throws: refused("env_vars")) { _ = try await f.storage.envVars(vaultID: f.vault.id) }

            let shared = sharedVar(f, "SHARED")
            try await f.storage.saveOrgEnvVar(shared, replacing: nil, audit: testAudit)
            let vault = try await self.vault(f)
            #expect(try await f.storage.linkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: vault.id, audit: testAudit))
            try await backend.execute(f.storage, "UPDATE org_env_var_links SET vault_id = '\(f.vault.id.wire)'")
            await #expect(throws: refused("org_env_var_links")) { _ = try await f.storage.linkedOrgEnvVars(vaultID: f.vault.id) }
        }
    }
}

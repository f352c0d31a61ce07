import Foundation
import KeyholdCore

// MARK: environment variables

extension SQLStore {
    static let envVars = GrantSeal.table("env_vars")
    static let orgEnvVars = GrantSeal.table("org_env_vars")
    static let orgEnvVarLinks = GrantSeal.table("org_env_var_links")

    public func vaultEnvironments(vaultID: UUID) async throws -> [VaultEnvironment] {
        try await database.reading {
            try await $0.query("SELECT * FROM vault_environments WHERE vault_id = ? ORDER BY slug", [.uuid(vaultID)])
                .map(StoredRecords.vaultEnvironment)
        }
    }

    public func createVaultEnvironment(_ environment: VaultEnvironment, copies: [EnvVarRecord], audit: AuditRecord)
        async throws
    {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.lock("keyhold.env_vars.\(environment.vaultID.wire)")
            guard try await db.count("vault_environments", "vault_id", environment.vaultID) < EnvVarRules.maxEnvironments else {
                throw KeyholdError(.conflict, "A vault keeps at most \(EnvVarRules.maxEnvironments) custom environments")
            }
            // Checked under the lock (the unique index stays as a backstop), so the refusal is the same on every backend.
            guard try await db.first(
                "SELECT id FROM vault_environments WHERE vault_id = ? AND slug = ?", [.uuid(environment.vaultID), .text(environment.slug)]
            ) == nil else { throw KeyholdError(.conflict, "The vault already has an environment '\(environment.slug)'") }
            try await db.query(
                """
                INSERT INTO vault_environments (id, vault_id, slug, description, copied_from, created_by, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .uuid(environment.id), .uuid(environment.vaultID), .text(environment.slug),
                    .optional(environment.description), .optional(environment.copiedFrom),
                    .uuid(environment.createdBy), .time(environment.createdAt),
                ])
            let existing = try await db.query("SELECT * FROM env_vars WHERE vault_id = ?", [.uuid(environment.vaultID)])
                .map(self.envVar(_:))
            guard existing.count + copies.count <= EnvVarRules.maxVariables else { throw Self.tooManyVariables }
            for copy in copies {
                try await db.holdKEK(copy.kekID)
                guard !existing.contains(where: copy.overlaps) else {
                    throw KeyholdError(.conflict, "The vault already has \(copy.key) for '\(environment.slug)'")
                }
                try await db.insertEnvVar(copy, seal: seal)
            }
            try await db.append(audit)
        }
    }

    public func deleteVaultEnvironment(vaultID: UUID, slug: String, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            try await db.lock("keyhold.env_vars.\(vaultID.wire)")
            guard try await db.first(
                "DELETE FROM vault_environments WHERE vault_id = ? AND slug = ? RETURNING id", [.uuid(vaultID), .text(slug)]
            ) != nil else { return false }
            for row in try await db.query("SELECT * FROM env_vars WHERE vault_id = ?" + db.forUpdate, [.uuid(vaultID)]) {
                let variable = try seal.verified(row, Self.envVars, StoredRecords.envVar)
                guard variable.environments.contains(slug) else { continue }
                let remaining = variable.environments.filter { $0 != slug }
                if remaining.isEmpty {
                    try await db.query("DELETE FROM env_vars WHERE id = ?", [.uuid(variable.id)])
                } else {
                    try await db.update(
                        Self.envVars, row: row, set: ["environments": .text(StoredJSON.encode(remaining))], seal: seal)
                }
            }
            try await db.append(audit)
            return true
        }
    }

    public func envVars(vaultID: UUID) async throws -> [EnvVarRecord] {
        try await database.reading {
            try await $0.query(
                "SELECT * FROM env_vars WHERE vault_id = ? ORDER BY key, git_branch, id", [.uuid(vaultID)]
            ).map(self.envVar(_:))
        }
    }

    public func saveEnvVar(_ variable: EnvVarRecord, replacing: Int?, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.lock("keyhold.env_vars.\(variable.vaultID.wire)")
            try await db.holdKEK(variable.kekID)
            let custom = try await db.query("SELECT slug FROM vault_environments WHERE vault_id = ?", [.uuid(variable.vaultID)])
                .map { try StoredFields($0, table: "vault_environments").text("slug") }
            if let unknown = variable.environments.first(where: { !EnvVarRules.builtins.contains($0) && !custom.contains($0) }) {
                throw KeyholdError.badRequest("The vault has no environment '\(unknown)'")
            }
            let siblings = try await db.query(
                "SELECT * FROM env_vars WHERE vault_id = ? AND key = ?" + db.forUpdate, [.uuid(variable.vaultID), .text(variable.key)])
            var current: StoredRow?
            for row in siblings {
                let sibling = try seal.verified(row, Self.envVars, StoredRecords.envVar)
                if sibling.id == variable.id {
                    current = row
                    guard sibling.version == replacing else { throw Self.changedMeanwhile }
                } else if sibling.overlaps(variable) {
                    throw KeyholdError(
                        .conflict,
                        "\(variable.key) already has a value for \(Set(sibling.environments).intersection(variable.environments).sorted().joined(separator: ", "))"
                            + (variable.gitBranch.map { " on branch \($0)" } ?? ""))
                }
            }
            if let current {
                try await db.update(
                    Self.envVars, row: current,
                    set: [
                        "environments": .text(StoredJSON.encode(variable.environments)), "sensitive": .boolean(variable.sensitive),
                        "comment": .optional(variable.comment), "version": .int(variable.version), "kek_id": .text(variable.kekID),
                        "wrapped_dek": .bytes(variable.wrappedDataKey), "ciphertext": .bytes(variable.ciphertext),
                        "updated_at": .time(variable.updatedAt),
                    ], seal: seal)
            } else {
                guard replacing == nil else { throw Self.changedMeanwhile }
                guard try await db.count("env_vars", "vault_id", variable.vaultID) < EnvVarRules.maxVariables else {
                    throw Self.tooManyVariables
                }
                try await db.insertEnvVar(variable, seal: seal)
            }
            try await db.append(audit)
        }
    }

    public func deleteEnvVar(id: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("DELETE FROM env_vars WHERE id = ? AND vault_id = ? RETURNING id", [.uuid(id), .uuid(vaultID)])
                != nil
            else { return false }
            try await db.append(audit)
            return true
        }
    }

    // MARK: org shared variables

    public func orgEnvVars(orgID: UUID) async throws -> [OrgEnvVarRecord] {
        try await database.reading { db in
            let links = try await db.query("SELECT * FROM org_env_var_links WHERE org_id = ?", [.uuid(orgID)])
                .map(self.orgEnvVarLink(_:))
            return try await db.query("SELECT * FROM org_env_vars WHERE org_id = ? ORDER BY key", [.uuid(orgID)]).map {
                var variable = try self.orgEnvVar($0)
                variable.linkedVaults = links.filter { $0.envVarID == variable.id }.map(\.vaultID).sorted { $0.wire < $1.wire }
                return variable
            }
        }
    }

    public func saveOrgEnvVar(_ variable: OrgEnvVarRecord, replacing: Int?, audit: AuditRecord) async throws {
        let seal = try self.seal
        try await database.inTransaction { db in
            try await db.lock("keyhold.org_env_vars.\(variable.orgID.wire)")
            if let replacing {
                guard let (row, current) = try await db.lockedRow(
                    Self.orgEnvVars, where: "id = ? AND org_id = ?", [.uuid(variable.id), .uuid(variable.orgID)], seal: seal,
                    as: StoredRecords.orgEnvVar)
                else { throw Self.changedMeanwhile }
                guard current.version == replacing else { throw Self.changedMeanwhile }
                try await db.update(
                    Self.orgEnvVars, row: row,
                    set: [
                        "environments": .text(StoredJSON.encode(variable.environments)), "sensitive": .boolean(variable.sensitive),
                        "comment": .optional(variable.comment), "version": .int(variable.version),
                        "wrapped_dek": .bytes(variable.wrappedDataKey), "ciphertext": .bytes(variable.ciphertext),
                        "updated_at": .time(variable.updatedAt),
                    ], seal: seal)
            } else {
                guard try await db.count("org_env_vars", "org_id", variable.orgID) < EnvVarRules.maxVariables else {
                    throw Self.tooManyVariables
                }
                guard try await db.first(
                    "SELECT id FROM org_env_vars WHERE org_id = ? AND key = ?", [.uuid(variable.orgID), .text(variable.key)]
                ) == nil else { throw KeyholdError(.conflict, "The organization already has a shared variable \(variable.key)") }
                try await db.insert(
                    Self.orgEnvVars,
                    [
                        "id": .uuid(variable.id), "org_id": .uuid(variable.orgID), "key": .text(variable.key),
                        "environments": .text(StoredJSON.encode(variable.environments)),
                        "sensitive": .boolean(variable.sensitive), "comment": .optional(variable.comment),
                        "version": .int(variable.version), "wrapped_dek": .bytes(variable.wrappedDataKey),
                        "ciphertext": .bytes(variable.ciphertext), "created_by": .uuid(variable.createdBy),
                        "created_at": .time(variable.createdAt), "updated_at": .time(variable.updatedAt),
                    ], seal: seal)
            }
            try await db.append(audit)
        }
    }

    public func deleteOrgEnvVar(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first("DELETE FROM org_env_vars WHERE id = ? AND org_id = ? RETURNING id", [.uuid(id), .uuid(orgID)])
                != nil
            else { return false }
            try await db.append(audit)
            return true
        }
    }

    public func linkOrgEnvVar(id: UUID, orgID: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            try await db.lock("keyhold.org_env_vars.\(orgID.wire)")
            guard try await db.lockedRow(
                Self.orgEnvVars, where: "id = ? AND org_id = ?", [.uuid(id), .uuid(orgID)], seal: seal, as: StoredRecords.orgEnvVar)
                != nil,
                try await db.first("SELECT id FROM vaults WHERE id = ? AND org_id = ?" + db.forKeyShare, [.uuid(vaultID), .uuid(orgID)])
                    != nil
            else { return false }
            if try await db.first(
                "SELECT id FROM org_env_var_links WHERE env_var_id = ? AND vault_id = ?", [.uuid(id), .uuid(vaultID)]) == nil
            {
                try await db.insert(
                    Self.orgEnvVarLinks,
                    ["id": .uuid(UUID()), "env_var_id": .uuid(id), "vault_id": .uuid(vaultID), "org_id": .uuid(orgID)],
                    seal: seal)
            }
            try await db.append(audit)
            return true
        }
    }

    public func unlinkOrgEnvVar(id: UUID, orgID: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool {
        try await database.inTransaction { db in
            guard try await db.first(
                "DELETE FROM org_env_var_links WHERE env_var_id = ? AND vault_id = ? AND org_id = ? RETURNING id",
                [.uuid(id), .uuid(vaultID), .uuid(orgID)]) != nil
            else { return false }
            try await db.append(audit)
            return true
        }
    }

    /// The shared variables linked to the vault: each link and each variable verified, and a link whose org is not
    /// its variable's refused as bad data.
    public func linkedOrgEnvVars(vaultID: UUID) async throws -> [OrgEnvVarRecord] {
        try await database.reading { db in
            let links = try await db.query("SELECT * FROM org_env_var_links WHERE vault_id = ?", [.uuid(vaultID)])
                .map(self.orgEnvVarLink(_:))
            var variables: [OrgEnvVarRecord] = []
            for link in links {
                guard var variable = try await db.first("SELECT * FROM org_env_vars WHERE id = ?", [.uuid(link.envVarID)])
                    .map(self.orgEnvVar(_:))
                else { continue }
                guard variable.orgID == link.orgID else {
                    throw StoredDataError(table: "org_env_var_links", column: "org_id", problem: "is not its variable's org")
                }
                variable.linkedVaults = [vaultID]
                variables.append(variable)
            }
            return variables.sorted { $0.key < $1.key }
        }
    }

    static let changedMeanwhile = KeyholdError(.conflict, "The variable changed meanwhile; read it again and retry")
    static let tooManyVariables = KeyholdError(.conflict, "A vault or organization keeps at most \(EnvVarRules.maxVariables) variables")

    func envVar(_ row: StoredRow) throws -> EnvVarRecord { try seal.verified(row, Self.envVars, StoredRecords.envVar) }
    func orgEnvVar(_ row: StoredRow) throws -> OrgEnvVarRecord { try seal.verified(row, Self.orgEnvVars, StoredRecords.orgEnvVar) }
    func orgEnvVarLink(_ row: StoredRow) throws -> OrgEnvVarLink {
        try seal.verified(row, Self.orgEnvVarLinks, StoredRecords.orgEnvVarLink)
    }
}

extension SQLConnection {
    /// The KEK must still exist when the write commits (as for a secret version): a concurrent retirement waits for
    /// this write and then sees the variable, or, if it went first, this write fails instead of losing its key.
    func holdKEK(_ id: String) async throws {
        guard try await first("SELECT id FROM keks WHERE id = ?" + forKeyShare, [.text(id)]) != nil else {
            throw KeyholdError(.unavailable, "The vault's key changed during the write; retry the request")
        }
    }

    /// How many rows of `table` have `column` = `id`.
    func count(_ table: String, _ column: String, _ id: UUID) async throws -> Int {
        guard let row = try await first("SELECT COUNT(*) AS n FROM \(table) WHERE \(column) = ?", [.uuid(id)]) else { return 0 }
        return try StoredFields(row, table: table).count("n")
    }

    func insertEnvVar(_ variable: EnvVarRecord, seal: GrantSeal) async throws {
        try await insert(
            SQLStore.envVars,
            [
                "id": .uuid(variable.id), "vault_id": .uuid(variable.vaultID), "key": .text(variable.key),
                "environments": .text(StoredJSON.encode(variable.environments)), "git_branch": .optional(variable.gitBranch),
                "sensitive": .boolean(variable.sensitive), "comment": .optional(variable.comment),
                "version": .int(variable.version), "kek_id": .text(variable.kekID),
                "wrapped_dek": .bytes(variable.wrappedDataKey), "ciphertext": .bytes(variable.ciphertext),
                "created_by": .uuid(variable.createdBy), "created_at": .time(variable.createdAt),
                "updated_at": .time(variable.updatedAt),
            ], seal: seal)
    }
}

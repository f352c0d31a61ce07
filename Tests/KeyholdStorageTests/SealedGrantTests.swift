import Crypto
import Foundation
import KeyholdCore
import Testing

/// Sealed grants: a row that grants or limits access, edited or inserted with SQL by someone who cannot use the
/// keystore, grants nothing. Every edit below is well formed (it decodes) and most would widen access; each makes
/// the read that needs the row throw `StoredDataError` for the table's `seal` column. Run against every backend.
extension StorageConformanceTests {
    struct GrantEdit: Sendable, CustomTestStringConvertible {
        let table: String
        /// SQL assignments; `{other}` is another user's id, `{otherOrg}` another org's.
        let set: String

        var testDescription: String { "\(table): \(set)" }
    }

    static let grantEdits: [GrantEdit] = [
        GrantEdit(table: "users", set: "role = 'admin'"),
        GrantEdit(table: "users", set: "password_hash = '$2b$12$chosen.by.the.attacker'"),
        GrantEdit(table: "users", set: "email = 'attacker@example.com'"),
        GrantEdit(table: "users", set: "org_id = '{otherOrg}'"),
        GrantEdit(table: "agents", set: "vault_ids = '[]'"),
        GrantEdit(table: "agents", set: "scopes = NULL"),
        GrantEdit(table: "agents", set: "is_active = NOT is_active"),
        GrantEdit(table: "agents", set: "token_ttl_seconds = 86400"),
        GrantEdit(table: "agents", set: "key_prefix = 'ocv_attacker'"),
        GrantEdit(table: "agents", set: "environment = 'production'"),
        GrantEdit(table: "agents", set: "environment_locked = NOT environment_locked"),
        GrantEdit(table: "agents", set: "env_auto_resolve = NOT env_auto_resolve"),
        GrantEdit(table: "agents", set: "api_key_expires_at = NULL"),
        GrantEdit(table: "agents", set: "intents_api_enabled = NOT intents_api_enabled"),
        GrantEdit(table: "agents", set: "ssh_public_key = 'ssh-ed25519 AAAAattacker'"),
        GrantEdit(table: "agents", set: "ecdh_public_key = 'BAttacker'"),
        GrantEdit(table: "agents", set: "identity_key_history = '[]'"),
        GrantEdit(table: "user_api_keys", set: "scopes = NULL"),
        GrantEdit(table: "user_api_keys", set: "user_id = '{other}'"),
        GrantEdit(table: "refresh_tokens", set: "expires_at = expires_at + 86400000"),
        GrantEdit(table: "refresh_tokens", set: "principal_id = '{other}'"),
        GrantEdit(table: "invites", set: "role = 'owner'"),
        GrantEdit(table: "invites", set: "email = 'attacker@example.com'"),
        GrantEdit(table: "policies", set: #"permissions = '["read", "write", "delete", "rotate"]'"#),
        GrantEdit(table: "policies", set: "pattern = '**'"),
        GrantEdit(table: "policies", set: "principal_id = '{other}'"),
        GrantEdit(table: "policies", set: "conditions = NULL"),
        GrantEdit(table: "policies", set: "expires_at = NULL"),
        GrantEdit(table: "shares", set: "max_access_count = NULL"),
        GrantEdit(table: "shares", set: "access_count = 0, max_access_count = 2"),
        GrantEdit(table: "shares", set: "ip_allowlist = '[]'"),
        GrantEdit(table: "shares", set: "passphrase_hash = NULL"),
        GrantEdit(table: "shares", set: "expires_at = expires_at + 86400000"),
        GrantEdit(table: "vaults", set: "org_id = '{otherOrg}'"),
        GrantEdit(table: "vaults", set: "cmek_fingerprint = '\(String(repeating: "ab", count: 32))'"),
        GrantEdit(table: "ip_rules", set: "rule_type = 'allow'"),
        GrantEdit(table: "ip_rules", set: "cidr = '192.0.2.0/32'"),
        GrantEdit(table: "ip_rules", set: "applies_to = 'agents'"),
        GrantEdit(table: "user_mfa", set: "enabled_at = NULL"),
        GrantEdit(table: "user_mfa", set: "last_step = 0"),
        GrantEdit(table: "user_mfa", set: "recovery_digests = {digests}"),
        GrantEdit(table: "user_mfa", set: "secret = {digests}"),
        GrantEdit(table: "user_mfa", set: "org_id = '{otherOrg}'"),
        GrantEdit(table: "env_vars", set: #"environments = '["development", "production"]'"#),
        GrantEdit(table: "env_vars", set: "sensitive = NOT sensitive"),
        GrantEdit(table: "env_vars", set: "key = 'OTHER_KEY'"),
        GrantEdit(table: "env_vars", set: "version = version + 1"),
        GrantEdit(table: "org_env_vars", set: #"environments = '["development", "production"]'"#),
        GrantEdit(table: "org_env_vars", set: "sensitive = NOT sensitive"),
        GrantEdit(table: "org_env_vars", set: "org_id = '{otherOrg}'"),
        GrantEdit(table: "org_env_var_links", set: "org_id = '{otherOrg}'"),
        GrantEdit(table: "approvals", set: "status = 'approved', uses_left = 2, lease_expires_at = created_at + 86400000"),
        GrantEdit(table: "approvals", set: "requester_id = '{other}'"),
        GrantEdit(table: "approvals", set: "target_id = '**'"),
        GrantEdit(table: "approvals", set: #"summary = '{"path": "docs/readme"}'"#),
        GrantEdit(table: "capability_leases", set: "max_uses = NULL"),
        GrantEdit(table: "capability_leases", set: "principal_id = '{other}'"),
        GrantEdit(table: "capability_leases", set: "host = 'attacker.example.net'"),
        GrantEdit(table: "capability_leases", set: "port = 8443"),
        GrantEdit(table: "capability_leases", set: "path_prefix = '/'"),
        GrantEdit(table: "capability_leases", set: #"methods = '["DELETE", "GET", "POST"]'"#),
        GrantEdit(table: "capability_leases", set: #"injection = '{"type": "query", "name": "leak"}'"#),
        GrantEdit(table: "capability_leases", set: "caveat_uses = '{}'"),
        GrantEdit(table: "capability_leases", set: "expires_at = expires_at + 86400000"),
        GrantEdit(table: "capability_leases", set: "path = 'other/secret'"),
    ]

    static var grantEditCases: [(Backend, GrantEdit)] {
        Backend.enabled.flatMap { backend in grantEdits.map { (backend, $0) } }
    }

    /// One row of every sealed table.
    struct Grants {
        let agent: Agent
        let key: UserAPIKey
        let link: Share
        let other: User
        let otherOrg: Org
    }

    func plantGrants(_ f: Fixture) async throws -> Grants {
        let otherOrg = Org(id: UUID(), name: "other", createdAt: .now)
        let other = User(
            id: UUID(), orgID: otherOrg.id, email: "\(UUID())@example.com", passwordHash: "$2b$other", displayName: nil,
            role: .owner, createdAt: .now)
        try await f.storage.createOrg(otherOrg, owner: other, audit: testAudit)
        let bot = agent(f)
        try await f.storage.createAgent(bot, audit: testAudit)
        try await f.storage.createPolicy(try policy(f, kind: .agent, id: bot.id), audit: testAudit)
        let key = UserAPIKey(
            id: UUID(), userID: f.owner.id, orgID: f.org.id, name: "ci", keyPrefix: "1ck_abcdefgh", keyDigest: Data([9]),
            scopes: ["prod/**"], isActive: true, createdAt: .now, expiresAt: nil)
        try await f.storage.createAPIKey(key, audit: testAudit)
        try await f.storage.createRefreshToken(
            RefreshTokenRecord(
                digest: Data([7]), family: UUID(), principalKind: .user, principalID: f.owner.id, orgID: f.org.id,
                expiresAt: Timestamp.now.adding(seconds: 60)),
            audit: testAudit)
        try await f.storage.createInvite(
            Invite(
                digest: Data([42]), orgID: f.org.id, email: "new@example.com", role: .member, createdBy: f.owner.id,
                expiresAt: Timestamp.now.adding(seconds: 60)),
            audit: testAudit)
        let link = share(f, secret: try await write(f, "shared/key"), max: 1)
        try await f.storage.createShare(link, audit: testAudit)
        try await f.storage.createIPRule(ipRule(f, .deny, "192.0.2.0/24"), audit: testAudit)
        try await enableMFA(f)
        try await f.storage.saveEnvVar(envVar(f, "API_URL", ["production"]), replacing: nil, audit: testAudit)
        _ = try await f.storage.requestApproval(pendingRead(f, requester: bot.id), maxPending: 100, audit: testAudit) { _ in testAudit }
        let shared = sharedVar(f, "REGION")
        try await f.storage.saveOrgEnvVar(shared, replacing: nil, audit: testAudit)
        #expect(try await f.storage.linkOrgEnvVar(id: shared.id, orgID: f.org.id, vaultID: f.vault.id, audit: testAudit))
        _ = try await write(f, "stripe/key")
        let lease = capabilityLease(f)
        try await f.storage.createCapabilityLease(lease, approval: nil, audit: testAudit)
        _ = try await spend(f, lease, counters: [(Data(repeating: 7, count: 32), 2)])
        return Grants(agent: bot, key: key, link: link, other: other, otherOrg: otherOrg)
    }

    /// Reads the row of `table` the way the server does when it decides access.
    func readGrant(_ table: String, _ f: Fixture, _ g: Grants) async throws {
        switch table {
        case "users": _ = try await f.storage.tokenSubject(kind: .user, id: f.owner.id, tokenID: "t")
        case "agents": _ = try await f.storage.tokenSubject(kind: .agent, id: g.agent.id, tokenID: "t")
        case "user_api_keys": _ = try await f.storage.apiKeys(keyPrefix: g.key.keyPrefix)
        case "refresh_tokens": _ = try await f.storage.spendRefreshToken(digest: Data([7]), now: .now)
        case "invites": _ = try await f.storage.invite(digest: Data([42]))
        case "policies": _ = try await f.storage.policies(vaultID: f.vault.id)
        case "shares": _ = try await f.storage.accessShare(id: g.link.id, now: .now, audit: testAudit)
        case "vaults": _ = try await f.storage.vault(id: f.vault.id)
        case "ip_rules": _ = try await f.storage.ipRules(orgID: f.org.id)
        case "user_mfa": _ = try await f.storage.mfaEnrollment(userID: f.owner.id)
        case "env_vars": _ = try await f.storage.envVars(vaultID: f.vault.id)
        case "org_env_vars":
            _ = try await f.storage.orgEnvVars(orgID: f.org.id)
            _ = try await f.storage.linkedOrgEnvVars(vaultID: f.vault.id)
        case "org_env_var_links": _ = try await f.storage.linkedOrgEnvVars(vaultID: f.vault.id)
        case "approvals":
            _ = try await f.storage.approvals(
                orgID: f.org.id, status: nil, requesterID: nil, userID: nil, now: .now, limit: 10, offset: 0)
        case "capability_leases": _ = try await f.storage.capabilityLeases(vaultID: f.vault.id, limit: 10, offset: 0)
        default: Issue.record("no reader for \(table)")
        }
    }

    @Test(arguments: grantEditCases)
    func aGrantEditedWithSQLGrantsNothing(_ backend: Backend, _ edit: GrantEdit) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let g = try await plantGrants(f)
            let set = edit.set.replacingOccurrences(of: "{otherOrg}", with: g.otherOrg.id.wire)
                .replacingOccurrences(of: "{other}", with: g.other.id.wire)
                // A well-formed blob of two digests (the attacker's own recovery codes, or a secret they chose).
                .replacingOccurrences(of: "{digests}", with: (backend == .postgres ? "'\\x" : "X'") + String(repeating: "ab", count: 64) + "'")
            let row = switch edit.table {
                case "users": "id = '\(f.owner.id.wire)'"
                case "vaults": "id = '\(f.vault.id.wire)'"
                default: "1 = 1"
            }
            // Read (and verified) once first, so the check after the edit must not be answered from what was verified.
            try await readGrant(edit.table, f, g)
            try await backend.execute(f.storage, "UPDATE \(edit.table) SET \(set) WHERE \(row)")
            await #expect(throws: StoredDataError(table: edit.table, column: "seal", problem: "does not verify")) {
                try await readGrant(edit.table, f, g)
            }
        }
    }

    /// The positive control for the test above: the same reads succeed on the rows as stored, and after an edit of
    /// columns that decide nothing (names, descriptions).
    @Test(arguments: Backend.enabled)
    func columnsThatDecideNothingMayChangeWithoutTheSeal(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let g = try await plantGrants(f)
            try await backend.execute(f.storage, "UPDATE agents SET name = 'renamed', description = 'edited'")
            try await backend.execute(f.storage, "UPDATE user_api_keys SET name = 'renamed'")
            try await backend.execute(f.storage, "UPDATE vaults SET name = 'renamed', description = 'edited'")
            try await backend.execute(f.storage, "UPDATE users SET display_name = 'Renamed'")
            for table in GrantSeal.tables.map(\.name) { try await readGrant(table, f, g) }
            #expect(try await f.storage.agent(id: g.agent.id)?.name == "renamed")
            #expect(try await f.storage.vault(id: f.vault.id)?.name == "renamed")
        }
    }

    /// A row copied under a new id (carrying a valid seal of another row) grants nothing.
    @Test(arguments: Backend.enabled)
    func aGrantInsertedWithSQLGrantsNothing(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let g = try await plantGrants(f)
            let columns = """
                vault_id, pattern, principal_type, principal_id, permissions, conditions, expires_at, effect, priority,
                created_by, created_by_type, created_at, seal
                """
            let id = backend == .postgres ? "'\(UUID().wire)'::uuid" : "'\(UUID().wire)'"
            try await backend.execute(f.storage, "INSERT INTO policies (id, \(columns)) SELECT \(id), \(columns) FROM policies")
            await #expect(throws: StoredDataError(table: "policies", column: "seal", problem: "does not verify")) {
                _ = try await f.storage.policies(principalKind: .agent, principalID: g.agent.id)
            }
        }
    }

    /// Rows stored before seals existed are sealed once, by the first start-up that has the key; a row without a
    /// seal found after that was planted, and stays refused across restarts.
    @Test(arguments: Backend.enabled)
    func rowsStoredBeforeSealsAreSealedOnce(_ backend: Backend) async throws {
        let seal = GrantSeal(key: SymmetricKey(size: .bits256))
        try await withFixture(backend, seal: seal) { (f: Fixture) async throws in
            let g = try await plantGrants(f)
            // The state right after the migration that added seals: no row has one, and sealing has not run.
            for table in GrantSeal.tables.map(\.name) {
                try await backend.execute(f.storage, "UPDATE \(table) SET seal = NULL")
            }
            try await backend.execute(f.storage, "DELETE FROM grant_seals")
            await #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "missing")) {
                _ = try await f.storage.agent(id: g.agent.id)
            }
            try await f.storage.sealGrants(with: seal)
            for table in GrantSeal.tables.map(\.name) { try await readGrant(table, f, g) }
            #expect(try await f.storage.agent(id: g.agent.id) == g.agent)

            try await backend.execute(f.storage, "UPDATE agents SET seal = NULL")
            try await f.storage.sealGrants(with: seal)
            await #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "missing")) {
                _ = try await f.storage.agent(id: g.agent.id)
            }
        }
    }

    /// A store whose seal key was never installed refuses every sealed row.
    @Test(arguments: Backend.enabled)
    func withoutTheSealKeyNoGrantIsRead(_ backend: Backend) async throws {
        let (storage, cleanup) = try await backend.openUnsealed()
        await #expect(throws: StoredDataError(table: "system_values", column: "grant-seal-key", problem: "not loaded")) {
                let org = Org(id: UUID(), name: "o", createdAt: .now)
                try await storage.createOrg(
                    org,
                    owner: User(
                        id: UUID(), orgID: org.id, email: "o@example.com", passwordHash: "$2b$o", displayName: nil,
                        role: .owner, createdAt: .now),
                    audit: testAudit)
        }
        await cleanup()
    }
}

/// Versioned seals: a column that joins the seal of a table (`GrantSeal.Table.since`) raises `GrantSeal.version`;
/// the first start-up of the newer build re-seals the rows sealed under the older column list, but only those whose
/// old seal verifies. Each case seals its rows with a `GrantSeal` standing for the version-1 build (same key).
extension StorageConformanceTests {
    /// An agent as the version-1 build stored it: the columns migrations 12, 17 and 18 added hold their defaults.
    func versionOneAgent(_ f: Fixture) -> Agent {
        var bot = agent(f, prefix: "ocv_\(UUID().uuidString.prefix(8))")
        bot.environment = nil
        bot.environmentLocked = false
        bot.envAutoResolve = true
        bot.apiKeyExpiresAt = nil
        bot.intentsAPIEnabled = false
        bot.sshPublicKey = nil
        bot.ecdhPublicKey = nil
        bot.identityKeysCreatedAt = nil
        bot.identityKeyHistory = []
        return bot
    }

    @Test(arguments: Backend.enabled)
    func rowsSealedUnderAnOlderVersionAreResealed(_ backend: Backend) async throws {
        let key = SymmetricKey(size: .bits256)
        try await withFixture(backend, seal: GrantSeal(key: key, version: 1)) { (f: Fixture) async throws in
            let g = try await plantGrants(f)
            let bot = versionOneAgent(f)
            try await f.storage.createAgent(bot, audit: testAudit)
            // A database from before seal versions: the marker's version is NULL, which reads as 1.
            try await backend.execute(f.storage, "UPDATE grant_seals SET version = NULL")
            // Under version 2 the agents' column list is longer, so a version-1 seal no longer verifies as it is.
            #expect(GrantSeal.table("agents").columns(at: 1) != GrantSeal.table("agents").columns(at: 2))

            try await f.storage.sealGrants(with: GrantSeal(key: key))
            #expect(try await f.storage.agent(id: bot.id) == bot)
            #expect(try await f.storage.agent(id: g.agent.id) == g.agent)
            for table in GrantSeal.tables.map(\.name) { try await readGrant(table, f, g) }
            // The new seal covers the new columns: editing one with SQL is refused.
            try await backend.execute(f.storage, "UPDATE agents SET environment = 'production' WHERE key_prefix = '\(bot.keyPrefix)'")
            await #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "does not verify")) {
                _ = try await f.storage.agent(id: bot.id)
            }
            // The new version is recorded: the version-1 build now refuses to start, and a restart of this one
            // re-seals nothing (the edited row stays refused).
            await #expect(throws: StoredDataError.self) { try await f.storage.sealGrants(with: GrantSeal(key: key, version: 1)) }
            try await f.storage.sealGrants(with: GrantSeal(key: key))
            await #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "does not verify")) {
                _ = try await f.storage.agent(id: bot.id)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func aRowTamperedBeforeTheUpgradeStaysRefused(_ backend: Backend) async throws {
        let key = SymmetricKey(size: .bits256)
        try await withFixture(backend, seal: GrantSeal(key: key, version: 1)) { (f: Fixture) async throws in
            let (tampered, unsealed, intact) = (versionOneAgent(f), versionOneAgent(f), versionOneAgent(f))
            for bot in [tampered, unsealed, intact] { try await f.storage.createAgent(bot, audit: testAudit) }
            try await backend.execute(f.storage, "UPDATE agents SET vault_ids = '[]' WHERE key_prefix = '\(tampered.keyPrefix)'")
            try await backend.execute(f.storage, "UPDATE agents SET seal = NULL WHERE key_prefix = '\(unsealed.keyPrefix)'")

            try await f.storage.sealGrants(with: GrantSeal(key: key))
            #expect(try await f.storage.agent(id: intact.id) == intact)
            await #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "does not verify")) {
                _ = try await f.storage.agent(id: tampered.id)
            }
            await #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "missing")) {
                _ = try await f.storage.agent(id: unsealed.id)
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func aNewerSealVersionRefusesStartUp(_ backend: Backend) async throws {
        let key = SymmetricKey(size: .bits256)
        try await withFixture(backend, seal: GrantSeal(key: key)) { (f: Fixture) async throws in
            let bot = versionOneAgent(f)
            try await f.storage.createAgent(bot, audit: testAudit)
            try await backend.execute(f.storage, "UPDATE grant_seals SET version = \(GrantSeal.version + 1)")
            let refused = StoredDataError(
                table: "grant_seals", column: "version",
                problem: "sealed by a newer Keyhold (seal version \(GrantSeal.version + 1); this one knows up to \(GrantSeal.version))")
            await #expect(throws: refused) { try await f.storage.sealGrants(with: GrantSeal(key: key)) }
            // The same from a fresh start (a restarted server), and an older build refuses too.
            try await f.storage.close()
            let restarted = try await backend.reopen(f.storage)
            await #expect(throws: refused) { try await restarted.sealGrants(with: GrantSeal(key: key)) }
            await #expect(throws: StoredDataError(table: "system_values", column: "grant-seal-key", problem: "not loaded")) {
                _ = try await restarted.agent(id: bot.id)
            }
            await #expect(throws: StoredDataError.self) { try await restarted.sealGrants(with: GrantSeal(key: key, version: 1)) }
            try await restarted.close()
        }
    }
}

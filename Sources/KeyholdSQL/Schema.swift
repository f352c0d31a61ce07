import Foundation

/// The schema's history from the version where both backends hold the same tables (7) on: each migration is
/// written once and applied by both, version for version. A migration names column types by their meaning and each
/// backend spells them (`SchemaType`). Before 7, each backend kept its own history (SQLite 1–7; PostgreSQL 1–3,
/// then 4–7 empty, as its first migrations already made what SQLite's 2–7 made).
public enum Schema {
    public static let sharedFrom = 8

    /// The tables authorization's lookups read (`AuthorizationCache.rows`): a change to any of them moves PostgreSQL's
    /// `authorization_epoch`.
    public static let authorizationTables = ["users", "agents", "revoked_tokens", "vaults", "policies", "ip_rules"]

    /// Migrations 8, 9, …: append, never edit.
    public static let migrations: [String] = [
        // The indexes PostgreSQL's first migration made and SQLite's did not: members by org, the users of a key,
        // revoked tokens by expiry (the purge), shares by vault.
        """
        CREATE INDEX IF NOT EXISTS users_org ON users(org_id, created_at);
        CREATE INDEX IF NOT EXISTS vaults_kek ON vaults(kek_id);
        CREATE INDEX IF NOT EXISTS keks_vault ON keks(vault_id);
        CREATE INDEX IF NOT EXISTS secret_versions_kek ON secret_versions(kek_id);
        CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens(expires_at);
        CREATE INDEX IF NOT EXISTS shares_vault ON shares(vault_id)
        """,
        // Sealed grants (`GrantSeal`): the rows that exist are sealed by the start-up that applies this, once the
        // keystore has unsealed the seal key (`Storage.sealGrants`).
        """
        ALTER TABLE users ADD COLUMN seal {blob};
        ALTER TABLE agents ADD COLUMN seal {blob};
        ALTER TABLE user_api_keys ADD COLUMN seal {blob};
        ALTER TABLE refresh_tokens ADD COLUMN seal {blob};
        ALTER TABLE invites ADD COLUMN seal {blob};
        ALTER TABLE policies ADD COLUMN seal {blob};
        ALTER TABLE shares ADD COLUMN seal {blob};
        ALTER TABLE vaults ADD COLUMN seal {blob};
        CREATE TABLE grant_seals (sealed_at {int} NOT NULL)
        """,
        // Org IP rules (`IPRule`), read on every authenticated request and token exchange of the org through the
        // index; sealed (`GrantSeal`: id, org_id, rule_type, cidr, applies_to).
        """
        CREATE TABLE ip_rules (
            id {uuid} PRIMARY KEY, org_id {uuid} NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
            rule_type TEXT NOT NULL, cidr TEXT NOT NULL, label TEXT, applies_to TEXT NOT NULL,
            created_by {uuid} NOT NULL, created_at {int} NOT NULL, seal {blob});
        CREATE INDEX ip_rules_org ON ip_rules(org_id, created_at)
        """,
        // TOTP MFA (issue 17): one enrolment per user, a sealed row (`GrantSeal`, table `user_mfa`). `secret` is the
        // TOTP secret sealed by the keystore; `enabled_at` NULL while the setup waits for its first code; `last_step`
        // the last time step accepted (replay refused); `recovery_digests` the unspent recovery codes' keyed digests,
        // 32 bytes each. It goes with its user.
        """
        CREATE TABLE user_mfa (
            user_id {uuid} PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE, org_id {uuid} NOT NULL,
            secret {blob} NOT NULL, enabled_at {int}, last_step {int}, recovery_digests {blob} NOT NULL,
            created_at {int} NOT NULL, seal {blob})
        """,
        // Agents' environment tag and key expiry (issue 17), sealed from seal version 2 on: `grant_seals.version`
        // records the version the rows were sealed under (NULL: 1), and the start-up that meets an older one
        // re-seals the rows that verify under their old column list (`Storage.sealGrants`).
        """
        ALTER TABLE grant_seals ADD COLUMN version {int};
        ALTER TABLE agents ADD COLUMN environment TEXT;
        ALTER TABLE agents ADD COLUMN environment_locked {bool} NOT NULL DEFAULT FALSE;
        ALTER TABLE agents ADD COLUMN env_auto_resolve {bool} NOT NULL DEFAULT TRUE;
        ALTER TABLE agents ADD COLUMN api_key_expires_at {int}
        """,
        // Environment variables (issue 17, contract §1.5). A vault's custom environments (the built-in production,
        // preview and development are not stored); its variables, each value sealed under a data key wrapped by the
        // vault's KEK (`kek_id`, rewrapped on rotation like a secret version's); an org's shared variables, their
        // data keys wrapped by the server's shared-variable key; the links that make a shared variable apply in a
        // vault. `environments` is a sorted JSON list of slugs. Sealed (`GrantSeal`): env_vars, org_env_vars,
        // org_env_var_links.
        """
        CREATE TABLE vault_environments (
            id {uuid} PRIMARY KEY, vault_id {uuid} NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            slug TEXT NOT NULL, description TEXT, copied_from TEXT, created_by {uuid} NOT NULL,
            created_at {int} NOT NULL, UNIQUE (vault_id, slug));
        CREATE TABLE env_vars (
            id {uuid} PRIMARY KEY, vault_id {uuid} NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            key {path} NOT NULL, environments TEXT NOT NULL, git_branch TEXT, sensitive {bool} NOT NULL, comment TEXT,
            version {int} NOT NULL, kek_id TEXT NOT NULL, wrapped_dek {blob} NOT NULL, ciphertext {blob} NOT NULL,
            created_by {uuid} NOT NULL, created_at {int} NOT NULL, updated_at {int} NOT NULL, seal {blob});
        CREATE INDEX env_vars_vault ON env_vars(vault_id, key);
        CREATE INDEX env_vars_kek ON env_vars(kek_id);
        CREATE TABLE org_env_vars (
            id {uuid} PRIMARY KEY, org_id {uuid} NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
            key {path} NOT NULL, environments TEXT NOT NULL, sensitive {bool} NOT NULL, comment TEXT,
            version {int} NOT NULL, wrapped_dek {blob} NOT NULL, ciphertext {blob} NOT NULL,
            created_by {uuid} NOT NULL, created_at {int} NOT NULL, updated_at {int} NOT NULL, seal {blob},
            UNIQUE (org_id, key));
        CREATE TABLE org_env_var_links (
            id {uuid} PRIMARY KEY, env_var_id {uuid} NOT NULL REFERENCES org_env_vars(id) ON DELETE CASCADE,
            vault_id {uuid} NOT NULL REFERENCES vaults(id) ON DELETE CASCADE, org_id {uuid} NOT NULL, seal {blob},
            UNIQUE (env_var_id, vault_id));
        CREATE INDEX org_env_var_links_vault ON org_env_var_links(vault_id);
        CREATE INDEX org_env_var_links_org ON org_env_var_links(org_id)
        """,
        // Customer-managed keys (issue 18, contract §1.2): a vault's CMEK fingerprint (NULL: off), sealed from seal
        // version 3 on (`GrantSeal`, table `vaults`); the fingerprint of the key each version's value is encrypted
        // with (NULL: not a CMEK value); rotation jobs, progress only (the keys are never stored).
        """
        ALTER TABLE vaults ADD COLUMN cmek_fingerprint TEXT;
        ALTER TABLE secret_versions ADD COLUMN cmek_fingerprint TEXT;
        CREATE INDEX secret_versions_cmek ON secret_versions(cmek_fingerprint) WHERE cmek_fingerprint IS NOT NULL;
        CREATE TABLE cmek_rotation_jobs (
            id {uuid} PRIMARY KEY, vault_id {uuid} NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
            org_id {uuid} NOT NULL, old_fingerprint TEXT NOT NULL, new_fingerprint TEXT NOT NULL, status TEXT NOT NULL,
            total_secrets {int} NOT NULL, processed {int} NOT NULL, error TEXT, started_at {int}, completed_at {int},
            created_by {uuid} NOT NULL, created_at {int} NOT NULL);
        CREATE INDEX cmek_rotation_jobs_vault ON cmek_rotation_jobs(vault_id, created_at)
        """,
        // Approvals (issue 18, contract §1.12): requests for a person's approval and, once approved, the lease they
        // grant (`uses_left` reads until `lease_expires_at`). Sealed (`GrantSeal`, table `approvals`). At most one
        // pending read request per requester, vault and path; a request goes with its vault.
        """
        CREATE TABLE approvals (
            id {uuid} PRIMARY KEY, org_id {uuid} NOT NULL REFERENCES orgs(id) ON DELETE CASCADE, user_id {uuid},
            requester_type TEXT NOT NULL, requester_id {uuid} NOT NULL, action TEXT NOT NULL, target_type TEXT NOT NULL,
            target_id TEXT NOT NULL, vault_id {uuid} REFERENCES vaults(id) ON DELETE CASCADE, risk_tier {int} NOT NULL,
            status TEXT NOT NULL, summary TEXT NOT NULL, reason TEXT, payload TEXT, decision_reason TEXT,
            decided_by {uuid}, decided_at {int}, expires_at {int} NOT NULL, ttl_seconds {int} NOT NULL,
            max_uses {int} NOT NULL, uses_left {int} NOT NULL, lease_expires_at {int}, created_at {int} NOT NULL,
            seal {blob});
        CREATE INDEX approvals_org ON approvals(org_id, created_at);
        CREATE INDEX approvals_requester ON approvals(requester_id, vault_id, target_id);
        CREATE INDEX approvals_open ON approvals(status, expires_at);
        CREATE UNIQUE INDEX approvals_pending ON approvals(requester_id, target_id, vault_id)
            WHERE status = 'pending' AND action = 'secret_read'
        """,
        // Webhooks (issue 18, contract §1.11): the webhook (its signing secret sealed under the server's webhook key,
        // bound to its id), the events it subscribes to (one row each, `*` alone for all; what the outbox insert joins
        // on), and the outbox: one delivery per audit event and webhook, written in the change's transaction.
        // `locked_until` is a claimer's lease; `failing_since` the first failure since the webhook's last success.
        """
        CREATE TABLE webhooks (
            id {uuid} PRIMARY KEY, org_id {uuid} NOT NULL REFERENCES orgs(id) ON DELETE CASCADE, url TEXT NOT NULL,
            events TEXT NOT NULL, description TEXT, is_active {bool} NOT NULL, secret {blob} NOT NULL,
            created_by {uuid} NOT NULL, created_at {int} NOT NULL, updated_at {int} NOT NULL, failing_since {int},
            last_success_at {int});
        CREATE INDEX webhooks_org ON webhooks(org_id, created_at);
        CREATE TABLE webhook_events (
            org_id {uuid} NOT NULL, event TEXT NOT NULL,
            webhook_id {uuid} NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
            PRIMARY KEY (org_id, event, webhook_id));
        CREATE INDEX webhook_events_webhook ON webhook_events(webhook_id);
        CREATE TABLE webhook_deliveries (
            webhook_id {uuid} NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE, event_id {uuid} NOT NULL,
            org_id {uuid} NOT NULL, event TEXT NOT NULL, status TEXT NOT NULL, attempts {int} NOT NULL,
            next_attempt_at {int} NOT NULL, locked_until {int}, first_attempt_at {int}, last_status_code {int},
            last_error TEXT, created_at {int} NOT NULL, delivered_at {int},
            PRIMARY KEY (webhook_id, event_id));
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_recent ON webhook_deliveries(webhook_id, created_at)
        """,
        // Agents' intents mode (issue 19, contract §2.4): an agent with it on may not read `private_key` or
        // `ssh_key` values. Sealed from seal version 4 on (`GrantSeal`, table `agents`).
        """
        ALTER TABLE agents ADD COLUMN intents_api_enabled {bool} NOT NULL DEFAULT FALSE
        """,
        // Agents' identity keys (issue 19, contract §1.6): the public halves (OpenSSH `ssh-ed25519 …`, base64 of the
        // uncompressed P-256 point; NULL for agents made before, until a rotation), when they were made, and the
        // public keys of earlier rotations (a JSON list). The private halves are secrets of the org's
        // `__agent-keys` vault. Sealed from seal version 5 on (`GrantSeal`, table `agents`).
        """
        ALTER TABLE agents ADD COLUMN ssh_public_key TEXT;
        ALTER TABLE agents ADD COLUMN ecdh_public_key TEXT;
        ALTER TABLE agents ADD COLUMN identity_keys_created_at {int};
        ALTER TABLE agents ADD COLUMN identity_key_history TEXT NOT NULL DEFAULT '[]'
        """,
        // Authorization's epoch (issue 22): one value that changes in the same transaction as any change to a table
        // an authorization lookup reads (`authorizationTables`), so that a node may keep those lookups in
        // memory and learn with one small read per request whether they still hold. PostgreSQL moves it with
        // triggers (`{authorization_triggers}`, which also fire for an edit made with psql); SQLite, whose every
        // change passes through one process, watches its writer's statements instead and spells the hook as nothing.
        """
        CREATE TABLE authorization_epoch (id {int} PRIMARY KEY, epoch {int} NOT NULL);
        INSERT INTO authorization_epoch (id, epoch) VALUES (1, 0);
        {authorization_triggers}
        """,
        // Capability leases (issue 23): a secret's use by one principal against one destination, without the value
        // leaving the server (`CapabilityLease`). Sealed (`GrantSeal`, table `capability_leases`). `methods` is a
        // sorted JSON list, `injection` a JSON object, `caveat_uses` a JSON object of the uses counted under each
        // `uses<=N` caveat, by counter key. A lease goes with its vault; the root key of its tokens is derived from a
        // server key the keystore seals, so no row holds it.
        """
        CREATE TABLE capability_leases (
            id {uuid} PRIMARY KEY, org_id {uuid} NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
            vault_id {uuid} NOT NULL REFERENCES vaults(id) ON DELETE CASCADE, path {path} NOT NULL,
            principal_type TEXT NOT NULL, principal_id {uuid} NOT NULL, scheme TEXT NOT NULL, host TEXT NOT NULL,
            port {int}, methods TEXT NOT NULL, path_prefix TEXT NOT NULL, injection TEXT NOT NULL, max_uses {int},
            uses {int} NOT NULL, caveat_uses TEXT NOT NULL, expires_at {int} NOT NULL, revoked_at {int},
            description TEXT, created_by {uuid} NOT NULL, created_by_type TEXT NOT NULL, created_at {int} NOT NULL,
            seal {blob});
        CREATE INDEX capability_leases_vault ON capability_leases(vault_id, created_at)
        """,
    ]

    /// A migration in a backend's spelling: its column types, and its SQL for the `{authorization_triggers}` hook.
    public static func migration(_ text: String, types: [SchemaType: String], authorizationTriggers: String) -> String {
        types.reduce(text) { $0.replacingOccurrences(of: "{\($1.key.rawValue)}", with: $1.value) }
            .replacingOccurrences(of: "{authorization_triggers}", with: authorizationTriggers)
    }
}

/// Column types by meaning, written `{uuid}` etc. in a shared migration.
public enum SchemaType: String, CaseIterable, Sendable {
    /// An id.
    case uuid
    /// An instant in milliseconds, a count or a number.
    case int
    /// A flag.
    case bool
    /// Bytes.
    case blob
    /// Text compared and sorted bytewise (paths, key ids).
    case path
}

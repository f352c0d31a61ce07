import Foundation

/// Failures a storage adapter reports; services turn them into `KeyholdError`s.
public enum StorageError: Error, Sendable, Equatable {
    /// A uniqueness constraint refused the write (e.g. an email already registered).
    case conflict
    /// The change would leave an org without an owner.
    case lastOwner
    /// The backend failed (I/O, connection); the message is for logs only.
    case backend(String)
}

public protocol IdentityStore: Sendable {
    /// Creates an org and its first user, the owner, atomically. Throws `StorageError.conflict` for a taken email.
    func createOrg(_ org: Org, owner: User, audit: AuditRecord) async throws
    func user(email: String) async throws -> User?
    func user(id: UUID) async throws -> User?
    func users(orgID: UUID) async throws -> [User]
    /// Changes a member's role unless that would leave the org without an owner. `false` when no such member.
    func updateRole(userID: UUID, orgID: UUID, role: OrgRole, audit: AuditRecord) async throws -> Bool
    /// Removes a member (and their keys and policies) unless they are the org's last owner.
    func removeUser(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool
    /// The caller's own profile: a new display name (`.some(nil)` clears it) and, with `passwordHash`, a new
    /// password, which ends every refresh family of the user except `keepingFamily` in the same transaction.
    /// Returns the updated user; nil when there is no such user.
    func updateProfile(
        userID: UUID, orgID: UUID, displayName: String??, passwordHash: String?, keepingFamily: UUID?, audit: AuditRecord
    ) async throws -> User?

    func createInvite(_ invite: Invite, audit: AuditRecord) async throws
    /// The invite with this digest, spent or not.
    func invite(digest: Data) async throws -> Invite?
    /// Redeems an unexpired invite for `user.email` and creates the user in the invite's org with its role, in
    /// one transaction. Returns the created user, or nil when no such invite is valid.
    func redeemInvite(digest: Data, user: User, now: Timestamp, audit: AuditRecord) async throws -> User?
}

public protocol AgentStore: Sendable {
    func createAgent(_ agent: Agent, audit: AuditRecord) async throws
    func agent(id: UUID) async throws -> Agent?
    func agents(orgID: UUID) async throws -> [Agent]
    func agents(keyPrefix: String) async throws -> [Agent]
    /// Saves every field of an existing agent; `false` when it does not exist.
    func updateAgent(_ agent: Agent, audit: AuditRecord) async throws -> Bool
    /// Deletes the agent and its policies.
    func deleteAgent(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool
}

public protocol CredentialStore: Sendable {
    func createAPIKey(_ key: UserAPIKey, audit: AuditRecord) async throws
    func apiKeys(userID: UUID) async throws -> [UserAPIKey]
    func apiKeys(keyPrefix: String) async throws -> [UserAPIKey]
    func apiKey(id: UUID) async throws -> UserAPIKey?
    /// Deactivates a key; `false` when the user has no such active key.
    func deactivateAPIKey(id: UUID, userID: UUID, audit: AuditRecord) async throws -> Bool

    func createRefreshToken(_ token: RefreshTokenRecord, audit: AuditRecord) async throws
    /// Spends a refresh token: returns it if it was unspent and unexpired. Presenting a spent token revokes its
    /// whole family and returns nil.
    func spendRefreshToken(digest: Data, now: Timestamp) async throws -> RefreshTokenRecord?

    /// Records an access token id as revoked until it would have expired anyway and, with `refreshFamily`,
    /// deletes every refresh token of that family, in one transaction.
    func revokeToken(id: String, expiresAt: Timestamp, refreshFamily: UUID?, audit: AuditRecord) async throws
    func isTokenRevoked(id: String) async throws -> Bool
    /// The user or agent an access token names, unless the token is revoked: one round trip for the checks every
    /// authenticated request makes. Nil when revoked or missing.
    func tokenSubject(kind: PrincipalKind, id: UUID, tokenID: String) async throws -> TokenSubject?
}

/// Who an access token names, as storage holds them now.
public enum TokenSubject: Sendable {
    case user(User)
    case agent(Agent)
}

public protocol PolicyStore: Sendable {
    func createPolicy(_ policy: Policy, audit: AuditRecord) async throws
    func policy(id: UUID, vaultID: UUID) async throws -> Policy?
    func policies(vaultID: UUID) async throws -> [Policy]
    /// Every policy naming this principal, on any vault.
    func policies(principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy]
    func policies(vaultID: UUID, principalKind: PrincipalKind, principalID: UUID) async throws -> [Policy]
    func updatePolicy(_ policy: Policy, audit: AuditRecord) async throws -> Bool
    func deletePolicy(id: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool
}

public protocol VaultStore: Sendable {
    func createVault(_ vault: Vault, kek: KEKHandle, audit: AuditRecord) async throws
    /// The vault when it exists in this org; another org's vault is `nil`, exactly as a missing one.
    func vault(id: UUID, orgID: UUID) async throws -> Vault?
    /// Any vault by id, for operator commands that act outside any org.
    func vault(id: UUID) async throws -> Vault?
    /// The vault in this org and the principal's policies on it, in one round trip.
    func vaultAndPolicies(id: UUID, orgID: UUID, principalKind: PrincipalKind, principalID: UUID) async throws
        -> (Vault, [Policy])?
    func vaults(orgID: UUID) async throws -> [Vault]
    /// Deletes the vault, its secrets and its keys (crypto-shredding). `false` when there was no such vault.
    func deleteVault(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool
    func kek(id: String) async throws -> KEKHandle?
}

public protocol SecretStore: Sendable {
    /// Writes the next version of a path in one transaction: the database assigns the number (1, 2, 3 …, no gaps,
    /// no duplicates under concurrency) and `seal` produces the ciphertext bound to it. A missing `type` keeps
    /// the previous version's type, or `generic`. A path whose secret was deleted starts again as a new secret (a
    /// new id, version 1), so nothing that named the deleted one (a share) reaches the new one.
    func writeVersion(
        _ version: NewSecretVersion, audit: AuditRecord, seal: @escaping @Sendable (_ version: Int) throws -> Data
    ) async throws -> SecretVersionInfo

    /// Reads the latest version (or the given one) for its value: checks that it can be read and counts the
    /// access in the same transaction. Throws `KeyholdError` 404 when missing and 410 when gone.
    /// With `lease`, the read also spends one use of the requester's approved lease on that vault and path, in the
    /// same transaction, recording `lease`'s audit event: the read fails with `KeyholdError.noLease` (nothing
    /// changes) when there is no unspent, unexpired one, and a read that fails otherwise spends none.
    /// A version whose type is in `refusing` (`Principal.refusedSecretTypes`) is refused with
    /// `KeyholdError.typeRefused` in the transaction, before anything is counted or spent.
    func readVersion(
        vaultID: UUID, path: String, version: Int?, now: Timestamp, audit: AuditRecord,
        lease: (claim: LeaseClaim, audit: @Sendable (Approval) -> AuditRecord)?, refusing: Set<SecretType>
    ) async throws -> SealedSecretVersion

    /// Metadata of the latest version of live paths under `prefix`, in byte order of path, after the path `after`,
    /// at most `limit` of them: keyset pagination, so a page costs the same whatever the vault's size.
    func latestVersions(vaultID: UUID, prefix: String?, after: String?, limit: Int) async throws -> [SecretVersionInfo]
    /// Metadata of every version of a path; empty when the path was never written.
    func versions(vaultID: UUID, path: String) async throws -> [SecretVersionInfo]
    /// `false` when the version does not exist.
    func disableVersion(vaultID: UUID, path: String, version: Int, audit: AuditRecord) async throws -> Bool
    /// Soft-deletes all versions of a live path and revokes the secret's shares. `false` when there is no live
    /// secret at the path.
    func deleteSecret(vaultID: UUID, path: String, at: Timestamp, audit: AuditRecord) async throws -> Bool
}

extension SecretStore {
    public func readVersion(vaultID: UUID, path: String, version: Int?, now: Timestamp, audit: AuditRecord) async throws
        -> SealedSecretVersion
    {
        try await readVersion(
            vaultID: vaultID, path: path, version: version, now: now, audit: audit, lease: nil, refusing: [])
    }
}

/// Approval requests and their leases (`Approval`). Every rule that changes a request locks its row, checks its
/// seal and re-seals it in the transaction that records the change's audit event.
public protocol ApprovalStore: Sendable {
    /// Stores `approval` (pending). A gated read's request (`secret_read`) is not stored when its requester already
    /// has a pending, unexpired one for that vault and path: that one is returned (`created` false) and nothing is
    /// recorded; a pending one past its expiry is marked expired first (`expired`'s event).
    /// A requester with `maxPending` pending requests already gets 429 instead (one requester's requests are stored
    /// one at a time, on every node).
    func requestApproval(
        _ approval: Approval, maxPending: Int, audit: AuditRecord, expired: @escaping @Sendable (Approval) -> AuditRecord
    ) async throws -> (approval: Approval, created: Bool)
    /// The request, in `orgID` when given.
    func approval(id: UUID, orgID: UUID?) async throws -> Approval?
    /// Newest first. `requesterID` or `userID` narrow it; `status` is matched as of `now` (a pending request past
    /// its expiry counts as expired).
    func approvals(
        orgID: UUID, status: ApprovalStatus?, requesterID: UUID?, userID: UUID?, now: Timestamp, limit: Int,
        offset: Int
    ) async throws -> [Approval]
    /// Moves a pending, unexpired request to `status` (approved: with its lease from `now`; rejected; cancelled),
    /// creating `policy` in the same transaction when given (an approved policy change). With `revokingLease`, an
    /// approved request whose lease has uses left is cancelled instead, its uses gone. Returns the request as it ends
    /// up and whether this call changed it (false: nothing changed); nil when there is no such request.
    func decideApproval(
        id: UUID, orgID: UUID, status: ApprovalStatus, by decider: UUID?, reason: String?, now: Timestamp,
        policy: (Policy, AuditRecord)?, revokingLease: Bool, audit: @escaping @Sendable (Approval) -> AuditRecord
    ) async throws -> (approval: Approval, changed: Bool)?
    /// Marks pending requests past their expiry expired, and ends leases past theirs (no uses left), at most
    /// `limit` of them, each with its audit event; returns how many. Rows another node is sweeping are skipped.
    func expireApprovals(now: Timestamp, limit: Int, audit: @escaping @Sendable (Approval, _ lease: Bool) -> AuditRecord)
        async throws -> Int
}

/// How much is stored, for metrics: counts only, never a name.
public struct StorageStatistics: Sendable, Hashable {
    public let orgs: Int
    public let vaults: Int
    public let secrets: Int
    public let secretVersions: Int
    public let auditEvents: Int

    public init(orgs: Int, vaults: Int, secrets: Int, secretVersions: Int, auditEvents: Int) {
        self.orgs = orgs
        self.vaults = vaults
        self.secrets = secrets
        self.secretVersions = secretVersions
        self.auditEvents = auditEvents
    }
}

/// See `SystemStore.inventory()`.
public struct StorageInventory: Sendable {
    /// How many events an org's chain holds, and its highest sequence.
    public struct ChainExtent: Sendable, Hashable {
        public let events: Int
        public let lastSequence: Int64

        public init(events: Int, lastSequence: Int64) {
            self.events = events
            self.lastSequence = lastSequence
        }
    }

    /// A KEK and one data key it wraps (nil when it wraps none yet).
    public struct KeySample: Sendable {
        public let kek: KEKHandle
        public let wrappedDataKey: Data?

        public init(kek: KEKHandle, wrappedDataKey: Data?) {
            self.kek = kek
            self.wrappedDataKey = wrappedDataKey
        }
    }

    public let schemaVersion: Int
    public let statistics: StorageStatistics
    public let auditHeads: [UUID: AuditHead]
    public let auditChains: [UUID: ChainExtent]
    public let keys: [KeySample]
    public let systemValues: [String: Data]

    public init(
        schemaVersion: Int, statistics: StorageStatistics, auditHeads: [UUID: AuditHead], auditChains: [UUID: ChainExtent],
        keys: [KeySample], systemValues: [String: Data]
    ) {
        self.schemaVersion = schemaVersion
        self.statistics = statistics
        self.auditHeads = auditHeads
        self.auditChains = auditChains
        self.keys = keys
        self.systemValues = systemValues
    }
}

/// Small named values the server keeps for itself (sealed signing keys, schema facts).
public protocol SystemStore: Sendable {
    /// Counts of what is stored (one read; for `/metrics`).
    func statistics() async throws -> StorageStatistics
    /// The schema version, every audit chain's head and extent, every KEK with a data key it wraps, and the sealed
    /// server values: what `StoreVerification` checks a backup or a restored database against.
    func inventory() async throws -> StorageInventory
    func systemValue(_ key: String) async throws -> Data?
    /// Stores the value unless the key exists; returns what is stored afterwards (so concurrent starters agree).
    func insertSystemValueIfAbsent(_ key: String, _ value: Data) async throws -> Data
}

/// The audit log. Every mutating method above takes an `AuditRecord` and appends its event in the same
/// transaction as the change (reads: in the transaction that counts the access), so a change without its event,
/// or an event without its change, cannot be committed. When the event cannot be written the method throws
/// `KeyholdError` 503 and nothing changes.
public protocol AuditStore: Sendable {
    /// Appends an event that records no change (a denied request, a failed login).
    func appendAudit(_ record: AuditRecord) async throws
    func auditEvents(orgID: UUID, filter: AuditFilter) async throws -> [AuditEvent]
    /// Events in sequence order after `afterSequence`, for verification in pages.
    func auditChain(orgID: UUID, afterSequence: Int64, limit: Int) async throws -> [AuditEvent]
    func auditHead(orgID: UUID) async throws -> AuditHead?
}

public protocol ShareStore: Sendable {
    /// A live (not deleted) secret with this id.
    func secretLocation(id: UUID) async throws -> SecretLocation?
    func createShare(_ share: Share, audit: AuditRecord) async throws
    func share(id: UUID) async throws -> Share?
    func share(reference: UUID) async throws -> Share?
    func outboundShares(creatorType: PrincipalKind, creatorID: UUID) async throws -> [Share]
    /// Every share of an org, newest first.
    func orgShares(orgID: UUID) async throws -> [Share]
    /// Shares targeted at this principal (by id, or by email for `external_email`).
    func inboundShares(recipientID: UUID, email: String?) async throws -> [Share]
    /// Revokes a share; `false` when there is no such live share. Who may is the service's decision.
    func revokeShare(id: UUID, audit: AuditRecord) async throws -> Bool
    /// Records the recipient's answer and, with `recipientID`, binds the share to that recipient and spends its
    /// claim token; `false` when the share is missing, revoked or already answered.
    func answerShare(id: UUID, status: ShareStatus, recipientID: UUID?, audit: AuditRecord) async throws -> Bool
    /// In one transaction: checks that the share is live (404 revoked or missing, 410 expired, declined or
    /// exhausted), counts the access exactly, reads the version the share pins (or the latest, for a share that
    /// follows it) for its value, counting that read too, and appends the audit event. A version whose type is in
    /// `refusing` is refused with `KeyholdError.typeRefused`, nothing counted.
    func accessShare(id: UUID, now: Timestamp, audit: AuditRecord, refusing: Set<SecretType>) async throws
        -> (Share, SealedSecretVersion)
}

extension ShareStore {
    public func accessShare(id: UUID, now: Timestamp, audit: AuditRecord) async throws -> (Share, SealedSecretVersion) {
        try await accessShare(id: id, now: now, audit: audit, refusing: [])
    }
}

/// An org's IP rules (`IPRule`): rows that limit access, so they are sealed (`GrantSeal`) and decoded strictly. A row
/// that does not decode or verify makes `ipRules(orgID:)` throw, and every request of that org is refused (503), never
/// served as if the rule were absent.
public protocol IPRuleStore: Sendable {
    func createIPRule(_ rule: IPRule, audit: AuditRecord) async throws
    /// Every rule of the org, oldest first (read on every authenticated request and token exchange of the org).
    func ipRules(orgID: UUID) async throws -> [IPRule]
    /// `false` when the org has no such rule.
    func deleteIPRule(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool
}

/// TOTP enrolments (`MFAEnrollment`). A step or recovery code is accepted in the transaction that records it, with
/// the row locked, so of two concurrent uses of one code only one succeeds.
public protocol MFAStore: Sendable {
    func mfaEnrollment(userID: UUID) async throws -> MFAEnrollment?
    /// Stores a pending enrolment, replacing a pending one; `false` (nothing changes) when MFA is already enabled.
    func beginMFAEnrollment(_ enrollment: MFAEnrollment, audit: AuditRecord) async throws -> Bool
    /// Enables the pending enrolment whose secret is still `sealedSecret` (a setup started again meanwhile is not
    /// enabled by a code of the old secret), recording `step` as used and storing the recovery digests. `false`
    /// when there is no such pending enrolment.
    func enableMFA(
        userID: UUID, sealedSecret: Data, step: Int64, recoveryDigests: [Data], at: Timestamp, audit: AuditRecord
    ) async throws -> Bool
    /// Accepts a second factor of the enabled enrolment whose secret is still `sealedSecret`: a TOTP step later
    /// than the last one accepted (recorded), or an unspent recovery code (spent). With `spendingToken`, records
    /// that MFA challenge token as used (until it expires) in the same transaction, so one challenge opens one
    /// session. Returns the recovery codes left, or nil when refused (a replayed step, a spent or unknown code, a
    /// challenge already used, MFA not enabled); nothing changes then.
    func acceptMFA(
        userID: UUID, proof: MFAProof, sealedSecret: Data, spendingToken: (id: String, expiresAt: Timestamp)?,
        audit: AuditRecord
    ) async throws -> Int?
    /// Accepts the proof as `acceptMFA` does and deletes the enrolment in the same transaction; `false` when refused.
    func disableMFA(userID: UUID, proof: MFAProof, sealedSecret: Data, audit: AuditRecord) async throws -> Bool
}

/// Environment variables (`EnvVarRecord`, `OrgEnvVarRecord`, `VaultEnvironment`). The rules that span a vault's
/// variables (no two of one key answer for the same environment and branch; a variable names only environments its
/// vault has; the bounds on counts) are checked in the writing transaction, under a lock on that vault's variables,
/// so they hold under concurrency and across nodes.
public protocol EnvVarStore: Sendable {
    /// A vault's custom environments, by slug.
    func vaultEnvironments(vaultID: UUID) async throws -> [VaultEnvironment]
    /// Creates a custom environment and `copies` (variables copied into it) in one transaction; 409 when the vault
    /// already has the slug or a copy would overlap a variable.
    func createVaultEnvironment(_ environment: VaultEnvironment, copies: [EnvVarRecord], audit: AuditRecord) async throws
    /// Deletes a custom environment: its slug leaves every variable that named it, and a variable left with no
    /// environment is deleted, in the same transaction. `false` when the vault has no such environment.
    func deleteVaultEnvironment(vaultID: UUID, slug: String, audit: AuditRecord) async throws -> Bool
    /// Every variable of the vault, by key, then branch.
    func envVars(vaultID: UUID) async throws -> [EnvVarRecord]
    /// Stores a new variable (`replacing` nil) or replaces the one with its id whose stored version is `replacing`
    /// (409 when it changed meanwhile or is gone). 409 when it would overlap another variable of its key; 400 when it
    /// names an environment the vault does not have.
    func saveEnvVar(_ variable: EnvVarRecord, replacing: Int?, audit: AuditRecord) async throws
    func deleteEnvVar(id: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool
    /// The org's shared variables with the vaults each is linked to, by key.
    func orgEnvVars(orgID: UUID) async throws -> [OrgEnvVarRecord]
    /// As `saveEnvVar`, for a shared variable; 409 when the org already has the key. Links are not touched.
    func saveOrgEnvVar(_ variable: OrgEnvVarRecord, replacing: Int?, audit: AuditRecord) async throws
    func deleteOrgEnvVar(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool
    /// Links a shared variable to a vault of its org (linking twice changes nothing); `false` when either is missing.
    func linkOrgEnvVar(id: UUID, orgID: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool
    /// `false` when there was no such link.
    func unlinkOrgEnvVar(id: UUID, orgID: UUID, vaultID: UUID, audit: AuditRecord) async throws -> Bool
    /// The shared variables linked to the vault, by key.
    func linkedOrgEnvVars(vaultID: UUID) async throws -> [OrgEnvVarRecord]
}

/// Customer-managed keys (`CMEK`): whether a vault requires CMEK values lives in its sealed row (`vaults.
/// cmek_fingerprint`), and rotation jobs re-encrypt the versions under the old key in batches, each batch one
/// transaction.
public protocol CMEKStore: Sendable {
    /// Turns CMEK on under `fingerprint`, or off (nil), re-sealing the vault's row; returns the vault as it is now,
    /// nil when the org has no such vault. A secret write in flight that checked the old setting fails instead of
    /// committing (`writeVersion` compares it under a lock on the vault's row).
    func setVaultCMEK(vaultID: UUID, orgID: UUID, fingerprint: String?, audit: AuditRecord) async throws -> Vault?
    /// Versions of the vault's secrets (deleted and disabled ones too) whose value is under the key with this
    /// fingerprint: how many, and the first `limit` of them by secret and version.
    func cmekVersionCount(vaultID: UUID, fingerprint: String) async throws -> Int
    /// How many versions of the vault's secrets are under each client key, by fingerprint.
    func cmekFingerprints(vaultID: UUID) async throws -> [String: Int]
    func cmekVersions(vaultID: UUID, fingerprint: String, limit: Int) async throws -> [CMEKVersion]
    /// Replaces the versions in one transaction, each only while it still holds what was read (its fingerprint `from`
    /// and its wrapped data key), setting its fingerprint to `to`, and saves the job's progress with them. Throws
    /// `KeyholdError` 409 and changes nothing when any version changed meanwhile.
    func replaceCMEKVersions(_ replacements: [CMEKReplacement], from: String, to: String, job: CMEKRotationJob) async throws
    /// Ends a rotation: under a lock on the vault's row, when no version of the vault is left under `job`'s old key,
    /// moves the vault to the new fingerprint (if it still has the old one) and saves the job, with the audit event.
    /// `false` (nothing changes) when versions under the old key remain (written meanwhile); 409 when the vault has
    /// moved to a third key meanwhile (another rotation finished first).
    func finishCMEKRotation(_ job: CMEKRotationJob, audit: AuditRecord) async throws -> Bool
    /// Stores a new job; the vault's jobs still pending or running (left by a server that stopped: a server runs
    /// one rotation of a vault at a time) are marked failed in the same transaction, naming this one.
    func createCMEKJob(_ job: CMEKRotationJob, audit: AuditRecord) async throws
    /// Saves a job's status, counts, error and times.
    func saveCMEKJob(_ job: CMEKRotationJob) async throws
    func cmekJob(id: UUID, vaultID: UUID) async throws -> CMEKRotationJob?
}

/// Webhooks and their outbox. A change whose audit entry maps to a `WebhookEvent` queues one delivery per active
/// webhook of its org subscribed to that event (or `*`), in the change's own transaction (inside the one function
/// that appends audit events), so a change and its deliveries commit or roll back together. Deliveries are claimed
/// in batches with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so with many nodes each goes out from one.
public protocol WebhookStore: Sendable {
    func createWebhook(_ webhook: Webhook, audit: AuditRecord) async throws
    /// The webhook when it belongs to the org; another org's is nil, as a missing one.
    func webhook(id: UUID, orgID: UUID) async throws -> Webhook?
    func webhooks(orgID: UUID) async throws -> [Webhook]
    /// Saves url, events, description and is_active; `false` when the org has no such webhook.
    func updateWebhook(_ webhook: Webhook, audit: AuditRecord) async throws -> Bool
    /// Deletes the webhook and its deliveries; `false` when the org has no such webhook.
    func deleteWebhook(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool
    /// Appends `audit` (a `webhook.test` event naming the webhook), which queues the test delivery; returns its id.
    func queueWebhookTest(audit: AuditRecord) async throws -> UUID
    /// The webhook's most recent deliveries, newest first.
    func webhookDeliveries(webhookID: UUID, limit: Int) async throws -> [WebhookDelivery]
    /// Claims up to `limit` pending deliveries due at `now` of active webhooks, none claimed by another claimer whose
    /// lease runs: counts the attempt and leases them until `leaseUntil`, in one transaction.
    func claimWebhookDeliveries(now: Timestamp, leaseUntil: Timestamp, limit: Int) async throws -> [ClaimedWebhookDelivery]
    /// Records an attempt: delivered, retried at `nextAttemptAt`, or failed for good. A failure of a webhook that has
    /// had no success for `WebhookBackoff.deactivateAfter` while failing deactivates it, with `deactivation`
    /// appended to the audit log. Returns whether the webhook was deactivated.
    func recordWebhookAttempt(_ outcome: WebhookAttemptOutcome, deactivation: AuditRecord) async throws -> Bool
    /// Deletes delivered and failed deliveries created before `before`; returns how many. Pending ones stay.
    func purgeWebhookDeliveries(before: Timestamp) async throws -> Int
    /// Signalled after a transaction that queued deliveries has committed (in this process).
    var webhookWakeup: WebhookWakeup { get }
}

/// A data key wrapped by a KEK that is no longer its vault's current one: a secret version's or a vault env var's.
public struct StaleWrappedKey: Sendable, Hashable {
    public enum Holder: Sendable, Hashable {
        case secretVersion(secretID: UUID, version: Int)
        /// The version the key was read at: a variable changes in place, so a rewrap applies only to that version.
        case envVar(id: UUID, version: Int)
    }

    public let holder: Holder
    public let currentKEKID: String
    public let wrappedDataKey: Data
    public let targetKEKID: String

    public init(holder: Holder, currentKEKID: String, wrappedDataKey: Data, targetKEKID: String) {
        self.holder = holder
        self.currentKEKID = currentKEKID
        self.wrappedDataKey = wrappedDataKey
        self.targetKEKID = targetKEKID
    }
}

/// Key rotation: new KEK versions, rewrapping data keys in batches, retiring unused KEKs, re-sealing under a new
/// master key.
public protocol KeyRotationStore: Sendable {
    /// Records a new KEK for the vault and makes it the one new versions are written under.
    func rotateVaultKEK(vaultID: UUID, orgID: UUID, kek: KEKHandle, audit: AuditRecord) async throws -> Bool
    /// Up to `limit` secret versions and env vars whose data key is wrapped by another KEK than their vault's current one.
    func staleWrappedKeys(limit: Int) async throws -> [StaleWrappedKey]
    /// Replaces wrapped data keys in one transaction, each only if still wrapped by the KEK it was read under
    /// (so a concurrent run cannot undo another); returns how many changed. Ciphertexts are not touched.
    func rewrap(_ keys: [(StaleWrappedKey, Data)]) async throws -> Int
    /// KEKs that no vault, no version and no env var uses any more.
    func unusedKEKs() async throws -> [KEKHandle]
    /// Deletes a KEK record if it is still unused.
    func deleteKEK(id: String) async throws -> Bool
    func allKEKs() async throws -> [KEKHandle]
    func allSystemValues() async throws -> [String: Data]
    /// Replaces KEK materials and system values in one transaction (re-sealing under a new master key).
    func reseal(keks: [KEKHandle], systemValues: [String: Data]) async throws
}

/// Capability leases (`CapabilityLease`, a sealed table): every rule that changes one locks its row, checks its seal
/// and re-seals it in the transaction that records its audit event, so uses are exact under concurrency and across
/// nodes.
public protocol CapabilityLeaseStore: Sendable {
    /// Stores a new lease with its audit event. With `approval`, one use of the creator's approved read lease on the
    /// lease's vault and path is spent in the same transaction, recording its event (`KeyholdError.noLease`, nothing
    /// stored, when there is none left). `KeyholdError` 404 when the secret has no live version, 410 when it is gone,
    /// 409 when its value is encrypted with a customer-managed key (the server could not inject it).
    func createCapabilityLease(
        _ lease: CapabilityLease, approval: (claim: LeaseClaim, audit: @Sendable (Approval) -> AuditRecord)?,
        audit: AuditRecord
    ) async throws

    func capabilityLease(id: UUID) async throws -> CapabilityLease?
    /// A vault's leases, newest first.
    func capabilityLeases(vaultID: UUID, limit: Int, offset: Int) async throws -> [CapabilityLease]
    /// Marks the lease revoked (once) with its audit event; returns it as it stands, or nil when there is none.
    func revokeCapabilityLease(id: UUID, vaultID: UUID, at: Timestamp, audit: @escaping @Sendable (CapabilityLease) -> AuditRecord)
        async throws -> (lease: CapabilityLease, changed: Bool)?

    /// Spends one use of the lease and reads the latest version of its secret, in one transaction: the lease row is
    /// locked and verified, `check` decides on it as stored (410 when it is gone, 403 when the use is not allowed),
    /// the lease's own limit and each of `counters` (a `uses<=N` caveat's key and N) must have a use left, every one
    /// of them is counted, the version's read is counted like any read (404, 410 and `refusing` as for a read),
    /// `open` turns the version into what the caller needs with its KEK (read in the transaction, so that opening
    /// never waits for a second connection while this one holds the lease's lock) and may refuse it, and `audit`'s
    /// event is appended. Nothing changes when any of it refuses.
    func spendCapabilityLease<Opened: Sendable>(
        id: UUID, counters: [(key: Data, limit: Int)], now: Timestamp, refusing: Set<SecretType>,
        check: @escaping @Sendable (CapabilityLease) throws -> Void,
        open: @escaping @Sendable (CapabilityLease, SealedSecretVersion, KEKHandle) async throws -> Opened,
        audit: @escaping @Sendable (CapabilityLease, SecretVersionInfo) -> AuditRecord
    ) async throws -> (lease: CapabilityLease, opened: Opened)
}

/// Everything one backend provides.
public protocol Storage:
    IdentityStore, AgentStore, CredentialStore, PolicyStore, VaultStore, SecretStore, SystemStore, AuditStore,
    ShareStore, KeyRotationStore, IPRuleStore, MFAStore, EnvVarStore, CMEKStore, ApprovalStore, WebhookStore,
    CapabilityLeaseStore
{
    /// Installs the key that seals the rows granting access (see `GrantSeal`), sealing the rows stored before seals
    /// existed the first time; until it is called, every such row is refused.
    func sealGrants(with seal: GrantSeal) async throws
    func close() async throws
}

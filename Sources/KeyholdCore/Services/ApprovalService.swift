import Crypto
import Foundation

/// Human approval before an agent acts (contract §1.12). A read covered by an allow policy with
/// `conditions.require_approval` is refused with `approval_required` and a pending request (one per requester,
/// vault and path); a person approves it, which mints a lease of the policy's `approval_max_uses` reads for its
/// `approval_ttl_seconds`, spent in the transaction of each read. Agents also ask for other actions
/// (`POST /v1/approvals/request`); an approved `policy_change` creates the policy in its payload, in the decision's
/// transaction. Decisions of risk tier 2 and 3 need `X-Auth-Confirm`: the decider's TOTP code when they use MFA
/// (tier 3 accepts nothing else then), their password otherwise. Every request, decision, cancellation, lease use
/// and expiry is an audit event.
public struct ApprovalService: Sendable {
    let store: any ApprovalStore
    let agents: any AgentStore
    let identities: any IdentityStore
    let vaults: VaultService
    let policies: PolicyService
    let audit: AuditLog
    let passwords: PasswordHasher
    let mfa: MFAService
    let throttle: LoginThrottle
    let quickKey: SymmetricKey
    /// Self-enrolment limits, per node: from one client address 5 at once, then 1 a second; for one email address
    /// 1 in 10 minutes.
    let enrolmentAddresses = RateLimiter(rate: 1, burst: 5)
    let enrolmentEmails = RateLimiter(rate: 1.0 / 600, burst: 1)
    /// Approvals of enrolments register agents one at a time in this process, so two approvals of one enrolment
    /// at once make one agent (the second finds it is no longer pending); across nodes the agent's id is unique.
    let enrolmentApprovals = AsyncLock()

    public init(
        store: any ApprovalStore, agents: any AgentStore, identities: any IdentityStore, vaults: VaultService,
        policies: PolicyService, audit: AuditLog, passwords: PasswordHasher, mfa: MFAService, throttle: LoginThrottle,
        quickKey: SymmetricKey
    ) {
        self.store = store
        self.agents = agents
        self.identities = identities
        self.vaults = vaults
        self.policies = policies
        self.audit = audit
        self.passwords = passwords
        self.mfa = mfa
        self.throttle = throttle
        self.quickKey = quickKey
    }

    static let notFound = KeyholdError.notFound("Approval request not found")

    // MARK: gated reads

    /// What a gated read hands storage: the lease to spend and the event that records its use.
    func lease(for caller: Caller, vault: Vault, path: SecretPath) -> (claim: LeaseClaim, audit: @Sendable (Approval) -> AuditRecord) {
        let (audit, caller) = (self.audit, caller)
        return (
            LeaseClaim(requesterKind: caller.principal.kind, requesterID: caller.principal.id, vaultID: vault.id, path: path.rawValue),
            { lease in
                audit.record(
                    caller, "approval.lease_use", "approval", lease.id.wire,
                    [
                        "vault_id": .string(vault.id.wire), "path": .string(path.rawValue),
                        "uses_left": .number(Double(lease.usesLeft)),
                    ])
            }
        )
    }

    /// The pending request for a gated read the caller had no lease for: the one already pending, or a new one.
    func requestRead(_ caller: Caller, vault: Vault, path: SecretPath, rule: ApprovalRule) async throws -> Approval {
        let now = Timestamp.now
        // Addressed to the vault's creator when a person created it (else to the org's owners and admins alone),
        // never to its own requester.
        var addressee: UUID? = vault.createdByType == .user ? vault.createdBy : nil
        if addressee == caller.principal.id { addressee = nil }
        let approval = Approval(
            id: UUID(), orgID: vault.orgID, userID: addressee, requesterKind: caller.principal.kind,
            requesterID: caller.principal.id, action: Approval.secretRead, targetType: "secret", targetID: path.rawValue,
            vaultID: vault.id, riskTier: Approval.riskTier(action: Approval.secretRead, target: path.rawValue, payload: nil, declared: nil),
            status: .pending,
            summary: .object([
                "vault_id": .string(vault.id.wire), "path": .string(path.rawValue), "permission": "read",
                "max_uses": .number(Double(rule.maxUses)), "ttl_seconds": .number(Double(rule.ttlSeconds)),
            ]),
            reason: nil, payload: nil, decisionReason: nil, decidedBy: nil, decidedAt: nil,
            expiresAt: Timestamp(milliseconds: now.milliseconds + Approval.pendingLifetimeSeconds * 1000), rule: rule,
            usesLeft: 0, leaseExpiresAt: nil, createdAt: now)
        return try await store(approval, by: caller).approval
    }

    /// Pending requests one requester may have open at once; beyond it, 429 until some are decided or expire.
    public static let maxPendingPerRequester = 100

    private func store(_ approval: Approval, by caller: Caller) async throws -> (approval: Approval, created: Bool) {
        let audit = self.audit
        return try await store.requestApproval(
            approval, maxPending: Self.maxPendingPerRequester, audit: record(caller, "approval.request", approval),
            expired: { audit.record(org: $0.orgID, actor: nil, ip: nil, "approval.expire", "approval", $0.id.wire, Self.details($0)) })
    }

    // MARK: requests by agents

    public struct Draft: Sendable {
        public var action: String
        public var targetType: String
        public var targetID: String
        public var summary: JSONValue?
        public var reason: String?
        public var riskTier: Int?
        public var payload: JSONValue?

        public init(
            action: String, targetType: String, targetID: String, summary: JSONValue?, reason: String?, riskTier: Int?,
            payload: JSONValue?
        ) {
            self.action = action
            self.targetType = targetType
            self.targetID = targetID
            self.summary = summary
            self.reason = reason
            self.riskTier = riskTier
            self.payload = payload
        }
    }

    /// `POST /v1/approvals/request`: agents only. A `policy_change` must carry the policy (`payload`, as
    /// `POST /v1/vaults/{vault_id}/policies` takes it plus `vault_id`); its vault must be one of the org's.
    public func request(_ draft: Draft, by caller: Caller) async throws -> Approval {
        guard caller.principal.kind == .agent else {
            throw KeyholdError.forbidden("Approval requests are made by agents; people decide them")
        }
        func text(_ value: String, _ name: String, _ limit: Int) throws -> String {
            guard (1...limit).contains(value.utf8.count), !Self.hasHiddenCharacters(value) else {
                throw KeyholdError.badRequest("\(name) must be 1 to \(limit) bytes without control or format characters")
            }
            return value
        }
        let action = try text(draft.action, "action", 64)
        guard action.unicodeScalars.allSatisfy({ "abcdefghijklmnopqrstuvwxyz0123456789_.:-".unicodeScalars.contains($0) })
        else { throw KeyholdError.badRequest("action must be lower-case letters, digits and _ . : -") }
        guard action != Approval.secretRead else {
            throw KeyholdError.badRequest("secret_read requests are made by the server when a read needs approval; read the secret")
        }
        var targetType = try text(draft.targetType, "target_type", 64)
        var targetID = try text(draft.targetID, "target_id", 512)
        let reason = try draft.reason.map { try text($0, "reason", 2000) }
        if let tier = draft.riskTier, !(1...5).contains(tier) {
            throw KeyholdError.badRequest("risk_tier must be between 1 and 5")
        }
        var summary: JSONValue
        switch draft.summary {
        case .string(let text)?: summary = .object(["text": .string(try Self.bounded(text, "summary"))])
        case .object?: summary = draft.summary!
        case nil, .null?: summary = .object([:])
        default: throw KeyholdError.badRequest("summary must be a string or an object")
        }
        guard summary.depth <= 8, summary.jsonString().utf8.count <= 16 * 1024 else {
            throw KeyholdError.badRequest("summary must be at most 16 KiB and 8 levels deep")
        }
        if let payload = draft.payload, payload != .null {
            guard payload.isObject, payload.depth <= 8, payload.jsonString().utf8.count <= 16 * 1024 else {
                throw KeyholdError.badRequest("payload must be a JSON object of at most 16 KiB")
            }
        }
        var vaultID: UUID?
        var addressee = try await creator(of: caller.principal)
        let payload = draft.payload == .null ? nil : draft.payload
        if action == Approval.policyChange {
            let (id, policyDraft) = try Self.policyDraft(payload)
            let principal = caller.principal
            guard let vault = try await vaults.store.vault(id: id, orgID: principal.orgID),
                principal.vaultIDs.isEmpty || principal.vaultIDs.contains(id)
            else { throw KeyholdError.badRequest("payload.vault_id names no vault of this org that this agent may use") }
            try PolicyService.validate(policyDraft)
            vaultID = vault.id
            addressee = vault.createdByType == .user ? vault.createdBy : nil
            // What the person approves is what will be applied: the summary is the server's account of the payload
            // (the agent's own words stay in `reason`), the target the vault.
            (targetType, targetID) = ("policy", vault.id.wire)
            summary = Self.describe(policyDraft, vaultID: vault.id)
        }
        let now = Timestamp.now
        let approval = Approval(
            id: UUID(), orgID: caller.principal.orgID, userID: addressee, requesterKind: .agent,
            requesterID: caller.principal.id, action: action, targetType: targetType, targetID: targetID,
            vaultID: vaultID,
            riskTier: Approval.riskTier(action: action, target: targetID, payload: payload, declared: draft.riskTier),
            status: .pending, summary: summary, reason: reason, payload: payload, decisionReason: nil, decidedBy: nil,
            decidedAt: nil, expiresAt: Timestamp(milliseconds: now.milliseconds + Approval.pendingLifetimeSeconds * 1000),
            rule: ApprovalRule(), usesLeft: 0, leaseExpiresAt: nil, createdAt: now)
        return try await store(approval, by: caller).approval
    }

    // MARK: self-enrolment

    /// `POST /v1/agents/enroll` (no credential): an agent asks the member with `email` to register it. When a member
    /// has that email, a pending `agent_enroll` request is addressed to them (risk tier 2: approving it needs
    /// `X-Auth-Confirm`), and approving it registers the agent and shows its key, once, to them. The answer is the
    /// same whether or not anyone has that email — the time the request may be decided until — and is sent before
    /// the email is looked up, so it takes as long either way. Throttled per client address and per email.
    public func enrol(name: String, email: String, description: String?, ip: IPAddress?) async throws -> Timestamp {
        try AgentService.validateEnrolment(name: name, description: description)
        if let description { _ = try Self.bounded(description, "description") }
        guard !Self.hasHiddenCharacters(name) else {
            throw KeyholdError.badRequest("name must not contain control or format characters")
        }
        let email = email.trimmingCharacters(in: .whitespaces).lowercased()
        guard (3...254).contains(email.utf8.count), email.split(separator: "@", omittingEmptySubsequences: false).count == 2,
            !email.hasPrefix("@"), !email.hasSuffix("@"), !email.contains(where: { $0.isWhitespace })
        else { throw KeyholdError.badRequest("human_email must be an email address") }
        for (limiter, key) in [(enrolmentAddresses, ip?.description ?? "unknown"), (enrolmentEmails, email)] {
            if let wait = limiter.take(key) {
                throw KeyholdError(
                    .tooManyRequests, "Too many enrolment requests; try again later",
                    retryAfter: max(1, Int(wait.components.seconds) + 1))
            }
        }
        let now = Timestamp.now
        let expiresAt = Timestamp(milliseconds: now.milliseconds + Approval.enrollmentLifetimeSeconds * 1000)
        // Whether anyone has that email is looked up after the answer is on its way, so the answer takes as long
        // either way. (A request that fails there is simply not recorded; the caller's answer was the same.)
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        Task { [self] in
            try? await AuthorizationObservation.$current.withValue(nil) {
                try await recordEnrolment(name: name, email: email, description: description, ip: ip, at: now, expiresAt: expiresAt)
            }
        }
        return expiresAt
    }

    private func recordEnrolment(
        name: String, email: String, description: String?, ip: IPAddress?, at now: Timestamp, expiresAt: Timestamp
    ) async throws {
        guard let user = try await identities.user(email: email) else { return }
        let agentID = UUID()
        var fields: [String: JSONValue] = ["name": .string(name)]
        if let description, !description.isEmpty { fields["description"] = .string(description) }
        let approval = Approval(
            id: UUID(), orgID: user.orgID, userID: user.id, requesterKind: .agent, requesterID: agentID,
            action: Approval.agentEnrollment, targetType: "agent", targetID: agentID.wire, vaultID: nil, riskTier: 2,
            status: .pending, summary: .object(fields.merging(["change": "register agent"]) { $1 }), reason: nil,
            payload: .object(fields), decisionReason: nil, decidedBy: nil, decidedAt: nil, expiresAt: expiresAt,
            rule: ApprovalRule(), usesLeft: 0, leaseExpiresAt: nil, createdAt: now)
        var details = Self.details(approval)
        details["via"] = "enrolment"
        let audit = self.audit
        _ = try await store.requestApproval(
            approval, maxPending: 1,
            audit: audit.record(org: user.orgID, actor: nil, ip: ip, "approval.request", "approval", approval.id.wire, details),
            expired: { audit.record(org: $0.orgID, actor: nil, ip: nil, "approval.expire", "approval", $0.id.wire, Self.details($0)) })
    }

    static func bounded(_ text: String, _ name: String) throws -> String {
        guard text.utf8.count <= 4096, !hasHiddenCharacters(text) else {
            throw KeyholdError.badRequest("\(name) must be at most 4096 bytes without control or format characters")
        }
        return text
    }

    /// Control characters other than line breaks and tabs, and format characters (bidirectional overrides,
    /// zero-width joiners): text a person reads before approving must show what it says.
    static func hasHiddenCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains {
            switch $0.properties.generalCategory {
            case .control: !["\n", "\t"].contains($0)
            case .format: true
            default: false
            }
        }
    }

    /// The server's account of a policy change, shown as its summary.
    static func describe(_ draft: PolicyService.Draft, vaultID: UUID) -> JSONValue {
        var fields: [String: JSONValue] = [
            "change": "create policy", "vault_id": .string(vaultID.wire),
            "secret_path_pattern": .string(draft.pattern), "principal_type": .string(draft.principalKind),
            "principal_id": .string(draft.principalID), "permissions": .array(draft.permissions.map { .string($0) }),
            "effect": .string(draft.effect ?? "allow"),
        ]
        if let conditions = draft.conditions, conditions != .null { fields["conditions"] = conditions }
        if let expiresAt = draft.expiresAt { fields["expires_at"] = .string(expiresAt.iso8601) }
        if let priority = draft.priority { fields["priority"] = .number(Double(priority)) }
        return .object(fields)
    }

    /// A policy change's payload: `vault_id` and the fields of a policy.
    static func policyDraft(_ payload: JSONValue?) throws -> (UUID, PolicyService.Draft) {
        guard case .object(let fields)? = payload else {
            throw KeyholdError.badRequest("a policy_change needs payload: the policy, with vault_id")
        }
        func string(_ key: String) throws -> String {
            guard case .string(let value)? = fields[key] else { throw KeyholdError.badRequest("payload.\(key) must be a string") }
            return value
        }
        guard let vaultID = UUID(uuidString: try string("vault_id")) else {
            throw KeyholdError.badRequest("payload.vault_id must be a UUID")
        }
        guard case .array(let names)? = fields["permissions"] else {
            throw KeyholdError.badRequest("payload.permissions must be a list of strings")
        }
        let permissions = try names.map { (name: JSONValue) throws -> String in
            guard case .string(let value) = name else { throw KeyholdError.badRequest("payload.permissions must be a list of strings") }
            return value
        }
        var expiresAt: Timestamp?
        if let value = fields["expires_at"], value != .null {
            guard case .string(let text) = value, let instant = Timestamp(iso8601: text) else {
                throw KeyholdError.badRequest("payload.expires_at must be an RFC 3339 time")
            }
            expiresAt = instant
        }
        var effect: String?
        if let value = fields["effect"], value != .null { effect = try string("effect") }
        var priority: Int?
        if let value = fields["priority"], value != .null {
            guard case .number(let number) = value, let integer = Int(exactly: number) else {
                throw KeyholdError.badRequest("payload.priority must be an integer")
            }
            priority = integer
        }
        let known: Set<String> = [
            "vault_id", "secret_path_pattern", "principal_type", "principal_id", "permissions", "conditions",
            "expires_at", "effect", "priority",
        ]
        for key in fields.keys where !known.contains(key) {
            throw KeyholdError.badRequest("payload: unknown field '\(key.prefix(64))'")
        }
        return (
            vaultID,
            PolicyService.Draft(
                pattern: try string("secret_path_pattern"), principalKind: try string("principal_type"),
                principalID: try string("principal_id"), permissions: permissions, conditions: fields["conditions"],
                expiresAt: expiresAt, effect: effect, priority: priority)
        )
    }

    // MARK: reading

    public func list(status: String?, limit: Int, offset: Int, by caller: Caller) async throws -> [Approval] {
        try caller.principal.requireManager()
        guard (1...1000).contains(limit), (0...10_000).contains(offset) else {
            throw KeyholdError.badRequest("limit must be between 1 and 1000 and offset between 0 and 10000")
        }
        var wanted: ApprovalStatus?
        if let status {
            guard let parsed = ApprovalStatus(rawValue: status) else {
                throw KeyholdError.badRequest("status must be one of pending, approved, rejected, expired, cancelled")
            }
            wanted = parsed
        }
        // Owners and admins see the org's requests; another member those addressed to them.
        return try await store.approvals(
            orgID: caller.principal.orgID, status: wanted, requesterID: nil,
            userID: caller.principal.isOrgAdmin ? nil : caller.principal.id, now: .now, limit: limit, offset: offset)
    }

    /// The request, for its requester, the person it is addressed to, and the org's owners and admins.
    public func get(_ id: UUID, by caller: Caller) async throws -> Approval {
        guard var approval = try await store.approval(id: id, orgID: caller.principal.orgID) else { throw Self.notFound }
        let principal = caller.principal
        let mine = approval.requesterID == principal.id && approval.requesterKind == principal.kind
        guard mine || (!principal.isScoped && (principal.isOrgAdmin || (principal.kind == .user && approval.userID == principal.id)))
        else { throw Self.notFound }
        approval.status = approval.status(at: .now)
        return approval
    }

    // MARK: deciding

    /// What a decision made: the request and, for an approved enrolment, the agent it registered and its key.
    public struct Decision: Sendable {
        public let approval: Approval
        public let enrolled: (agent: Agent, apiKey: String)?
    }

    /// `decide` (`approve` or `reject`) by a person: the org's owners and admins, or the person it is addressed to,
    /// never its requester, with an unscoped credential; 409 unless pending. An enrolment is approved only by the
    /// member it names (owners and admins may reject it): `agents` registers the agent before the decision is
    /// recorded, and removes it again when the decision cannot be recorded (another was recorded first).
    public func decide(
        _ id: UUID, decision: String, reason: String?, confirmation: String?, by caller: Caller,
        agents registry: AgentService? = nil
    ) async throws -> Decision {
        let status: ApprovalStatus
        switch decision {
        case "approve", "approved": status = .approved
        case "reject", "rejected": status = .rejected
        default: throw KeyholdError.badRequest("decision must be approve or reject")
        }
        let reason = try reason.map { try Self.bounded($0, "reason") }
        let principal = caller.principal
        try await audit.recordingDenial(caller, "approval.decide", "approval", id.wire) { try principal.requireManager() }
        guard let approval = try await store.approval(id: id, orgID: principal.orgID) else { throw Self.notFound }
        guard principal.isOrgAdmin || approval.userID == principal.id else {
            if approval.requesterID == principal.id { throw KeyholdError.forbidden("A request cannot be decided by its requester") }
            throw Self.notFound
        }
        guard !(approval.requesterID == principal.id && approval.requesterKind == principal.kind) else {
            throw KeyholdError.forbidden("A request cannot be decided by its requester")
        }
        guard approval.status(at: .now) == .pending else { throw Self.notPending(approval) }
        try await requireDecider(principal, for: approval)
        let enrolling = status == .approved && approval.action == Approval.agentEnrollment
        if enrolling, approval.userID != principal.id || principal.kind != .user {
            throw KeyholdError.forbidden("An enrolment is approved by the member it names")
        }
        if approval.riskTier >= 2 { try await confirm(caller, confirmation, tier: approval.riskTier, approvalID: id) }
        if enrolling {
            guard let registry else { throw KeyholdError.internalError("Enrolments cannot be approved here") }
            await enrolmentApprovals.lock()
            defer { enrolmentApprovals.unlock() }
            let current = try await store.approval(id: id, orgID: principal.orgID)
            guard let current, current.status(at: .now) == .pending else { throw current.map(Self.notPending) ?? Self.notFound }
            let (agent, key) = try await registry.enrol(approval, by: caller)
            do {
                let decided = try await finish(id, status: status, decider: principal.id, reason: reason, policy: nil, by: caller)
                return Decision(approval: decided, enrolled: (agent, key))
            } catch {
                // Taking the enrolled agent away again must not wait on the request's authorization facts.
                try? await AuthorizationObservation.$current.withValue(nil) {
                    try await registry.delete(agent.id, purge: true, by: caller)
                }
                throw error
            }
        }
        var policy: (Policy, AuditRecord)?
        if status == .approved, approval.action == Approval.policyChange {
            let (vaultID, draft) = try Self.policyDraft(approval.payload)
            let created = try await policies.prepare(vaultID: vaultID, draft: draft, by: caller)
            policy = (created, policies.record(caller, "policy.create", created, ["approval_id": .string(id.wire)]))
        }
        return Decision(
            approval: try await finish(id, status: status, decider: principal.id, reason: reason, policy: policy, by: caller),
            enrolled: nil)
    }

    /// `cancel`: the requester withdraws it (or the person it is addressed to, or an owner or admin). A request
    /// already decided is returned as it is (the first answer wins), except that a person who may decide it ends an
    /// approved lease that still has uses (status `cancelled`, no uses left).
    public func cancel(_ id: UUID, reason: String?, by caller: Caller) async throws -> Approval {
        let reason = try reason.map { try Self.bounded($0, "reason") }
        let principal = caller.principal
        guard let approval = try await store.approval(id: id, orgID: principal.orgID) else { throw Self.notFound }
        let mine = approval.requesterID == principal.id && approval.requesterKind == principal.kind
        guard mine || (!principal.isScoped && (principal.isOrgAdmin || approval.userID == principal.id)) else {
            throw Self.notFound
        }
        var revoking = false
        if !mine, approval.status == .approved, approval.usesLeft > 0 {
            try await requireDecider(principal, for: approval)
            revoking = true
        }
        return try await finish(
            id, status: .cancelled, decider: principal.kind == .user ? principal.id : nil, reason: reason, policy: nil,
            by: caller, settled: true, revoking: revoking)
    }

    /// Who may decide (or revoke) a request besides the org's owners and admins: the person it is addressed to,
    /// who for a read or a policy change must still manage the vault.
    private func requireDecider(_ principal: Principal, for approval: Approval) async throws {
        guard !principal.isOrgAdmin else { return }
        guard principal.kind == .user, approval.userID == principal.id else { throw Self.notFound }
        if let vaultID = approval.vaultID {
            guard let vault = try await vaults.store.vault(id: vaultID, orgID: principal.orgID),
                Authorizer().isOwner(principal, of: vault)
            else { throw KeyholdError.forbidden("Only the vault's owners decide requests about it") }
        }
    }

    private func finish(
        _ id: UUID, status: ApprovalStatus, decider: UUID?, reason: String?, policy: (Policy, AuditRecord)?,
        by caller: Caller, settled: Bool = false, revoking: Bool = false
    ) async throws -> Approval {
        let (audit, caller) = (self.audit, caller)
        let action = revoking ? "approval.revoke" : status == .cancelled ? "approval.cancel" : "approval.decide"
        guard let (approval, changed) = try await store.decideApproval(
            id: id, orgID: caller.principal.orgID, status: status, by: decider, reason: reason, now: .now, policy: policy,
            revokingLease: revoking,
            audit: { audit.record(caller, action, "approval", $0.id.wire, Self.details($0)) })
        else { throw Self.notFound }
        guard changed || settled else { throw Self.notPending(approval) }
        return approval
    }

    static func notPending(_ approval: Approval) -> KeyholdError {
        KeyholdError(.conflict, "The request is \(approval.status(at: .now).rawValue), not pending")
    }

    /// `X-Auth-Confirm` for a tier 2 or 3 decision: a TOTP code of the decider's enrolment when they use MFA (for
    /// tier 3 nothing else), otherwise their password. A wrong one is 403, throttled like a login.
    func confirm(_ caller: Caller, _ value: String?, tier: Int, approvalID: UUID) async throws {
        guard let value, !value.isEmpty, value.utf8.count <= 1024 else {
            throw KeyholdError.forbidden(
                "A risk tier \(tier) decision needs X-Auth-Confirm: your TOTP code if you use MFA, otherwise your password")
        }
        let principal = caller.principal
        guard let user = try await identities.user(id: principal.id), user.orgID == principal.orgID else {
            throw KeyholdError.unauthenticated
        }
        let usesMFA = try await mfa.isEnabled(userID: user.id)
        var confirmed = false
        if usesMFA, TOTP.isCodeShaped(value.trimmingCharacters(in: .whitespaces)) {
            confirmed = try await mfa.confirm(caller, code: value)
        } else if !(usesMFA && tier >= 3) {
            try throttle.attempt(account: user.email, address: caller.context.clientIP?.description)
            confirmed = try await passwords.verify(value, hash: user.passwordHash)
            if confirmed { throttle.succeeded(account: user.email, address: caller.context.clientIP?.description) }
        }
        guard confirmed else {
            try await audit.append(
                audit.record(
                    caller, "approval.decide", "approval", approvalID.wire,
                    ["outcome": "denied", "reason": "X-Auth-Confirm did not verify"]))
            throw KeyholdError.forbidden(
                usesMFA && tier >= 3
                    ? "X-Auth-Confirm must carry a current TOTP code for a risk tier 3 decision"
                    : "X-Auth-Confirm did not verify")
        }
    }

    // MARK: quick decide

    /// The single-use link token for a request: its id and a MAC under the server's quick-decide key (nothing to
    /// store; spent when the request stops being pending, and good until the request expires, 7 days).
    public func quickToken(for id: UUID) -> String { "qd_" + id.wire + "_" + quickMAC(id).base64URLEncodedString() }

    /// What an `approval.requested` delivery adds for a risk tier 1 request: `quick_decide` with the links that
    /// approve or reject it (`{publicURL}/v1/approvals/quick-decide?token=…&decision=…`). The token is derived
    /// when the delivery is sent; neither the outbox nor the audit log holds it.
    public func quickDecideLinks(event: String, audit: AuditEvent, publicURL: String) -> [String: JSONValue] {
        let entry = audit.entry
        guard event == "approval.requested", entry.resourceType == "approval",
            entry.details["risk_tier"] == .number(1), let id = entry.resourceID.flatMap(UUID.init(uuidString:))
        else { return [:] }
        let base = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        let link = { (decision: String) in
            JSONValue.string("\(base)/v1/approvals/quick-decide?token=\(quickToken(for: id))&decision=\(decision)")
        }
        return ["quick_decide": .object(["approve_url": link("approved"), "reject_url": link("rejected")])]
    }

    private func quickMAC(_ id: UUID) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Data(("keyhold.quick-decide|" + id.wire).utf8), using: quickKey))
    }

    /// `GET /v1/approvals/quick-decide`: decides a tier 1 request from its link (a higher tier needs the console
    /// and `X-Auth-Confirm`). The decider recorded is the person the request is addressed to.
    public func quickDecide(token: String, decision: String, ip: IPAddress?) async throws -> Approval {
        let status: ApprovalStatus
        switch decision {
        case "approved", "approve": status = .approved
        case "rejected", "reject": status = .rejected
        default: throw KeyholdError.badRequest("decision must be approved or rejected")
        }
        let parts = token.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard token.utf8.count < 128, parts.count == 3, parts[0] == "qd", let id = UUID(uuidString: String(parts[1])),
            let mac = Data(base64URL: String(parts[2])), CredentialHasher.constantTimeEqual(mac, quickMAC(id)),
            let approval = try await store.approval(id: id, orgID: nil)
        else { throw KeyholdError.notFound("Unknown or expired link") }
        guard approval.status(at: .now) == .pending else { throw Self.notPending(approval) }
        guard approval.riskTier == 1 else {
            throw KeyholdError(.conflict, "A risk tier \(approval.riskTier) request is decided in the console, with X-Auth-Confirm")
        }
        // The link decides for the person it was sent to: they must still be a member who may decide it.
        guard let userID = approval.userID, userID != approval.requesterID,
            let user = try await identities.user(id: userID), user.orgID == approval.orgID
        else { throw KeyholdError.notFound("Unknown or expired link") }
        try await requireDecider(Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role), for: approval)
        let (audit, linkIP) = (self.audit, ip)
        guard let (decided, changed) = try await store.decideApproval(
            id: id, orgID: approval.orgID, status: status, by: userID, reason: "decided from the link", now: .now,
            policy: nil, revokingLease: false,
            audit: {
                var details = Self.details($0)
                details["via"] = "quick_decide"
                return audit.record(org: $0.orgID, actor: nil, ip: linkIP, "approval.decide", "approval", $0.id.wire, details)
            })
        else { throw KeyholdError.notFound("Unknown or expired link") }
        guard changed else { throw Self.notPending(decided) }
        return decided
    }

    // MARK: expiry

    /// Records the expiry of pending requests and of leases past their time; returns how many it recorded.
    public func sweep(now: Timestamp = .now) async throws -> Int {
        let audit = self.audit
        var total = 0
        while true {
            let count = try await store.expireApprovals(now: now, limit: 100) { approval, lease in
                audit.record(
                    org: approval.orgID, actor: nil, ip: nil, lease ? "approval.lease_expire" : "approval.expire",
                    "approval", approval.id.wire, Self.details(approval))
            }
            total += count
            if count < 100 { return total }
        }
    }

    /// Sweeps every `interval` until cancelled (a failed sweep is tried again at the next one).
    public func runSweeps(every interval: Duration) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            _ = try? await sweep()
        }
    }

    // MARK: pieces

    /// The person an agent answers to (its creator); for a person, themself.
    private func creator(of principal: Principal) async throws -> UUID? {
        guard principal.kind == .agent else { return principal.id }
        return try await agents.agent(id: principal.id)?.createdBy
    }

    private func record(_ caller: Caller, _ action: String, _ approval: Approval) -> AuditRecord {
        audit.record(caller, action, "approval", approval.id.wire, Self.details(approval))
    }

    /// What the audit log says of a request: ids, action, target, tier and status; never a summary's text.
    static func details(_ approval: Approval) -> [String: JSONValue] {
        var details: [String: JSONValue] = [
            "action": .string(approval.action), "target_type": .string(approval.targetType),
            "target_id": .string(approval.targetID), "risk_tier": .number(Double(approval.riskTier)),
            "status": .string(approval.status.rawValue), "requester_type": .string(approval.requesterKind.rawValue),
            "requester_id": .string(approval.requesterID.wire),
        ]
        if let vaultID = approval.vaultID { details["vault_id"] = .string(vaultID.wire) }
        if approval.status == .approved, approval.leaseExpiresAt != nil {
            details["uses_left"] = .number(Double(approval.usesLeft))
        }
        return details
    }
}

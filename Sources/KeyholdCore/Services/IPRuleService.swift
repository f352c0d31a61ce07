import Foundation

/// Org IP rules (`/v1/security/ip-rules`): owners and admins manage them, and `enforce` applies them to every
/// authenticated request and every token exchange of the org, right after the caller (org and kind) is known.
///
/// The rules are read on every check (one indexed read of a small table, sealed rows verified, through the storage's
/// exact in-memory copy, `AuthorizationCache`), so a change takes effect on the next request on every node.
public struct IPRuleService: Sendable {
    let store: any IPRuleStore
    let audit: AuditLog
    /// Refusals are counted and written per interval (see `enforce`).
    let failures: FailedAuthentications

    /// A bound on the rules one org keeps, so the read every request makes stays small.
    public static let maximumRules = 256
    public static let notFound = KeyholdError.notFound("IP rule not found")
    public static let refused = KeyholdError.forbidden("Requests from this address are not allowed by the organization's IP rules")

    public init(store: any IPRuleStore, audit: AuditLog, failures: FailedAuthentications) {
        self.store = store
        self.audit = audit
        self.failures = failures
    }

    // MARK: enforcement

    /// Throws 403 when the org's rules refuse `ip` for this caller. `method` says how the caller authenticated
    /// (`bearer`, `password`, `agent_key`, `api_key`, `refresh_token`, `invite`), for the audit event.
    ///
    /// The refusal is counted in `FailedAuthentications` (per org, address, caller and reason) and written as one
    /// `ip_rule.refused` event per interval, not one per request: a refused address is by definition one the org does
    /// not trust, and whoever holds a leaked credential there must not make the server write and fsync at request
    /// rate. A rule row that does not decode or verify throws `StoredDataError` (503): the org is refused, never let in.
    public func enforce(_ principal: Principal, ip: IPAddress?, method: String) async throws {
        let rules = try await store.ipRules(orgID: principal.orgID)
        guard !rules.isEmpty, let refusal = IPRuleSet(rules).refusal(for: ip, kind: principal.kind) else { return }
        failures.record(
            org: principal.orgID, action: "ip_rule.refused", method: method, resourceType: principal.kind.rawValue,
            resourceID: principal.id.wire, reason: refusal.rawValue, ip: ip)
        throw Self.refused
    }

    // MARK: management

    /// A rule as the client sends it (`rule_type` may be the docs' `block`; `applies_to` defaults to `all`).
    public struct Draft: Sendable {
        public var ruleType: String
        public var cidr: String
        public var label: String?
        public var appliesTo: String?

        public init(ruleType: String, cidr: String, label: String?, appliesTo: String?) {
            self.ruleType = ruleType
            self.cidr = cidr
            self.label = label
            self.appliesTo = appliesTo
        }
    }

    public func list(by request: Caller) async throws -> [IPRule] {
        try Self.requireAdmin(request.principal)
        return try await store.ipRules(orgID: request.principal.orgID)
    }

    public func create(_ draft: Draft, force: Bool, by request: Caller) async throws -> IPRule {
        try await audit.recordingDenial(request, "ip_rule.create", "ip_rule", nil) {
            try Self.requireAdmin(request.principal)
            let rule = try Self.rule(draft, orgID: request.principal.orgID, by: request.principal.id)
            let rules = try await store.ipRules(orgID: rule.orgID)
            guard rules.count < Self.maximumRules else {
                throw KeyholdError(.conflict, "An organization keeps at most \(Self.maximumRules) IP rules")
            }
            var details = Self.details(of: rule)
            try await guardLockOut(rules + [rule], force: force, request, "ip_rule.create", rule.id, &details)
            try await store.createIPRule(rule, audit: audit.record(request, "ip_rule.create", "ip_rule", rule.id.wire, details))
            return rule
        }
    }

    public func delete(_ id: UUID, force: Bool, by request: Caller) async throws {
        try await audit.recordingDenial(request, "ip_rule.delete", "ip_rule", id.wire) {
            try Self.requireAdmin(request.principal)
            let rules = try await store.ipRules(orgID: request.principal.orgID)
            guard let rule = rules.first(where: { $0.id == id }) else { throw Self.notFound }
            var details = Self.details(of: rule)
            try await guardLockOut(rules.filter { $0.id != id }, force: force, request, "ip_rule.delete", id, &details)
            guard try await store.deleteIPRule(
                id: id, orgID: request.principal.orgID,
                audit: audit.record(request, "ip_rule.delete", "ip_rule", id.wire, details))
            else { throw Self.notFound }
        }
    }

    /// The lock-out guard: a change after which the org's rules would refuse the caller's own address (for the
    /// caller's kind) is refused with 409 unless `force` is set; the refusal is recorded. A forced change says so in
    /// its event. (The check reads the rules outside the change's transaction: two admins changing rules at the same
    /// moment may together lock one of them out; `force` exists for the same outcome on purpose.)
    private func guardLockOut(
        _ after: [IPRule], force: Bool, _ request: Caller, _ action: String, _ id: UUID,
        _ details: inout [String: JSONValue]
    ) async throws {
        let ip = request.context.clientIP
        guard IPRuleSet(after).refusal(for: ip, kind: request.principal.kind) != nil else { return }
        if force {
            details["forced"] = true
            return
        }
        var refused = details
        refused["outcome"] = "refused"
        refused["reason"] = "would_lock_out"
        try await audit.append(audit.record(request, action, "ip_rule", id.wire, refused))
        throw KeyholdError(
            .conflict,
            "This change would refuse requests from your own address (\(ip?.description ?? "unknown")); "
                + "send \"force\": true to make it anyway")
    }

    /// What an event about a rule says of it.
    static func details(of rule: IPRule) -> [String: JSONValue] {
        var details: [String: JSONValue] = [
            "rule_type": .string(rule.type.rawValue), "cidr": .string(rule.cidrText),
            "applies_to": .string(rule.appliesTo.rawValue),
        ]
        if let label = rule.label { details["label"] = .string(label) }
        return details
    }

    static func requireAdmin(_ caller: Principal) throws {
        try caller.requireManager()
        guard caller.isOrgAdmin else { throw KeyholdError.forbidden("Only owners and admins manage IP rules") }
    }

    /// Validates a draft into a rule (400 naming the field).
    static func rule(_ draft: Draft, orgID: UUID, by creator: UUID) throws -> IPRule {
        guard let type = IPRuleType(wire: draft.ruleType) else {
            throw KeyholdError.badRequest("rule_type must be allow or deny")
        }
        let text = draft.cidr.trimmingCharacters(in: .whitespaces)
        guard text.utf8.count <= 64, !text.contains("%"), let cidr = CIDR(text) else {
            throw KeyholdError.badRequest("cidr must be an IPv4 or IPv6 address or network, such as 203.0.113.0/24 or 2001:db8::/32")
        }
        if let label = draft.label, label.count > 255 || label.unicodeScalars.contains(where: { $0.value == 0 }) {
            throw KeyholdError.badRequest("label must be at most 255 characters, without NUL")
        }
        guard let target = IPRuleTarget(rawValue: draft.appliesTo ?? "all") else {
            throw KeyholdError.badRequest("applies_to must be all, humans or agents")
        }
        return IPRule(
            id: UUID(), orgID: orgID, type: type, cidr: cidr, cidrText: text, label: draft.label, appliesTo: target,
            createdBy: creator, createdAt: .now)
    }
}

import Foundation

public enum Permission: String, Sendable, Codable, CaseIterable {
    case read, write, delete, rotate
}

/// The pure access decision. For a caller, a vault, a secret path and a permission, in this order:
///
/// 1. **org**: the vault must belong to the caller's org (otherwise the caller is told it does not exist);
/// 2. **vault binding**: an agent with a non-empty `vault_ids` may only touch those vaults;
/// 3. **scopes**: a caller with scopes (an agent's, or a scoped API key's) may only touch paths one of them
///    matches (`*` alone means any path; an empty list matches none);
/// 4. **policies** of this caller on this vault that are in force (not expired, conditions hold), whose pattern
///    matches the path and that cover the permission (`write` implies `delete` and `rotate`): any deny wins,
///    even over the owner bypass; otherwise any allow grants, unless one of the allows requires approval
///    (`require_approval`): then the caller needs an approved lease first (`approvalRequired`, the strictest of
///    those allows' rules; the stricter grant wins, as a deny does);
/// 5. **owner bypass**: the vault's creator and the org's owners and admins are allowed;
/// 6. otherwise **deny** (default deny).
///
/// `canSee` answers the vault-level question (may the caller know this vault exists?): steps 1–2, then any allow
/// policy in force, or the owner bypass.
public struct Authorizer: Sendable {
    public enum Decision: Sendable, Equatable {
        case allow
        case deny(reason: String)
        /// Allowed once a person approves: the access needs an unspent lease (`Approval`) under this rule.
        case approvalRequired(ApprovalRule)

        public var isAllowed: Bool { self == .allow }
        /// Why the access is not allowed now; nil when it is.
        public var refusal: String? {
            switch self {
            case .allow: nil
            case .deny(let reason): reason
            case .approvalRequired: "a person's approval is required"
            }
        }

        /// Allowed now or after an approval: what a metadata listing may show.
        public var isVisible: Bool {
            switch self {
            case .allow, .approvalRequired: true
            case .deny: false
            }
        }
    }

    public init() {}

    public func decide(
        _ principal: Principal, vault: Vault, path: SecretPath, permission: Permission, policies: [Policy],
        context: AccessContext
    ) -> Decision {
        if let denial = bindingDenial(principal, vault: vault) { return .deny(reason: denial) }
        guard withinScopes(principal, path: path) else { return .deny(reason: "path is outside the caller's scopes") }
        let matching = inForce(policies, principal, vault, context).filter {
            $0.covers(permission) && $0.pattern.matches(path)
        }
        if matching.contains(where: { $0.effect == .deny }) { return .deny(reason: "denied by policy") }
        let allows = matching.filter { $0.effect == .allow }
        if let rule = ApprovalRule.strictest(allows.compactMap(\.conditions.approval)) { return .approvalRequired(rule) }
        if !allows.isEmpty { return .allow }
        if isOwner(principal, of: vault) { return .allow }
        return .deny(reason: "no policy grants \(permission.rawValue)")
    }

    public func canSee(_ principal: Principal, vault: Vault, policies: [Policy], context: AccessContext) -> Bool {
        guard bindingDenial(principal, vault: vault) == nil else { return false }
        return isOwner(principal, of: vault)
            || inForce(policies, principal, vault, context).contains { $0.effect == .allow }
    }

    /// The vault's creator, or an owner or admin of its org: who may manage the vault and its policies.
    public func isOwner(_ principal: Principal, of vault: Vault) -> Bool {
        guard principal.orgID == vault.orgID else { return false }
        if principal.kind == vault.createdByType, principal.id == vault.createdBy { return true }
        return principal.isOrgAdmin
    }

    private func bindingDenial(_ principal: Principal, vault: Vault) -> String? {
        guard principal.orgID == vault.orgID else { return "vault of another org" }
        if principal.kind == .agent, !principal.vaultIDs.isEmpty, !principal.vaultIDs.contains(vault.id) {
            return "agent is not bound to this vault"
        }
        return nil
    }

    private func inForce(_ policies: [Policy], _ principal: Principal, _ vault: Vault, _ context: AccessContext)
        -> [Policy]
    {
        policies.filter { $0.vaultID == vault.id && $0.applies(to: principal, at: context) }
    }

    /// True when the caller has no scopes, or one of them matches `path`. An empty list matches nothing.
    public func withinScopes(_ principal: Principal, path: SecretPath) -> Bool {
        guard let scopes = principal.scopes else { return true }
        return scopes.contains { Self.scope($0, allows: path) }
    }

    static func scope(_ scope: String, allows path: SecretPath) -> Bool {
        if scope == "*" { return true }
        guard let pattern = try? PathPattern(validating: scope) else { return false }
        return pattern.matches(path)
    }
}

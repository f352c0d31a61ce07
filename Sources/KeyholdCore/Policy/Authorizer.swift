import Foundation

public enum Permission: String, Sendable, Codable, CaseIterable {
    case read, write, delete, rotate
}

/// A pure access decision for a caller on a vault (and a secret path in it).
///
/// Order, as 1Claw's: the vault must be in the caller's org (checked by the lookup: another org's vault is not
/// found), then the vault's creator and the org's owners and admins are allowed; everyone else is denied by
/// default. Path policies for members and agents slot in before the owner bypass.
public struct Authorizer: Sendable {
    public enum Decision: Sendable, Equatable {
        case allow
        case deny(reason: String)
    }

    public init() {}

    public func decide(_ principal: Principal, vault: Vault, path: SecretPath?, permission: Permission) -> Decision {
        guard principal.orgID == vault.orgID else { return .deny(reason: "vault of another org") }
        if principal.kind == vault.createdByType, principal.id == vault.createdBy { return .allow }
        if principal.kind == .user, let role = principal.role, role == .owner || role == .admin { return .allow }
        return .deny(reason: "no policy grants \(permission.rawValue)")
    }

    /// Throws 403 unless allowed.
    public func require(_ principal: Principal, vault: Vault, path: SecretPath?, permission: Permission)
        throws
    {
        if case .deny = decide(principal, vault: vault, path: path, permission: permission) {
            throw KeyholdError.forbidden("Access denied")
        }
    }
}

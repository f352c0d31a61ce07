import Foundation

/// Org members and invitations. Owners and admins manage members; only owners grant or take away ownership,
/// and an org always keeps at least one owner.
public struct OrgService: Sendable {
    let identities: any IdentityStore
    let hasher: CredentialHasher
    let audit: AuditLog

    public static let inviteLifetime: Int64 = 7 * 24 * 3600
    public static let memberNotFound = KeyholdError.notFound("Member not found")

    public init(identities: any IdentityStore, hasher: CredentialHasher, audit: AuditLog) {
        self.identities = identities
        self.hasher = hasher
        self.audit = audit
    }

    public func members(of caller: Principal) async throws -> [User] {
        try caller.requireHuman()
        return try await identities.users(orgID: caller.orgID)
    }

    /// Returns the invite token to hand to the invitee (there is no mail), valid for seven days.
    public func invite(email: String, role: String?, by request: Caller) async throws -> (Invite, String) {
        try await audit.recordingDenial(request, "member.invite", "invite", nil) { try await makeInvite(email, role, request) }
    }

    private func makeInvite(_ email: String, _ role: String?, _ request: Caller) async throws -> (Invite, String) {
        let caller = request.principal
        try requireAdmin(caller)
        let email = try AccountService.normalizedEmail(email)
        let role = try Self.role(role ?? "member")
        if role == .owner, caller.role != .owner { throw KeyholdError.forbidden("Only owners may invite owners") }
        if let existing = try await identities.user(email: email), existing.orgID == caller.orgID {
            throw KeyholdError(.conflict, "This email is already a member")
        }
        let token = CredentialKind.invite.generate()
        let invite = Invite(
            digest: hasher.digest(token), orgID: caller.orgID, email: email, role: role, createdBy: caller.id,
            expiresAt: Timestamp.now.adding(seconds: Self.inviteLifetime))
        try await identities.createInvite(
            invite,
            audit: audit.record(request, "member.invite", "invite", nil, ["email": .string(email), "role": .string(role.rawValue)]))
        return (invite, token)
    }

    public func updateRole(of userID: UUID, to roleName: String, by request: Caller) async throws -> User {
        try await audit.recordingDenial(request, "member.role_update", "user", userID.wire) {
            try await changeRole(of: userID, to: roleName, request)
        }
    }

    private func changeRole(of userID: UUID, to roleName: String, _ request: Caller) async throws -> User {
        let caller = request.principal
        try requireAdmin(caller)
        let role = try Self.role(roleName)
        guard let member = try await identities.user(id: userID), member.orgID == caller.orgID else {
            throw Self.memberNotFound
        }
        if (role == .owner || member.role == .owner), caller.role != .owner {
            throw KeyholdError.forbidden("Only owners may grant or take away ownership")
        }
        do {
            let record = audit.record(
                request, "member.role_update", "user", userID.wire,
                ["from": .string(member.role.rawValue), "to": .string(role.rawValue)])
            guard try await identities.updateRole(userID: userID, orgID: caller.orgID, role: role, audit: record) else {
                throw Self.memberNotFound
            }
        } catch StorageError.lastOwner {
            throw KeyholdError(.conflict, "An org must keep at least one owner")
        }
        guard let updated = try await identities.user(id: userID) else { throw Self.memberNotFound }
        return updated
    }

    public func remove(_ userID: UUID, by request: Caller) async throws {
        try await audit.recordingDenial(request, "member.remove", "user", userID.wire) { try await removeMember(userID, request) }
    }

    private func removeMember(_ userID: UUID, _ request: Caller) async throws {
        let caller = request.principal
        try requireAdmin(caller)
        guard let member = try await identities.user(id: userID), member.orgID == caller.orgID else {
            throw Self.memberNotFound
        }
        if member.role == .owner, caller.role != .owner { throw KeyholdError.forbidden("Only owners may remove owners") }
        do {
            let record = audit.record(request, "member.remove", "user", userID.wire, ["email": .string(member.email)])
            guard try await identities.removeUser(id: userID, orgID: caller.orgID, audit: record) else {
                throw Self.memberNotFound
            }
        } catch StorageError.lastOwner {
            throw KeyholdError(.conflict, "An org must keep at least one owner")
        }
    }

    private func requireAdmin(_ caller: Principal) throws {
        try caller.requireManager()
        guard caller.isOrgAdmin else { throw KeyholdError.forbidden("Only owners and admins manage members") }
    }

    static func role(_ name: String) throws -> OrgRole {
        guard let role = OrgRole(rawValue: name) else { throw KeyholdError.badRequest("role must be owner, admin or member") }
        return role
    }
}

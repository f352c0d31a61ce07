import Foundation

/// Sign-up, password login and the caller's own profile.
public struct AccountService: Sendable {
    let store: any IdentityStore
    let hasher: PasswordHasher
    let credentials: CredentialHasher
    let audit: AuditLog
    let throttle: LoginThrottle
    let failures: FailedAuthentications

    public init(
        store: any IdentityStore, hasher: PasswordHasher, credentials: CredentialHasher, audit: AuditLog,
        throttle: LoginThrottle, failures: FailedAuthentications
    ) {
        self.failures = failures
        self.store = store
        self.hasher = hasher
        self.credentials = credentials
        self.audit = audit
        self.throttle = throttle
    }

    /// A lower-cased address: an RFC 5322 dot-atom local part and a DNS domain with at least two labels and an
    /// alphabetic top-level label.
    public static func normalizedEmail(_ email: String) throws -> String {
        let invalid = KeyholdError.badRequest("A valid email address is required")
        let trimmed = email.trimmingCharacters(in: .whitespaces).lowercased()
        let parts = trimmed.split(separator: "@", omittingEmptySubsequences: false)
        guard trimmed.utf8.count <= 254, parts.count == 2, (1...64).contains(parts[0].utf8.count) else { throw invalid }
        let atext = Set("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-".utf8)
        let local = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard local.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(atext.contains) }) else { throw invalid }
        let labels = parts[1].split(separator: ".", omittingEmptySubsequences: false)
        let labelBytes = Set("abcdefghijklmnopqrstuvwxyz0123456789-".utf8)
        guard labels.count >= 2,
            labels.allSatisfy({
                (1...63).contains($0.utf8.count) && $0.utf8.allSatisfy(labelBytes.contains) && $0.first != "-"
                    && $0.last != "-"
            }),
            let top = labels.last, top.count >= 2, top.allSatisfy(\.isLetter)
        else { throw invalid }
        return trimmed
    }

    /// What a sign-up led to. An open sign-up answers the same whether the email was new or taken, so the
    /// answer reveals nothing about who has an account.
    public enum SignupOutcome: Sendable {
        /// A user who joined an org with an invite (the invite proves who they are, so they get a session).
        case joined(User)
        /// An open sign-up: a new account and org, or nothing at all when the email was taken.
        case received(email: String)
    }

    /// Creates an org with the new user as its owner or, with an invite token, joins the inviting org with the
    /// invited role (the invite must be unexpired and for the same email). Every cheap check (shape, password
    /// policy, the per-address throttle, the invite) runs before the password is hashed. A failed sign-up (a
    /// taken email, an invalid invite) counts against the client address like a failed login; a taken email
    /// leaves its account untouched and answers exactly as a new one, after the same bcrypt work.
    public func signup(
        email: String, password: String, displayName: String?, inviteToken: String? = nil, ip: IPAddress?
    ) async throws -> SignupOutcome {
        let email = try Self.normalizedEmail(email)
        try PasswordPolicy.validate(password)
        if let displayName, displayName.count > 255 { throw KeyholdError.badRequest("display_name is too long") }
        let address = ip?.description
        try throttle.attempt(account: nil, address: address)
        let now = Timestamp.now
        if let inviteToken {
            let invalid = KeyholdError.badRequest("invite_token is not valid for this email, or has expired")
            guard CredentialKind.invite.matchesShape(inviteToken) else { throw invalid }
            let digest = credentials.digest(inviteToken)
            guard let invite = try await store.invite(digest: digest), invite.email == email, now < invite.expiresAt
            else { throw invalid }
            let user = User(
                id: UUID(), orgID: invite.orgID, email: email, passwordHash: try await hasher.hash(password),
                displayName: displayName, role: invite.role, createdAt: now)
            let member = Principal(kind: .user, id: user.id, orgID: invite.orgID, role: invite.role)
            let record = audit.record(
                org: invite.orgID, actor: member, ip: ip, "member.join", "user", user.id.wire,
                ["email": .string(email), "role": .string(invite.role.rawValue)])
            do {
                guard let joined = try await store.redeemInvite(digest: digest, user: user, now: now, audit: record)
                else { throw invalid }
                throttle.succeeded(account: nil, address: address)
                return .joined(joined)
            } catch StorageError.conflict {
                throw invalid
            }
        }
        let org = Org(id: UUID(), name: displayName ?? email, createdAt: now)
        let user = User(
            id: UUID(), orgID: org.id, email: email, passwordHash: try await hasher.hash(password),
            displayName: displayName, role: .owner, createdAt: now)
        let owner = Principal(kind: .user, id: user.id, orgID: org.id, role: .owner)
        do {
            try await store.createOrg(
                org, owner: user,
                audit: audit.record(org: org.id, actor: owner, ip: ip, "user.signup", "user", user.id.wire, ["email": .string(email)]))
        } catch StorageError.conflict {
            // Taken: nothing changes.
        }
        // New or taken, the attempt gives its slot back alike: the throttle must not tell the two apart. (Failed
        // invite sign-ups keep theirs; open ones cost the caller the same bcrypt work either way.)
        throttle.succeeded(account: nil, address: address)
        return .received(email: email)
    }

    /// Email and password to a user; the same 401 whether the email is unknown or the password wrong. A failure
    /// is audited in the user's org (or the system chain for an unknown email) before the 401 is sent.
    public func authenticate(email: String, password: String, ip: IPAddress?) async throws -> User {
        let normalized = try? Self.normalizedEmail(email)
        let account = normalized ?? "invalid"
        try throttle.attempt(account: account, address: ip?.description)
        let user: User? = if let normalized { try await store.user(email: normalized) } else { nil }
        guard try await hasher.verify(password, hash: user?.passwordHash), let user else {
            if let user {
                try await audit.append(
                    audit.record(
                        org: user.orgID, actor: nil, ip: ip, "auth.failure", "user", user.id.wire,
                        [
                            "method": "password", "outcome": "denied", "reason": "invalid_credentials",
                            "email": .string(user.email),
                        ]))
            } else {
                // An unknown email names no org: counted, not written one by one (see FailedAuthentications).
                failures.record(method: "password", resourceType: "user", ip: ip)
            }
            throw KeyholdError.invalidCredentials
        }
        throttle.succeeded(account: account, address: ip?.description)
        return user
    }

    /// `PATCH /v1/auth/me`: the display name and, with the current password, a new one. A new password ends every
    /// other session's refresh tokens (their access tokens expire within 15 minutes); the caller's session goes on.
    public func updateProfile(
        _ caller: Caller, displayName: String??, currentPassword: String?, newPassword: String?
    ) async throws -> User {
        let principal = caller.principal
        try principal.requireHuman()
        if case .some(.some(let name)) = displayName, name.count > 255 {
            throw KeyholdError.badRequest("display_name is too long")
        }
        var newHash: String?
        if currentPassword != nil || newPassword != nil {
            try await audit.recordingDenial(caller, "user.password_change", "user", principal.id.wire) {
                try principal.requireManager()
            }
            guard let currentPassword, let newPassword else {
                throw KeyholdError.badRequest("A password change needs current_password and new_password")
            }
            try PasswordPolicy.validate(newPassword)
            let user = try await self.user(for: principal)
            let account = user.email, address = caller.context.clientIP?.description
            try throttle.attempt(account: account, address: address)
            guard try await hasher.verify(currentPassword, hash: user.passwordHash) else {
                try await audit.append(
                    audit.record(
                        caller, "user.password_change", "user", user.id.wire,
                        ["outcome": "denied", "reason": "invalid_credentials"]))
                throw KeyholdError.badRequest("current_password is not the account's password")
            }
            throttle.succeeded(account: account, address: address)
            newHash = try await hasher.hash(newPassword)
        }
        var details: [String: JSONValue] = [:]
        if displayName != nil { details["display_name_changed"] = true }
        if newHash != nil { details["password_changed"] = true }
        guard let updated = try await store.updateProfile(
            userID: principal.id, orgID: principal.orgID, displayName: displayName, passwordHash: newHash,
            keepingFamily: principal.refreshFamily,
            audit: audit.record(caller, newHash == nil ? "user.update" : "user.password_change", "user", principal.id.wire, details))
        else { throw KeyholdError.unauthenticated }
        return updated
    }

    /// `DELETE /v1/auth/me`: removes the caller's account, with its keys, refresh tokens, policies and MFA (every
    /// token of the user stops working at once: each request looks the user up), unless they are their org's last
    /// owner. Needs the password (`X-Auth-Confirm`) and the confirmation phrase.
    public func deleteAccount(_ caller: Caller, password: String?, confirmation: String?) async throws {
        let principal = caller.principal
        try await audit.recordingDenial(caller, "user.delete", "user", principal.id.wire) { try principal.requireManager() }
        guard confirmation == "DELETE MY ACCOUNT" else {
            throw KeyholdError.badRequest(#"confirmation must be "DELETE MY ACCOUNT""#)
        }
        guard let password, !password.isEmpty else {
            throw KeyholdError.badRequest("X-Auth-Confirm must carry the account's password")
        }
        let user = try await self.user(for: principal)
        let address = caller.context.clientIP?.description
        try throttle.attempt(account: user.email, address: address)
        guard try await hasher.verify(password, hash: user.passwordHash) else {
            try await audit.append(
                audit.record(caller, "user.delete", "user", user.id.wire, ["outcome": "denied", "reason": "invalid_credentials"]))
            throw KeyholdError.badRequest("X-Auth-Confirm must carry the account's password")
        }
        throttle.succeeded(account: user.email, address: address)
        do {
            guard try await store.removeUser(
                id: user.id, orgID: user.orgID,
                audit: audit.record(caller, "user.delete", "user", user.id.wire, ["email": .string(user.email)]))
            else { throw KeyholdError.unauthenticated }
        } catch StorageError.lastOwner {
            throw KeyholdError(.conflict, "The org's last owner cannot delete their account; make another member owner first")
        }
    }

    public func user(for principal: Principal) async throws -> User {
        guard principal.kind == .user else {
            throw KeyholdError.forbidden("This profile is for people; an agent reads its own at /v1/agents/me")
        }
        guard let user = try await store.user(id: principal.id),
            user.orgID == principal.orgID
        else { throw KeyholdError.unauthenticated }
        return user
    }
}

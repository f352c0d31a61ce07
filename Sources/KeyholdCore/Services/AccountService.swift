import Foundation

/// Sign-up, password login and the caller's own profile.
public struct AccountService: Sendable {
    let store: any IdentityStore
    let hasher: PasswordHasher
    let credentials: CredentialHasher

    public init(store: any IdentityStore, hasher: PasswordHasher, credentials: CredentialHasher) {
        self.store = store
        self.hasher = hasher
        self.credentials = credentials
    }

    public static func normalizedEmail(_ email: String) throws -> String {
        let trimmed = email.trimmingCharacters(in: .whitespaces).lowercased()
        let parts = trimmed.split(separator: "@", omittingEmptySubsequences: false)
        guard trimmed.utf8.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
            trimmed.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "<" && $0 != ">" })
        else { throw KeyholdError.badRequest("A valid email address is required") }
        return trimmed
    }

    /// Creates an org with the new user as its owner or, with an invite token, joins the inviting org with the
    /// invited role (the invite must be unexpired and for the same email).
    public func signup(email: String, password: String, displayName: String?, inviteToken: String? = nil) async throws
        -> User
    {
        let email = try Self.normalizedEmail(email)
        try PasswordPolicy.validate(password)
        if let displayName, displayName.count > 255 { throw KeyholdError.badRequest("display_name is too long") }
        if let inviteToken, !CredentialKind.invite.matchesShape(inviteToken) {
            throw KeyholdError.badRequest("invite_token is not valid")
        }
        let now = Timestamp.now
        let org = Org(id: UUID(), name: displayName ?? email, createdAt: now)
        let user = User(
            id: UUID(), orgID: org.id, email: email, passwordHash: try await hasher.hash(password),
            displayName: displayName, role: .owner, createdAt: now)
        do {
            if let inviteToken {
                guard let joined = try await store.redeemInvite(digest: credentials.digest(inviteToken), user: user, now: now)
                else { throw KeyholdError.badRequest("invite_token is not valid for this email, or has expired") }
                return joined
            }
            try await store.createOrg(org, owner: user)
        } catch StorageError.conflict {
            throw KeyholdError(.conflict, "An account with this email already exists")
        }
        return user
    }

    /// Email and password to a user; the same 401 whether the email is unknown or the password wrong.
    public func authenticate(email: String, password: String) async throws -> User {
        let user: User? =
            if let email = try? Self.normalizedEmail(email) { try await store.user(email: email) } else { nil }
        guard try await hasher.verify(password, hash: user?.passwordHash), let user else {
            throw KeyholdError.invalidCredentials
        }
        return user
    }

    public func user(for principal: Principal) async throws -> User {
        guard principal.kind == .user, let user = try await store.user(id: principal.id),
            user.orgID == principal.orgID
        else { throw KeyholdError.unauthenticated }
        return user
    }
}

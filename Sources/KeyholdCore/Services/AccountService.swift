import Foundation

/// Sign-up, password login and the caller's own profile.
public struct AccountService: Sendable {
    let store: any IdentityStore
    let hasher: PasswordHasher
    let tokens: TokenService

    public init(store: any IdentityStore, hasher: PasswordHasher, tokens: TokenService) {
        self.store = store
        self.hasher = hasher
        self.tokens = tokens
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

    /// Creates an org with the new user as its owner.
    public func signup(email: String, password: String, displayName: String?) async throws -> User {
        let email = try Self.normalizedEmail(email)
        try PasswordPolicy.validate(password)
        if let displayName, displayName.count > 255 { throw KeyholdError.badRequest("display_name is too long") }
        let now = Timestamp.now
        let org = Org(id: UUID(), name: displayName ?? email, createdAt: now)
        let user = User(
            id: UUID(), orgID: org.id, email: email, passwordHash: try await hasher.hash(password),
            displayName: displayName, role: .owner, createdAt: now)
        do {
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

    public func login(email: String, password: String) async throws -> TokenService.IssuedToken {
        let user = try await authenticate(email: email, password: password)
        return try await tokens.issue(for: Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role))
    }

    public func user(for principal: Principal) async throws -> User {
        guard principal.kind == .user, let user = try await store.user(id: principal.id),
            user.orgID == principal.orgID
        else { throw KeyholdError.unauthenticated }
        return user
    }
}

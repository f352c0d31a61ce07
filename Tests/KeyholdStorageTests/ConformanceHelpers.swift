import Foundation
import KeyholdCore
import KeyholdPostgres
import KeyholdSQLite
import Logging
import Testing

/// Small fixtures the conformance cases share: more members, orgs, vaults and credentials, and a snapshot of
/// everything stored, to show that a refused call changed nothing.
extension StorageConformanceTests {
    /// Everything the storage lists for some orgs, plus the audit heads, keys and system values.
    struct Stored: Equatable {
        var users: [User] = []
        var agents: [Agent] = []
        var apiKeys: [UserAPIKey] = []
        var vaults: [Vault] = []
        var policies: [Policy] = []
        var versions: [SecretVersionInfo] = []
        var shares: [Share] = []
        var capabilityLeases: [CapabilityLease] = []
        var heads: [AuditHead?] = []
        var keks: [KEKHandle] = []
        var systemValues: [String: Data] = [:]
    }

    /// The snapshot of the fixture's org and of `others` (reads only: no access is counted).
    func stored(_ f: Fixture, others: [UUID] = []) async throws -> Stored {
        var s = Stored()
        for org in [f.org.id] + others {
            let users = try await f.storage.users(orgID: org)
            s.users += users
            for user in users { s.apiKeys += try await f.storage.apiKeys(userID: user.id) }
            s.agents += try await f.storage.agents(orgID: org)
            let vaults = try await f.storage.vaults(orgID: org)
            s.vaults += vaults
            for vault in vaults {
                s.policies += try await f.storage.policies(vaultID: vault.id)
                s.capabilityLeases += try await f.storage.capabilityLeases(vaultID: vault.id, limit: 10_000, offset: 0)
                for latest in try await f.storage.latestVersions(vaultID: vault.id, prefix: nil, after: nil, limit: 10_000) {
                    s.versions += try await f.storage.versions(vaultID: vault.id, path: latest.path)
                }
            }
            s.shares += try await f.storage.orgShares(orgID: org)
            s.heads.append(try await f.storage.auditHead(orgID: org))
        }
        s.heads.append(try await f.storage.auditHead(orgID: AuditEntry.systemOrg))
        s.keks = try await f.storage.allKEKs()
        s.systemValues = try await f.storage.allSystemValues()
        return s
    }

    /// A stored invite to the fixture's org.
    @discardableResult
    func invite(
        _ f: Fixture, email: String = "\(UUID())@example.com", role: OrgRole = .member,
        expiresAt: Timestamp = Timestamp.now.adding(seconds: 600)
    ) async throws -> Invite {
        let invite = Invite(
            digest: Data(UUID().uuidString.utf8), orgID: f.org.id, email: email, role: role, createdBy: f.owner.id,
            expiresAt: expiresAt)
        try await f.storage.createInvite(invite, audit: testAudit)
        return invite
    }

    /// A new member of the fixture's org with `role`, joined through an invite.
    func join(_ f: Fixture, role: OrgRole, createdAt: Timestamp = .now) async throws -> User {
        let invite = try await self.invite(f, role: role)
        return try #require(
            try await f.storage.redeemInvite(
                digest: invite.digest, user: newUser(email: invite.email, createdAt: createdAt), now: .now, audit: testAudit))
    }

    /// A user as sign-up presents it (org and role are the invite's or the new org's to decide).
    func newUser(email: String = "\(UUID())@example.com", createdAt: Timestamp = .now) -> User {
        User(id: UUID(), orgID: UUID(), email: email, passwordHash: "$2b$other", displayName: "New", role: .owner,
             createdAt: createdAt)
    }

    /// Another org with its owner and one vault.
    func otherOrg(_ f: Fixture) async throws -> (org: Org, owner: User, vault: Vault) {
        let org = Org(id: UUID(), name: "globex", createdAt: .now)
        let owner = User(
            id: UUID(), orgID: org.id, email: "\(UUID())@example.com", passwordHash: "$2b$hash", displayName: nil,
            role: .owner, createdAt: .now)
        try await f.storage.createOrg(org, owner: owner, audit: testAudit)
        return (org, owner, try await vault(f, orgID: org.id, by: owner.id))
    }

    /// A new vault (with its own key) in `orgID`, by default the fixture's.
    func vault(_ f: Fixture, orgID: UUID? = nil, by creator: UUID? = nil, createdAt: Timestamp = .now) async throws -> Vault {
        let vault = Vault(
            id: UUID(), orgID: orgID ?? f.org.id, name: "v", description: "d", createdBy: creator ?? f.owner.id,
            createdByType: .user, kekID: "kek-\(UUID())", createdAt: createdAt)
        try await f.storage.createVault(vault, kek: KEKHandle(id: vault.kekID, material: Data([5])), audit: testAudit)
        return vault
    }

    func apiKey(_ f: Fixture, user: User? = nil, prefix: String = "1ck_abcdefgh", createdAt: Timestamp = .now) -> UserAPIKey {
        UserAPIKey(
            id: UUID(), userID: (user ?? f.owner).id, orgID: f.org.id, name: "ci", keyPrefix: prefix,
            keyDigest: Data(UUID().uuidString.utf8), scopes: ["a/**"], isActive: true, createdAt: createdAt, expiresAt: nil)
    }

    func refreshToken(
        _ f: Fixture, _ digest: UInt8, family: UUID = UUID(), kind: PrincipalKind = .user, principal: UUID? = nil,
        expiresAt: Timestamp = Timestamp.now.adding(seconds: 600)
    ) -> RefreshTokenRecord {
        RefreshTokenRecord(
            digest: Data([digest]), family: family, principalKind: kind, principalID: principal ?? f.owner.id,
            orgID: f.org.id, expiresAt: expiresAt, scopes: ["prod/**"], apiKeyID: UUID(), keyVersion: 3)
    }

    /// Reads a path's latest version (counting the read).
    func read(_ f: Fixture, _ path: String, vault: UUID? = nil, version: Int? = nil, now: Timestamp = .now) async throws
        -> SealedSecretVersion
    {
        try await f.storage.readVersion(
            vaultID: vault ?? f.vault.id, path: path, version: version, now: now, audit: testAudit)
    }
}

extension Backend {
    /// Opens the same database again, as a restarted server would.
    func reopen(_ storage: any Storage) async throws -> any Storage {
        switch self {
        case .sqlite:
            return try await SQLiteStorage.open(path: try #require((storage as? SQLiteStorage)?.path), logger: Logger(label: "test"))
        case .postgres:
            let url = try #require(Self.databaseURL)
            let name = try #require((storage as? PostgresStorage)?.databaseName)
            var components = try #require(URLComponents(string: url))
            components.path = "/" + name
            return try await PostgresStorage.open(
                url: try #require(components.string), logger: Logger(label: "test"), maximumConnections: 4, connectTimeout: 60)
        }
    }
}

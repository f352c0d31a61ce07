import Foundation

public enum OrgRole: String, Sendable, Codable, CaseIterable {
    case owner, admin, member
}

public enum PrincipalKind: String, Sendable, Codable {
    case user, agent
}

/// Who is calling, as established by authentication.
public struct Principal: Sendable, Hashable {
    public let kind: PrincipalKind
    public let id: UUID
    public let orgID: UUID
    /// The org role of a user; agents have none.
    public let role: OrgRole?
    /// Path globs that cap what this caller may touch (an agent's scopes, or a scoped API key); nil = no cap.
    public let scopes: [String]?
    /// An agent's vault binding; empty = every vault of the org.
    public let vaultIDs: [UUID]
    /// The access token's id and expiry, for revocation; nil when the caller used an API key directly.
    public let tokenID: String?
    public let tokenExpiresAt: Timestamp?
    /// The personal API key this session comes from: deleting the key ends the session.
    public let apiKeyID: UUID?
    /// The refresh-token family the access token was issued with: logging out ends the family.
    public let refreshFamily: UUID?
    /// An agent in intents mode (`Agent.intentsAPIEnabled`), as its stored row says on this request.
    public let intentsAPIEnabled: Bool

    public init(
        kind: PrincipalKind, id: UUID, orgID: UUID, role: OrgRole?, scopes: [String]? = nil, vaultIDs: [UUID] = [],
        tokenID: String? = nil, tokenExpiresAt: Timestamp? = nil, apiKeyID: UUID? = nil, refreshFamily: UUID? = nil,
        intentsAPIEnabled: Bool = false
    ) {
        self.intentsAPIEnabled = intentsAPIEnabled
        self.apiKeyID = apiKeyID
        self.refreshFamily = refreshFamily
        self.kind = kind
        self.id = id
        self.orgID = orgID
        self.role = role
        self.scopes = scopes
        self.vaultIDs = vaultIDs
        self.tokenID = tokenID
        self.tokenExpiresAt = tokenExpiresAt
    }

    /// A caller capped by scopes reaches only the paths they match; an empty list caps it to none.
    public var isScoped: Bool { scopes != nil }

    public var isOrgAdmin: Bool { kind == .user && (role == .owner || role == .admin) }

    /// The secret types whose values this caller may not read, whatever its policies say.
    public var refusedSecretTypes: Set<SecretType> { intentsAPIEnabled ? Agent.intentsRefusedTypes : [] }

    /// Throws 403 unless the caller is a person (agents may not manage agents, members or keys).
    public func requireHuman() throws {
        guard kind == .user else { throw KeyholdError.forbidden("This operation is for people, not agents") }
    }

    /// Throws 403 unless the caller is a person without a scope cap: managing keys, agents, members, policies
    /// and whole vaults reaches beyond any path, so a scoped key could use it to widen its own access.
    public func requireManager() throws {
        try requireHuman()
        guard !isScoped else { throw KeyholdError.forbidden("A scoped API key cannot manage keys, agents, members or policies") }
    }
}

public struct Org: Sendable, Hashable {
    public let id: UUID
    public let name: String
    public let createdAt: Timestamp

    public init(id: UUID, name: String, createdAt: Timestamp) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
    }
}

public struct User: Sendable, Hashable {
    public let id: UUID
    public let orgID: UUID
    public let email: String
    public let passwordHash: String
    public let displayName: String?
    public let role: OrgRole
    public let createdAt: Timestamp

    public init(
        id: UUID, orgID: UUID, email: String, passwordHash: String, displayName: String?, role: OrgRole,
        createdAt: Timestamp
    ) {
        self.id = id
        self.orgID = orgID
        self.email = email
        self.passwordHash = passwordHash
        self.displayName = displayName
        self.role = role
        self.createdAt = createdAt
    }
}

public struct Vault: Sendable, Hashable {
    public let id: UUID
    public let orgID: UUID
    public let name: String
    public let description: String?
    public let createdBy: UUID
    public let createdByType: PrincipalKind
    /// The KEK that new versions are written under.
    public let kekID: String
    public let createdAt: Timestamp
    /// With customer-managed keys on (`CMEK`), the SHA-256 fingerprint (64 lower-case hex) of the client's key: every
    /// value written must then be a CMEK ciphertext, and the version records this fingerprint. Nil: CMEK is off.
    public let cmekFingerprint: String?

    public init(
        id: UUID, orgID: UUID, name: String, description: String?, createdBy: UUID, createdByType: PrincipalKind,
        kekID: String, createdAt: Timestamp, cmekFingerprint: String? = nil
    ) {
        self.id = id
        self.orgID = orgID
        self.name = name
        self.description = description
        self.createdBy = createdBy
        self.createdByType = createdByType
        self.kekID = kekID
        self.createdAt = createdAt
        self.cmekFingerprint = cmekFingerprint
    }

    /// The same vault with CMEK on under `fingerprint`, or off (nil).
    public func with(cmekFingerprint: String?) -> Vault {
        Vault(
            id: id, orgID: orgID, name: name, description: description, createdBy: createdBy,
            createdByType: createdByType, kekID: kekID, createdAt: createdAt, cmekFingerprint: cmekFingerprint)
    }
}

/// Everything about one secret version except its value.
public struct SecretVersionInfo: Sendable, Hashable {
    public let secretID: UUID
    public let path: String
    public let version: Int
    public let type: SecretType
    public let metadata: JSONValue?
    public let rotationPolicy: JSONValue?
    public let expiresAt: Timestamp?
    public let maxAccessCount: Int?
    public let accessCount: Int
    public let isDisabled: Bool
    /// The secret (all its versions) was deleted.
    public let isDeleted: Bool
    public let createdBy: UUID
    public let createdAt: Timestamp
    /// The fingerprint of the customer-managed key the value is encrypted with (a CMEK ciphertext), or nil.
    public let cmekFingerprint: String?

    public init(
        secretID: UUID, path: String, version: Int, type: SecretType, metadata: JSONValue?,
        rotationPolicy: JSONValue?, expiresAt: Timestamp?, maxAccessCount: Int?, accessCount: Int,
        isDisabled: Bool, isDeleted: Bool, createdBy: UUID, createdAt: Timestamp, cmekFingerprint: String? = nil
    ) {
        self.cmekFingerprint = cmekFingerprint
        self.secretID = secretID
        self.path = path
        self.version = version
        self.type = type
        self.metadata = metadata
        self.rotationPolicy = rotationPolicy
        self.expiresAt = expiresAt
        self.maxAccessCount = maxAccessCount
        self.accessCount = accessCount
        self.isDisabled = isDisabled
        self.isDeleted = isDeleted
        self.createdBy = createdBy
        self.createdAt = createdAt
    }

    /// Why this version cannot be read now (410 Gone), or nil when it can.
    public func goneReason(now: Timestamp) -> String? {
        if isDeleted { return "Secret has been deleted" }
        if isDisabled { return "Version has been disabled" }
        if let expiresAt, expiresAt <= now { return "Secret has expired" }
        if let maxAccessCount, accessCount >= maxAccessCount { return "Secret has reached its maximum access count" }
        return nil
    }
}

/// A stored version with its sealed value and the key that wraps its data key.
public struct SealedSecretVersion: Sendable {
    public let info: SecretVersionInfo
    public let kekID: String
    public let wrappedDataKey: Data
    public let ciphertext: Data

    public init(info: SecretVersionInfo, kekID: String, wrappedDataKey: Data, ciphertext: Data) {
        self.info = info
        self.kekID = kekID
        self.wrappedDataKey = wrappedDataKey
        self.ciphertext = ciphertext
    }
}

/// A version about to be written; `version` and `ciphertext` come from the transaction that assigns the number.
public struct NewSecretVersion: Sendable {
    public let vaultID: UUID
    public let path: String
    public let type: SecretType?
    public let metadata: JSONValue?
    public let rotationPolicy: JSONValue?
    public let expiresAt: Timestamp?
    public let maxAccessCount: Int?
    public let createdBy: UUID
    public let createdAt: Timestamp
    public let kekID: String
    public let wrappedDataKey: Data
    /// The vault's CMEK fingerprint the value was checked against (nil: CMEK off); the write commits only while the
    /// vault still says the same.
    public let cmekFingerprint: String?

    public init(
        vaultID: UUID, path: String, type: SecretType?, metadata: JSONValue?, rotationPolicy: JSONValue?,
        expiresAt: Timestamp?, maxAccessCount: Int?, createdBy: UUID, createdAt: Timestamp, kekID: String,
        wrappedDataKey: Data, cmekFingerprint: String? = nil
    ) {
        self.cmekFingerprint = cmekFingerprint
        self.vaultID = vaultID
        self.path = path
        self.type = type
        self.metadata = metadata
        self.rotationPolicy = rotationPolicy
        self.expiresAt = expiresAt
        self.maxAccessCount = maxAccessCount
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.kekID = kekID
        self.wrappedDataKey = wrappedDataKey
    }
}

public struct Agent: Sendable, Hashable {
    public var id: UUID
    public var orgID: UUID
    public var name: String
    public var description: String?
    public var isActive: Bool
    public var scopes: [String]?
    public var vaultIDs: [UUID]
    public var tokenTTLSeconds: Int?
    public var expiresAt: Timestamp?
    public var createdBy: UUID
    public var createdAt: Timestamp
    /// The first characters of the current `ocv_` key, for lookup; the key itself is kept only as a keyed hash.
    public var keyPrefix: String
    public var keyDigest: Data
    /// Bumped on every key rotation; tokens minted under an older key stop working.
    public var keyVersion: Int
    /// The environment the agent belongs to (a slug, `Agent.validateEnvironment`), or none.
    public var environment: String?
    /// The agent may resolve env vars only for its own `environment`.
    public var environmentLocked: Bool
    /// The agent may omit `environment` when it resolves env vars, and gets its own.
    public var envAutoResolve: Bool
    /// When the `ocv_` key stops exchanging for tokens; a token minted from it never outlives it.
    public var apiKeyExpiresAt: Timestamp?
    /// 1Claw's intents mode: the agent signs through the API and never reads key material itself, so its reads of
    /// the `intentsRefusedTypes` answer 403 (its own identity keys included).
    public var intentsAPIEnabled: Bool

    /// The secret types an agent in intents mode may not read.
    public static let intentsRefusedTypes: Set<SecretType> = [.privateKey, .sshKey]
    /// The public halves of the agent's identity keys (`AgentIdentityKeys`), since `identityKeysCreatedAt`; nil for
    /// an agent made before Keyhold had them, until its keys are rotated.
    public var sshPublicKey: String?
    public var ecdhPublicKey: String?
    public var identityKeysCreatedAt: Timestamp?
    /// The public keys it had before, oldest first.
    public var identityKeyHistory: [AgentIdentityKey]

    public init(
        id: UUID, orgID: UUID, name: String, description: String?, isActive: Bool, scopes: [String]?,
        vaultIDs: [UUID], tokenTTLSeconds: Int?, expiresAt: Timestamp?, createdBy: UUID, createdAt: Timestamp,
        keyPrefix: String, keyDigest: Data, keyVersion: Int, environment: String? = nil,
        environmentLocked: Bool = false, envAutoResolve: Bool = true, apiKeyExpiresAt: Timestamp? = nil,
        intentsAPIEnabled: Bool = false, sshPublicKey: String? = nil, ecdhPublicKey: String? = nil,
        identityKeysCreatedAt: Timestamp? = nil, identityKeyHistory: [AgentIdentityKey] = []
    ) {
        self.intentsAPIEnabled = intentsAPIEnabled
        self.sshPublicKey = sshPublicKey
        self.ecdhPublicKey = ecdhPublicKey
        self.identityKeysCreatedAt = identityKeysCreatedAt
        self.identityKeyHistory = identityKeyHistory
        self.id = id
        self.orgID = orgID
        self.name = name
        self.description = description
        self.isActive = isActive
        self.scopes = scopes
        self.vaultIDs = vaultIDs
        self.tokenTTLSeconds = tokenTTLSeconds
        self.expiresAt = expiresAt
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.keyPrefix = keyPrefix
        self.keyDigest = keyDigest
        self.keyVersion = keyVersion
        self.environment = environment
        self.environmentLocked = environmentLocked
        self.envAutoResolve = envAutoResolve
        self.apiKeyExpiresAt = apiKeyExpiresAt
    }

    /// Active, not expired, and its key not expired: what every exchange, refresh and request of the agent needs.
    public func isUsable(at now: Timestamp) -> Bool {
        isActive && (expiresAt.map { now < $0 } ?? true) && (apiKeyExpiresAt.map { now < $0 } ?? true)
    }

    /// The lifetime of a token minted at `now` from the agent's key: its `token_ttl_seconds` (or `defaultLifetime`),
    /// cut short so that it never outlives `api_key_expires_at`.
    public func tokenLifetime(at now: Timestamp, default defaultLifetime: Int64) -> Int64 {
        let lifetime = tokenTTLSeconds.map(Int64.init) ?? defaultLifetime
        guard let apiKeyExpiresAt else { return lifetime }
        // Whole seconds, rounded down (tokens are issued on a whole second; `exp` never passes the key's expiry).
        let left = (apiKeyExpiresAt.milliseconds - now.milliseconds + now.milliseconds % 1000) / 1000
        return max(0, min(lifetime, left))
    }

    /// An environment slug: 2 to 30 lower-case letters, digits and `-` (1Claw's vault environment slugs).
    public static func isEnvironmentSlug(_ text: String) -> Bool {
        (2...30).contains(text.utf8.count)
            && text.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }
}

/// A personal API key (`1ck_…`): acts as its user, capped by its scopes when it has any.
public struct UserAPIKey: Sendable, Hashable {
    public let id: UUID
    public let userID: UUID
    public let orgID: UUID
    public let name: String
    public let keyPrefix: String
    public let keyDigest: Data
    public let scopes: [String]?
    public let isActive: Bool
    public let createdAt: Timestamp
    public let expiresAt: Timestamp?

    public init(
        id: UUID, userID: UUID, orgID: UUID, name: String, keyPrefix: String, keyDigest: Data, scopes: [String]?,
        isActive: Bool, createdAt: Timestamp, expiresAt: Timestamp?
    ) {
        self.id = id
        self.userID = userID
        self.orgID = orgID
        self.name = name
        self.keyPrefix = keyPrefix
        self.keyDigest = keyDigest
        self.scopes = scopes
        self.isActive = isActive
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    public func isUsable(at now: Timestamp) -> Bool { isActive && (expiresAt.map { now < $0 } ?? true) }
}

/// A single-use refresh token, kept as a keyed hash. `family` links the tokens of one login, so that reuse of a
/// spent token revokes them all.
/// The session carries the limits of the credential it came from: its scopes, the API key that must stay active,
/// the agent key version that must stay current.
public struct RefreshTokenRecord: Sendable, Hashable {
    public let digest: Data
    public let family: UUID
    public let principalKind: PrincipalKind
    public let principalID: UUID
    public let orgID: UUID
    public let expiresAt: Timestamp
    public let scopes: [String]?
    public let apiKeyID: UUID?
    public let keyVersion: Int?

    public init(
        digest: Data, family: UUID, principalKind: PrincipalKind, principalID: UUID, orgID: UUID, expiresAt: Timestamp,
        scopes: [String]? = nil, apiKeyID: UUID? = nil, keyVersion: Int? = nil
    ) {
        self.digest = digest
        self.family = family
        self.principalKind = principalKind
        self.principalID = principalID
        self.orgID = orgID
        self.expiresAt = expiresAt
        self.scopes = scopes
        self.apiKeyID = apiKeyID
        self.keyVersion = keyVersion
    }
}

/// An invitation to join an org, redeemed at sign-up with the same email.
public struct Invite: Sendable, Hashable {
    public let digest: Data
    public let orgID: UUID
    public let email: String
    public let role: OrgRole
    public let createdBy: UUID
    public let expiresAt: Timestamp

    public init(digest: Data, orgID: UUID, email: String, role: OrgRole, createdBy: UUID, expiresAt: Timestamp) {
        self.digest = digest
        self.orgID = orgID
        self.email = email
        self.role = role
        self.createdBy = createdBy
        self.expiresAt = expiresAt
    }
}

extension SecretVersionInfo {
    /// The same metadata with the access count a read just recorded.
    public func with(accessCount: Int) -> SecretVersionInfo {
        SecretVersionInfo(
            secretID: secretID, path: path, version: version, type: type, metadata: metadata,
            rotationPolicy: rotationPolicy, expiresAt: expiresAt, maxAccessCount: maxAccessCount,
            accessCount: accessCount, isDisabled: isDisabled, isDeleted: isDeleted, createdBy: createdBy,
            createdAt: createdAt, cmekFingerprint: cmekFingerprint)
    }
}

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
    /// The token's id, for revocation.
    public let tokenID: String?

    public init(kind: PrincipalKind, id: UUID, orgID: UUID, role: OrgRole?, tokenID: String? = nil) {
        self.kind = kind
        self.id = id
        self.orgID = orgID
        self.role = role
        self.tokenID = tokenID
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

    public init(
        id: UUID, orgID: UUID, name: String, description: String?, createdBy: UUID, createdByType: PrincipalKind,
        kekID: String, createdAt: Timestamp
    ) {
        self.id = id
        self.orgID = orgID
        self.name = name
        self.description = description
        self.createdBy = createdBy
        self.createdByType = createdByType
        self.kekID = kekID
        self.createdAt = createdAt
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

    public init(
        secretID: UUID, path: String, version: Int, type: SecretType, metadata: JSONValue?,
        rotationPolicy: JSONValue?, expiresAt: Timestamp?, maxAccessCount: Int?, accessCount: Int,
        isDisabled: Bool, isDeleted: Bool, createdBy: UUID, createdAt: Timestamp
    ) {
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

    public init(
        vaultID: UUID, path: String, type: SecretType?, metadata: JSONValue?, rotationPolicy: JSONValue?,
        expiresAt: Timestamp?, maxAccessCount: Int?, createdBy: UUID, createdAt: Timestamp, kekID: String,
        wrappedDataKey: Data
    ) {
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

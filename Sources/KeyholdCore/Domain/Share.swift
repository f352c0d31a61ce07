import Foundation

public enum ShareRecipientType: String, Sendable, CaseIterable {
    case anyoneWithLink = "anyone_with_link"
    case user, agent
    case externalEmail = "external_email"
    case creator
}

public enum ShareStatus: String, Sendable {
    case pending, accepted, declined
}

/// A share of one secret (the version it pins, or the latest at each access) with someone outside the vault.
public struct Share: Sendable, Hashable {
    public let id: UUID
    public let orgID: UUID
    public let secretID: UUID
    public let vaultID: UUID
    public let path: String
    public let createdByType: PrincipalKind
    public let createdBy: UUID
    public let recipientType: ShareRecipientType
    /// The user or agent it is for; for `creator`, the user who registered the sharing agent.
    public let recipientID: UUID?
    public let recipientEmail: String?
    public let expiresAt: Timestamp
    public let maxAccessCount: Int?
    public let accessCount: Int
    /// bcrypt hash of the passphrase, when there is one.
    public let passphraseHash: String?
    public let ipAllowlist: [CIDR]
    public let status: ShareStatus
    public let revoked: Bool
    public let createdAt: Timestamp
    /// The version it serves; nil when it follows the latest.
    public let version: Int?
    /// For `external_email`: the digest of the one-time claim token the recipient must present to accept (the
    /// address alone proves nothing: sign-up does not verify it). Nil once claimed.
    public let claimDigest: Data?
    /// How the share is named where its id must not show: a link share's id is the link itself (whoever has it
    /// opens the share), so the audit log and other people's listings name it by this reference instead.
    public let reference: UUID

    public init(
        id: UUID, orgID: UUID, secretID: UUID, vaultID: UUID, path: String, createdByType: PrincipalKind,
        createdBy: UUID, recipientType: ShareRecipientType, recipientID: UUID?, recipientEmail: String?,
        expiresAt: Timestamp, maxAccessCount: Int?, accessCount: Int, passphraseHash: String?, ipAllowlist: [CIDR],
        status: ShareStatus, revoked: Bool, createdAt: Timestamp, version: Int?, claimDigest: Data?, reference: UUID
    ) {
        self.reference = reference
        self.version = version
        self.claimDigest = claimDigest
        self.id = id
        self.orgID = orgID
        self.secretID = secretID
        self.vaultID = vaultID
        self.path = path
        self.createdByType = createdByType
        self.createdBy = createdBy
        self.recipientType = recipientType
        self.recipientID = recipientID
        self.recipientEmail = recipientEmail
        self.expiresAt = expiresAt
        self.maxAccessCount = maxAccessCount
        self.accessCount = accessCount
        self.passphraseHash = passphraseHash
        self.ipAllowlist = ipAllowlist
        self.status = status
        self.revoked = revoked
        self.createdAt = createdAt
    }

    public var isTargeted: Bool { recipientType != .anyoneWithLink }

    public func isExpired(at now: Timestamp) -> Bool { expiresAt <= now }
    public var isExhausted: Bool { maxAccessCount.map { accessCount >= $0 } ?? false }

    /// Why the share can no longer be used (410), or nil.
    public func goneReason(at now: Timestamp) -> String? {
        if status == .declined { return "Share was declined" }
        if isExpired(at: now) { return "Share has expired" }
        if isExhausted { return "Share has reached its maximum access count" }
        return nil
    }
}

/// Where a secret lives, found by its id, and its latest version.
public struct SecretLocation: Sendable, Hashable {
    public let secretID: UUID
    public let vaultID: UUID
    public let orgID: UUID
    public let path: String
    public let currentVersion: Int

    public init(secretID: UUID, vaultID: UUID, orgID: UUID, path: String, currentVersion: Int) {
        self.currentVersion = currentVersion
        self.secretID = secretID
        self.vaultID = vaultID
        self.orgID = orgID
        self.path = path
    }
}

extension Share {
    public func with(accessCount: Int) -> Share {
        Share(
            id: id, orgID: orgID, secretID: secretID, vaultID: vaultID, path: path, createdByType: createdByType,
            createdBy: createdBy, recipientType: recipientType, recipientID: recipientID, recipientEmail: recipientEmail,
            expiresAt: expiresAt, maxAccessCount: maxAccessCount, accessCount: accessCount,
            passphraseHash: passphraseHash, ipAllowlist: ipAllowlist, status: status, revoked: revoked,
            createdAt: createdAt, version: version, claimDigest: claimDigest, reference: reference)
    }
}

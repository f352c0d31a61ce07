import Foundation

/// A user's TOTP enrolment as storage keeps it (table `user_mfa`, sealed: it decides whether a login needs a second
/// factor). The TOTP secret is stored sealed by the keystore (`Keystore.protect`, purpose naming the user);
/// recovery codes only as keyed digests (`CredentialHasher`).
public struct MFAEnrollment: Sendable, Hashable {
    public let userID: UUID
    public let orgID: UUID
    /// The TOTP secret, sealed by the keystore.
    public let sealedSecret: Data
    /// When a valid code confirmed the setup; nil while the setup is pending (not yet asked for at login).
    public let enabledAt: Timestamp?
    /// The last TOTP time step accepted: a code of this step or an earlier one is refused (no replay).
    public let lastStep: Int64?
    /// Digests of the recovery codes not yet spent.
    public let recoveryDigests: [Data]
    public let createdAt: Timestamp

    public init(
        userID: UUID, orgID: UUID, sealedSecret: Data, enabledAt: Timestamp?, lastStep: Int64?, recoveryDigests: [Data],
        createdAt: Timestamp
    ) {
        self.userID = userID
        self.orgID = orgID
        self.sealedSecret = sealedSecret
        self.enabledAt = enabledAt
        self.lastStep = lastStep
        self.recoveryDigests = recoveryDigests
        self.createdAt = createdAt
    }

    public var isEnabled: Bool { enabledAt != nil }

    /// Recovery digests are stored as one blob of 32-byte digests.
    public static let digestLength = 32
}

/// A second factor as storage checks it: a TOTP time step whose code matched, or a recovery code's digest.
public enum MFAProof: Sendable, Hashable {
    case totp(step: Int64)
    case recovery(digest: Data)
}

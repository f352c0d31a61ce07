import Foundation

/// Environment variables (contract §1.5): configuration for apps and agents, kept per vault and per environment,
/// plus org-wide shared variables linked into vaults. Values are sealed like secret values; the rows that decide
/// where a value applies (its environments, branch, sensitivity, links) are sealed grants (`GrantSeal`).
public enum EnvVarRules {
    /// The environments every vault has; they cannot be deleted.
    public static let builtins = ["production", "preview", "development"]
    /// The only environment a branch override may belong to.
    public static let branchEnvironment = "preview"
    public static let maxValueBytes = 64 * 1024
    public static let maxCommentBytes = 1024
    /// A bound on one vault's (or one org's shared) variables, so a resolve reads a bounded set.
    public static let maxVariables = 2000
    public static let maxEnvironments = 50

    /// `KEY`: upper-case letters, digits and `_`, 1–256 characters.
    public static func key(_ raw: String) throws -> String {
        guard (1...256).contains(raw.utf8.count), raw.utf8.allSatisfy({ isUpper($0) || isDigit($0) || $0 == UInt8(ascii: "_") })
        else { throw KeyholdError.badRequest("key must be 1-256 upper-case letters, digits and underscores") }
        return raw
    }

    /// An environment's slug: lower-case letters, digits and `-`, 2–30 characters.
    public static func slug(_ raw: String, field: String = "slug") throws -> String {
        guard (2...30).contains(raw.utf8.count), raw.utf8.allSatisfy({ isLower($0) || isDigit($0) || $0 == UInt8(ascii: "-") })
        else { throw KeyholdError.badRequest("\(field) must be 2-30 lower-case letters, digits and hyphens") }
        return raw
    }

    /// A git branch name as `git check-ref-format --branch` would mostly take it: 1–255 bytes of letters, digits and
    /// `._/-`, no `..`, no empty segment, not starting with `-`.
    public static func branch(_ raw: String) throws -> String {
        let bytes = Array(raw.utf8)
        let allowed = bytes.allSatisfy {
            isUpper($0) || isLower($0) || isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
                || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "/")
        }
        guard (1...255).contains(bytes.count), allowed, !raw.contains(".."), !raw.contains("//"), !raw.hasPrefix("-"),
            !raw.hasPrefix("/"), !raw.hasSuffix("/"), !raw.hasSuffix(".")
        else { throw KeyholdError.badRequest("git_branch must be a git branch name (letters, digits, '.', '_', '-', '/')") }
        return raw
    }

    /// A list of environment slugs: valid, without duplicates, at least one; kept sorted (one spelling per set).
    public static func environments(_ raw: [String]) throws -> [String] {
        guard !raw.isEmpty else { throw KeyholdError.badRequest("environments must name at least one environment") }
        guard raw.count <= maxEnvironments else {
            throw KeyholdError.badRequest("environments names at most \(maxEnvironments) environments")
        }
        let slugs = try raw.map { try slug($0, field: "environments") }
        guard Set(slugs).count == slugs.count else { throw KeyholdError.badRequest("environments names one twice") }
        return slugs.sorted()
    }

    public static func value(_ raw: String) throws -> String {
        guard raw.utf8.count <= maxValueBytes else {
            throw KeyholdError(.payloadTooLarge, "value must be at most \(maxValueBytes) bytes")
        }
        return raw
    }

    public static func comment(_ raw: String?, field: String = "comment") throws -> String? {
        guard let raw else { return nil }
        guard raw.utf8.count <= maxCommentBytes else {
            throw KeyholdError.badRequest("\(field) must be at most \(maxCommentBytes) bytes")
        }
        return raw
    }

    /// The path that policies and scopes see for a variable: `env-vars/KEY` in its vault. `**` or `env-vars/*`
    /// covers every variable of a vault. (Not a valid secret path when the key ends with `_`, which is why it is
    /// built without validation; it is only ever matched against.)
    static func policyPath(_ key: String) -> SecretPath { SecretPath(unvalidated: "env-vars/" + key) }

    private static func isUpper(_ byte: UInt8) -> Bool { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) }
    private static func isLower(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) }
    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}

/// A vault's variable as stored: the value sealed under a data key wrapped by the vault's KEK.
public struct EnvVarRecord: Sendable, Hashable {
    public var id: UUID
    public var vaultID: UUID
    public var key: String
    /// Sorted slugs.
    public var environments: [String]
    /// A branch override (its environments are exactly `preview`); nil for the environment-wide value.
    public var gitBranch: String?
    public var sensitive: Bool
    public var comment: String?
    /// 1 on creation, one more on every change.
    public var version: Int
    public var kekID: String
    public var wrappedDataKey: Data
    public var ciphertext: Data
    public var createdBy: UUID
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        id: UUID, vaultID: UUID, key: String, environments: [String], gitBranch: String?, sensitive: Bool,
        comment: String?, version: Int, kekID: String, wrappedDataKey: Data, ciphertext: Data, createdBy: UUID,
        createdAt: Timestamp, updatedAt: Timestamp
    ) {
        self.id = id
        self.vaultID = vaultID
        self.key = key
        self.environments = environments
        self.gitBranch = gitBranch
        self.sensitive = sensitive
        self.comment = comment
        self.version = version
        self.kekID = kekID
        self.wrappedDataKey = wrappedDataKey
        self.ciphertext = ciphertext
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Whether two variables of one key would answer for the same environment and branch.
    public func overlaps(_ other: EnvVarRecord) -> Bool {
        key == other.key && gitBranch == other.gitBranch && !Set(environments).isDisjoint(with: other.environments)
    }
}

/// An org's shared variable: one value for every vault it is linked to, its data key wrapped by the server's
/// shared-variable key (which the keystore seals).
public struct OrgEnvVarRecord: Sendable, Hashable {
    public var id: UUID
    public var orgID: UUID
    public var key: String
    public var environments: [String]
    public var sensitive: Bool
    public var comment: String?
    public var version: Int
    public var wrappedDataKey: Data
    public var ciphertext: Data
    public var linkedVaults: [UUID]
    public var createdBy: UUID
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        id: UUID, orgID: UUID, key: String, environments: [String], sensitive: Bool, comment: String?, version: Int,
        wrappedDataKey: Data, ciphertext: Data, linkedVaults: [UUID], createdBy: UUID, createdAt: Timestamp,
        updatedAt: Timestamp
    ) {
        self.id = id
        self.orgID = orgID
        self.key = key
        self.environments = environments
        self.sensitive = sensitive
        self.comment = comment
        self.version = version
        self.wrappedDataKey = wrappedDataKey
        self.ciphertext = ciphertext
        self.linkedVaults = linkedVaults
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// A vault's custom environment (the built-in ones are not stored).
public struct VaultEnvironment: Sendable, Hashable {
    public var id: UUID
    public var vaultID: UUID
    public var slug: String
    public var description: String?
    public var copiedFrom: String?
    public var createdBy: UUID
    public var createdAt: Timestamp

    public init(
        id: UUID, vaultID: UUID, slug: String, description: String?, copiedFrom: String?, createdBy: UUID,
        createdAt: Timestamp
    ) {
        self.id = id
        self.vaultID = vaultID
        self.slug = slug
        self.description = description
        self.copiedFrom = copiedFrom
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

/// An org's shared variable applying in a vault.
public struct OrgEnvVarLink: Sendable, Hashable {
    public let envVarID: UUID
    public let vaultID: UUID
    public let orgID: UUID

    public init(envVarID: UUID, vaultID: UUID, orgID: UUID) {
        self.envVarID = envVarID
        self.vaultID = vaultID
        self.orgID = orgID
    }
}

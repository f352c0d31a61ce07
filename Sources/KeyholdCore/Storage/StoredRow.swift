import Foundation

/// A stored value that does not decode to what its column must hold: an unknown enum value, an unparseable id,
/// glob, CIDR, list or timestamp, a wrong type, or a missing required field. Decoding fails closed: such a row is
/// never read with a default (a default could widen access), the request is refused with a 503 whose detail says
/// nothing of the row, and the log names the table and column, never the value.
public struct StoredDataError: Error, Sendable, Equatable, CustomStringConvertible {
    public let table: String
    public let column: String
    /// What is wrong, without the value ("missing", "not a UUID", "unknown value" …).
    public let problem: String

    public init(table: String, column: String, problem: String) {
        self.table = table
        self.column = column
        self.problem = problem
    }

    public var description: String { "stored row in \(table), column \(column): \(problem)" }
}

/// A value bound to a statement or read from a row. Each backend keeps it in its own type: a UUID is text in SQLite and
/// `uuid` in PostgreSQL, a flag an integer 0/1 in SQLite and `boolean` in PostgreSQL.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case text(String)
    case bytes(Data)
    case boolean(Bool)
    case uuid(UUID)

    public static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }
    public static func optional(_ value: String?) -> SQLValue { value.map(SQLValue.text) ?? .null }
    public static func optional(_ value: UUID?) -> SQLValue { value.map(SQLValue.uuid) ?? .null }
    public static func optional(_ value: Int?) -> SQLValue { value.map(SQLValue.int) ?? .null }
    public static func optional(_ value: Data?) -> SQLValue { value.map(SQLValue.bytes) ?? .null }
    public static func optional(_ value: Timestamp?) -> SQLValue { value.map { .integer($0.milliseconds) } ?? .null }
    public static func time(_ value: Timestamp) -> SQLValue { .integer(value.milliseconds) }
}

/// One result row as a backend returns it: its values by column name, in the backend's own types.
public struct StoredRow: Sendable {
    /// Column name → index; shared by every row of a statement.
    public let names: [String: Int]
    public let values: [SQLValue]

    public init(names: [String: Int], values: [SQLValue]) {
        self.names = names
        self.values = values
    }

    /// The column's value; nil when the statement has no such column.
    public subscript(column: String) -> SQLValue? { names[column].map { values[$0] } }
}

/// A row of one table, read strictly: every getter either returns what the column must hold or throws
/// `StoredDataError` naming `table` and the column; a getter never converts or defaults. The only decoding of stored
/// rows; both backends use it.
public struct StoredFields {
    public let row: StoredRow
    public let table: String

    public init(_ row: StoredRow, table: String) {
        self.row = row
        self.table = table
    }

    func failure(_ column: String, _ problem: String) -> StoredDataError {
        StoredDataError(table: table, column: column, problem: problem)
    }

    private func required<T>(_ column: String, _ value: T?) throws -> T {
        guard let value else { throw failure(column, "missing") }
        return value
    }

    /// The column's value when it has the one shape `extract` accepts; nil for NULL; otherwise `StoredDataError`.
    private func value<T>(_ column: String, _ kind: String, _ extract: (SQLValue) -> T?) throws -> T? {
        guard let stored = row[column], stored != .null else { return nil }
        guard let value = extract(stored) else { throw failure(column, "not \(kind)") }
        return value
    }

    public func optionalText(_ column: String) throws -> String? {
        try value(column, "text") { if case .text(let text) = $0 { text } else { nil } }
    }

    public func text(_ column: String) throws -> String { try required(column, optionalText(column)) }

    public func optionalInt(_ column: String) throws -> Int64? {
        try value(column, "an integer") { if case .integer(let number) = $0 { number } else { nil } }
    }

    public func int(_ column: String) throws -> Int64 { try required(column, optionalInt(column)) }

    /// A flag: PostgreSQL's boolean, or SQLite's integer 0 or 1 (any other integer is an error).
    public func bool(_ column: String) throws -> Bool {
        try required(column, value(column, "a boolean") {
            switch $0 {
            case .boolean(let flag): flag
            case .integer(0): false
            case .integer(1): true
            default: nil
            }
        })
    }

    /// An id: PostgreSQL's uuid, or SQLite's text in the canonical form.
    public func optionalUUID(_ column: String) throws -> UUID? {
        try value(column, "a UUID") {
            switch $0 {
            case .uuid(let id): id
            case .text(let text): UUID(fast: text)
            default: nil
            }
        }
    }

    public func uuid(_ column: String) throws -> UUID { try required(column, optionalUUID(column)) }

    public func optionalBytes(_ column: String) throws -> Data? {
        try value(column, "bytes") { if case .bytes(let data) = $0 { data } else { nil } }
    }

    public func bytes(_ column: String) throws -> Data { try required(column, optionalBytes(column)) }

    /// A count or size that fits an `Int` and is not negative.
    public func count(_ column: String) throws -> Int { try required(column, optionalCount(column)) }
    public func optionalCount(_ column: String) throws -> Int? {
        guard let value = try optionalInt(column) else { return nil }
        guard value >= 0, let count = Int(exactly: value) else { throw failure(column, "out of range") }
        return count
    }

    public func timestamp(_ column: String) throws -> Timestamp { Timestamp(milliseconds: try int(column)) }
    public func optionalTimestamp(_ column: String) throws -> Timestamp? {
        try optionalInt(column).map { Timestamp(milliseconds: $0) }
    }

    /// A value of a closed set of names; one this build does not know is an error, never a nearby case.
    public func value<Value: RawRepresentable>(_ column: String, as type: Value.Type = Value.self) throws -> Value
    where Value.RawValue == String {
        guard let value = Value(rawValue: try text(column)) else { throw failure(column, "unknown value") }
        return value
    }

    public func optionalValue<Value: RawRepresentable>(_ column: String, as type: Value.Type = Value.self) throws
        -> Value? where Value.RawValue == String
    {
        guard let text = try optionalText(column) else { return nil }
        guard let value = Value(rawValue: text) else { throw failure(column, "unknown value") }
        return value
    }

    /// A JSON value kept as text.
    public func optionalJSON(_ column: String) throws -> JSONValue? {
        guard let text = try optionalText(column) else { return nil }
        do {
            return try JSONValue(jsonString: text)
        } catch {
            throw failure(column, "not JSON")
        }
    }

    /// A list kept as a JSON array, each item parsed by `parse`: one item that does not parse fails the whole row
    /// (dropping it could turn a short list into an empty one, which for some lists means "everything").
    public func list<Item>(_ column: String, _ parse: (String) -> Item?) throws -> [Item] {
        try required(column, optionalList(column, parse))
    }

    public func optionalList<Item>(_ column: String, _ parse: (String) -> Item?) throws -> [Item]? {
        guard let json = try optionalJSON(column) else { return nil }
        guard case .array(let items) = json else { throw failure(column, "not a list") }
        return try items.map { item in
            guard case .string(let text) = item, let value = parse(text) else { throw failure(column, "an item does not parse") }
            return value
        }
    }

    public func strings(_ column: String) throws -> [String] { try list(column) { $0 } }
    public func optionalStrings(_ column: String) throws -> [String]? { try optionalList(column) { $0 } }

    /// A value checked by a domain parser that throws (a glob, policy conditions): its error becomes this row's.
    public func parsed<Value>(_ column: String, _ parse: () throws -> Value) throws -> Value {
        do {
            return try parse()
        } catch let error as StoredDataError {
            throw error
        } catch {
            throw failure(column, "does not parse")
        }
    }
}

/// How stored lists are written: JSON arrays of strings, the form `StoredFields.list` reads.
public enum StoredJSON {
    public static func encode(_ strings: [String]) -> String {
        JSONValue.array(strings.map(JSONValue.string)).jsonString()
    }

    public static func encode(_ keys: [AgentIdentityKey]) -> String { JSONValue.array(keys.map(\.json)).jsonString() }
}

/// The decoding of every stored record, written once for every backend. Column names are the schema's, which both
/// backends share.
public enum StoredRecords {
    public static func mfa(_ row: StoredRow) throws -> MFAEnrollment {
        let fields = StoredFields(row, table: "user_mfa")
        let digests = try fields.bytes("recovery_digests")
        guard digests.count % MFAEnrollment.digestLength == 0 else {
            throw fields.failure("recovery_digests", "not a list of digests")
        }
        let lastStep = try fields.optionalInt("last_step")
        if let lastStep, lastStep < 0 { throw fields.failure("last_step", "out of range") }
        return MFAEnrollment(
            userID: try fields.uuid("user_id"), orgID: try fields.uuid("org_id"),
            sealedSecret: try fields.bytes("secret"), enabledAt: try fields.optionalTimestamp("enabled_at"),
            lastStep: lastStep,
            recoveryDigests: stride(from: 0, to: digests.count, by: MFAEnrollment.digestLength).map {
                Data(digests[digests.startIndex + $0..<digests.startIndex + $0 + MFAEnrollment.digestLength])
            },
            createdAt: try fields.timestamp("created_at"))
    }

    public static func user(_ row: StoredRow) throws -> User {
        let fields = StoredFields(row, table: "users")
        return User(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), email: try fields.text("email"),
            passwordHash: try fields.text("password_hash"), displayName: try fields.optionalText("display_name"),
            role: try fields.value("role"), createdAt: try fields.timestamp("created_at"))
    }

    public static func invite(_ row: StoredRow) throws -> Invite {
        let fields = StoredFields(row, table: "invites")
        return Invite(
            digest: try fields.bytes("digest"), orgID: try fields.uuid("org_id"), email: try fields.text("email"),
            role: try fields.value("role"), createdBy: try fields.uuid("created_by"),
            expiresAt: try fields.timestamp("expires_at"))
    }

    public static func vault(_ row: StoredRow) throws -> Vault {
        let fields = StoredFields(row, table: "vaults")
        return Vault(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), name: try fields.text("name"),
            description: try fields.optionalText("description"), createdBy: try fields.uuid("created_by"),
            createdByType: try fields.value("created_by_type"), kekID: try fields.text("kek_id"),
            createdAt: try fields.timestamp("created_at"), cmekFingerprint: try cmekFingerprint(fields))
    }

    /// A stored CMEK fingerprint: NULL, or 64 lower-case hex digits.
    static func cmekFingerprint(_ fields: StoredFields) throws -> String? {
        try fields.optionalText("cmek_fingerprint").map {
            guard CMEK.fingerprint(parsing: $0) == $0 else { throw fields.failure("cmek_fingerprint", "not a fingerprint") }
            return $0
        }
    }

    public static func cmekJob(_ row: StoredRow) throws -> CMEKRotationJob {
        let fields = StoredFields(row, table: "cmek_rotation_jobs")
        return CMEKRotationJob(
            id: try fields.uuid("id"), vaultID: try fields.uuid("vault_id"), orgID: try fields.uuid("org_id"),
            oldFingerprint: try fields.text("old_fingerprint"), newFingerprint: try fields.text("new_fingerprint"),
            status: try fields.value("status"), totalSecrets: try fields.count("total_secrets"),
            processed: try fields.count("processed"), error: try fields.optionalText("error"),
            startedAt: try fields.optionalTimestamp("started_at"), completedAt: try fields.optionalTimestamp("completed_at"),
            createdBy: try fields.uuid("created_by"), createdAt: try fields.timestamp("created_at"))
    }

    public static func agent(_ row: StoredRow) throws -> Agent {
        let fields = StoredFields(row, table: "agents")
        let vaultIDs = try fields.list("vault_ids") { UUID(fast: $0) }
        return Agent(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), name: try fields.text("name"),
            description: try fields.optionalText("description"), isActive: try fields.bool("is_active"),
            scopes: try fields.optionalStrings("scopes"), vaultIDs: vaultIDs,
            tokenTTLSeconds: try fields.optionalCount("token_ttl_seconds"),
            expiresAt: try fields.optionalTimestamp("expires_at"), createdBy: try fields.uuid("created_by"),
            createdAt: try fields.timestamp("created_at"), keyPrefix: try fields.text("key_prefix"),
            keyDigest: try fields.bytes("key_digest"), keyVersion: try fields.count("key_version"),
            environment: try fields.optionalText("environment").map {
                guard Agent.isEnvironmentSlug($0) else { throw fields.failure("environment", "not an environment slug") }
                return $0
            },
            environmentLocked: try fields.bool("environment_locked"), envAutoResolve: try fields.bool("env_auto_resolve"),
            apiKeyExpiresAt: try fields.optionalTimestamp("api_key_expires_at"),
            intentsAPIEnabled: try fields.bool("intents_api_enabled"),
            sshPublicKey: try fields.optionalText("ssh_public_key"),
            ecdhPublicKey: try fields.optionalText("ecdh_public_key"),
            identityKeysCreatedAt: try fields.optionalTimestamp("identity_keys_created_at"),
            identityKeyHistory: try {
                guard case .array(let items)? = try fields.optionalJSON("identity_key_history") else {
                    throw fields.failure("identity_key_history", "not a list")
                }
                return try items.map {
                    guard let key = AgentIdentityKey(json: $0) else {
                        throw fields.failure("identity_key_history", "an item does not parse")
                    }
                    return key
                }
            }())
    }

    public static func apiKey(_ row: StoredRow) throws -> UserAPIKey {
        let fields = StoredFields(row, table: "user_api_keys")
        return UserAPIKey(
            id: try fields.uuid("id"), userID: try fields.uuid("user_id"), orgID: try fields.uuid("org_id"),
            name: try fields.text("name"), keyPrefix: try fields.text("key_prefix"),
            keyDigest: try fields.bytes("key_digest"), scopes: try fields.optionalStrings("scopes"),
            isActive: try fields.bool("is_active"), createdAt: try fields.timestamp("created_at"),
            expiresAt: try fields.optionalTimestamp("expires_at"))
    }

    public static func refreshToken(_ row: StoredRow) throws -> RefreshTokenRecord {
        let fields = StoredFields(row, table: "refresh_tokens")
        return RefreshTokenRecord(
            digest: try fields.bytes("digest"), family: try fields.uuid("family"),
            principalKind: try fields.value("principal_type"), principalID: try fields.uuid("principal_id"),
            orgID: try fields.uuid("org_id"), expiresAt: try fields.timestamp("expires_at"),
            scopes: try fields.optionalStrings("scopes"), apiKeyID: try fields.optionalUUID("api_key_id"),
            keyVersion: try fields.optionalCount("key_version"))
    }

    public static func policy(_ row: StoredRow) throws -> Policy {
        let fields = StoredFields(row, table: "policies")
        let pattern = try fields.text("pattern")
        let conditions = try fields.optionalJSON("conditions")
        return Policy(
            id: try fields.uuid("id"), vaultID: try fields.uuid("vault_id"),
            pattern: try fields.parsed("pattern") { try PathPattern(validating: pattern) },
            principalKind: try fields.value("principal_type"), principalID: try fields.uuid("principal_id"),
            permissions: try fields.list("permissions") { Permission(rawValue: $0) },
            conditions: try fields.parsed("conditions") { try PolicyConditions(json: conditions) },
            expiresAt: try fields.optionalTimestamp("expires_at"), effect: try fields.value("effect"),
            priority: Int(try fields.int("priority")), createdBy: try fields.uuid("created_by"),
            createdByType: try fields.value("created_by_type"), createdAt: try fields.timestamp("created_at"))
    }

    public static func share(_ row: StoredRow) throws -> Share {
        let fields = StoredFields(row, table: "shares")
        return Share(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), secretID: try fields.uuid("secret_id"),
            vaultID: try fields.uuid("vault_id"), path: try fields.text("path"),
            createdByType: try fields.value("created_by_type"), createdBy: try fields.uuid("created_by"),
            recipientType: try fields.value("recipient_type"), recipientID: try fields.optionalUUID("recipient_id"),
            recipientEmail: try fields.optionalText("recipient_email"), expiresAt: try fields.timestamp("expires_at"),
            maxAccessCount: try fields.optionalCount("max_access_count"),
            accessCount: try fields.count("access_count"), passphraseHash: try fields.optionalText("passphrase_hash"),
            ipAllowlist: try fields.list("ip_allowlist") { CIDR($0) }, status: try fields.value("status"),
            revoked: try fields.optionalInt("revoked_at") != nil, createdAt: try fields.timestamp("created_at"),
            version: try fields.optionalCount("version"), claimDigest: try fields.optionalBytes("claim_digest"),
            reference: try fields.uuid("reference"))
    }

    public static func approval(_ row: StoredRow) throws -> Approval {
        let fields = StoredFields(row, table: "approvals")
        let tier = try fields.count("risk_tier")
        guard (1...3).contains(tier) else { throw fields.failure("risk_tier", "out of range") }
        let ttl = try fields.count("ttl_seconds")
        let maxUses = try fields.count("max_uses")
        guard ApprovalRule.ttlRange.contains(ttl) else { throw fields.failure("ttl_seconds", "out of range") }
        guard ApprovalRule.maxUsesRange.contains(maxUses) else { throw fields.failure("max_uses", "out of range") }
        let usesLeft = try fields.count("uses_left")
        guard usesLeft <= maxUses else { throw fields.failure("uses_left", "out of range") }
        guard let summary = try fields.optionalJSON("summary") else { throw fields.failure("summary", "missing") }
        return Approval(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), userID: try fields.optionalUUID("user_id"),
            requesterKind: try fields.value("requester_type"), requesterID: try fields.uuid("requester_id"),
            action: try fields.text("action"), targetType: try fields.text("target_type"),
            targetID: try fields.text("target_id"), vaultID: try fields.optionalUUID("vault_id"), riskTier: tier,
            status: try fields.value("status"), summary: summary, reason: try fields.optionalText("reason"),
            payload: try fields.optionalJSON("payload"), decisionReason: try fields.optionalText("decision_reason"),
            decidedBy: try fields.optionalUUID("decided_by"), decidedAt: try fields.optionalTimestamp("decided_at"),
            expiresAt: try fields.timestamp("expires_at"), rule: ApprovalRule(ttlSeconds: ttl, maxUses: maxUses),
            usesLeft: usesLeft, leaseExpiresAt: try fields.optionalTimestamp("lease_expires_at"),
            createdAt: try fields.timestamp("created_at"))
    }

    public static func capabilityLease(_ row: StoredRow) throws -> CapabilityLease {
        let fields = StoredFields(row, table: "capability_leases")
        let scheme = try fields.text("scheme")
        guard scheme == "https" || scheme == "http" else { throw fields.failure("scheme", "unknown value") }
        let host = try fields.text("host")
        guard LeaseRules.isHostPattern(host) else { throw fields.failure("host", "does not parse") }
        let port = try fields.optionalCount("port")
        if let port, !(1...65535).contains(port) { throw fields.failure("port", "out of range") }
        let methods = try fields.list("methods") { LeaseRules.isMethod($0) ? $0 : nil }
        guard !methods.isEmpty else { throw fields.failure("methods", "empty") }
        let prefix = try fields.text("path_prefix")
        guard LeaseRules.isPathPrefix(prefix) else { throw fields.failure("path_prefix", "does not parse") }
        guard let injectionJSON = try fields.optionalJSON("injection") else { throw fields.failure("injection", "missing") }
        let injection = try fields.parsed("injection") { try LeaseInjection(json: injectionJSON) }
        let maxUses = try fields.optionalCount("max_uses")
        let uses = try fields.count("uses")
        if let maxUses, uses > maxUses { throw fields.failure("uses", "out of range") }
        guard case .object(let counted)? = try fields.optionalJSON("caveat_uses") else {
            throw fields.failure("caveat_uses", "not an object")
        }
        var caveatUses: [String: Int] = [:]
        for (key, value) in counted {
            guard key.utf8.count == 64, key.utf8.allSatisfy({ Array("0123456789abcdef".utf8).contains($0) }),
                case .number(let number) = value, number >= 0, number <= Double(Int32.max), number.rounded() == number
            else { throw fields.failure("caveat_uses", "does not parse") }
            caveatUses[key] = Int(number)
        }
        return CapabilityLease(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), vaultID: try fields.uuid("vault_id"),
            path: try fields.text("path"), principalKind: try fields.value("principal_type"),
            principalID: try fields.uuid("principal_id"), scheme: scheme, host: host, port: port, methods: Set(methods),
            pathPrefix: prefix, injection: injection, maxUses: maxUses, uses: uses, caveatUses: caveatUses,
            expiresAt: try fields.timestamp("expires_at"), revokedAt: try fields.optionalTimestamp("revoked_at"),
            createdBy: try fields.uuid("created_by"), createdByType: try fields.value("created_by_type"),
            createdAt: try fields.timestamp("created_at"), description: try fields.optionalText("description"))
    }

    public static func ipRule(_ row: StoredRow) throws -> IPRule {
        let fields = StoredFields(row, table: "ip_rules")
        let text = try fields.text("cidr")
        guard let cidr = CIDR(text) else { throw fields.failure("cidr", "does not parse") }
        return IPRule(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), type: try fields.value("rule_type"), cidr: cidr,
            cidrText: text, label: try fields.optionalText("label"), appliesTo: try fields.value("applies_to"),
            createdBy: try fields.uuid("created_by"), createdAt: try fields.timestamp("created_at"))
    }

    public static func vaultEnvironment(_ row: StoredRow) throws -> VaultEnvironment {
        let fields = StoredFields(row, table: "vault_environments")
        return VaultEnvironment(
            id: try fields.uuid("id"), vaultID: try fields.uuid("vault_id"),
            slug: try fields.parsed("slug") { try EnvVarRules.slug(try fields.text("slug")) },
            description: try fields.optionalText("description"), copiedFrom: try fields.optionalText("copied_from"),
            createdBy: try fields.uuid("created_by"), createdAt: try fields.timestamp("created_at"))
    }

    public static func envVar(_ row: StoredRow) throws -> EnvVarRecord {
        let fields = StoredFields(row, table: "env_vars")
        return EnvVarRecord(
            id: try fields.uuid("id"), vaultID: try fields.uuid("vault_id"),
            key: try fields.parsed("key") { try EnvVarRules.key(try fields.text("key")) },
            environments: try fields.parsed("environments") { try EnvVarRules.environments(try fields.strings("environments")) },
            gitBranch: try fields.parsed("git_branch") { try fields.optionalText("git_branch").map(EnvVarRules.branch) },
            sensitive: try fields.bool("sensitive"), comment: try fields.optionalText("comment"),
            version: try fields.count("version"), kekID: try fields.text("kek_id"),
            wrappedDataKey: try fields.bytes("wrapped_dek"), ciphertext: try fields.bytes("ciphertext"),
            createdBy: try fields.uuid("created_by"), createdAt: try fields.timestamp("created_at"),
            updatedAt: try fields.timestamp("updated_at"))
    }

    public static func orgEnvVar(_ row: StoredRow) throws -> OrgEnvVarRecord {
        let fields = StoredFields(row, table: "org_env_vars")
        return OrgEnvVarRecord(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"),
            key: try fields.parsed("key") { try EnvVarRules.key(try fields.text("key")) },
            environments: try fields.parsed("environments") { try EnvVarRules.environments(try fields.strings("environments")) },
            sensitive: try fields.bool("sensitive"), comment: try fields.optionalText("comment"),
            version: try fields.count("version"), wrappedDataKey: try fields.bytes("wrapped_dek"),
            ciphertext: try fields.bytes("ciphertext"), linkedVaults: [], createdBy: try fields.uuid("created_by"),
            createdAt: try fields.timestamp("created_at"), updatedAt: try fields.timestamp("updated_at"))
    }

    public static func orgEnvVarLink(_ row: StoredRow) throws -> OrgEnvVarLink {
        let fields = StoredFields(row, table: "org_env_var_links")
        return OrgEnvVarLink(
            envVarID: try fields.uuid("env_var_id"), vaultID: try fields.uuid("vault_id"), orgID: try fields.uuid("org_id"))
    }

    public static func auditEvent(_ row: StoredRow) throws -> AuditEvent { try auditEvent(row, createdAtColumn: "created_at") }

    /// An event; `createdAtColumn` names its time where a join renamed it.
    public static func auditEvent(_ row: StoredRow, createdAtColumn: String) throws -> AuditEvent {
        let fields = StoredFields(row, table: "audit_events")
        guard case .object(let details)? = try fields.optionalJSON("details") else {
            throw fields.failure("details", "not a JSON object")
        }
        return AuditEvent(
            id: try fields.uuid("id"), sequence: try fields.int("seq"),
            entry: AuditEntry(
                orgID: try fields.uuid("org_id"), actorType: try fields.value("actor_type"),
                actorID: try fields.optionalText("actor_id"), action: try fields.text("action"),
                resourceType: try fields.text("resource_type"), resourceID: try fields.optionalText("resource_id"),
                details: details, ipAddress: try fields.optionalText("ip_address")),
            createdAt: try fields.timestamp(createdAtColumn), previousID: try fields.optionalUUID("prev_event_id"),
            integrityHash: try fields.text("integrity_hash"))
    }

    public static func auditHead(_ row: StoredRow) throws -> AuditHead {
        let fields = StoredFields(row, table: "audit_heads")
        return AuditHead(eventID: try fields.uuid("event_id"), sequence: try fields.int("seq"), hash: try fields.text("hash"))
    }

    /// The metadata of a version, from `secrets` joined with `secret_versions` (and its read count).
    public static func versionInfo(_ row: StoredRow) throws -> SecretVersionInfo {
        let secret = StoredFields(row, table: "secrets")
        let fields = StoredFields(row, table: "secret_versions")
        return SecretVersionInfo(
            secretID: try secret.uuid("secret_id"), path: try secret.text("path"), version: try fields.count("version"),
            type: try fields.value("type"), metadata: try fields.optionalJSON("metadata"),
            rotationPolicy: try fields.optionalJSON("rotation_policy"),
            expiresAt: try fields.optionalTimestamp("expires_at"),
            maxAccessCount: try fields.optionalCount("max_access_count"),
            accessCount: try fields.count("access_count"), isDisabled: try fields.bool("is_disabled"),
            isDeleted: try fields.bool("is_deleted") || secret.optionalInt("deleted_at") != nil,
            createdBy: try fields.uuid("created_by"), createdAt: try fields.timestamp("created_at"),
            cmekFingerprint: try cmekFingerprint(fields))
    }

    public static func kek(_ row: StoredRow) throws -> KEKHandle {
        let fields = StoredFields(row, table: "keks")
        return KEKHandle(id: try fields.text("id"), material: try fields.bytes("material"))
    }
}

extension StoredRecords {
    /// A webhook; an event name it does not know fails the row.
    public static func webhook(_ row: StoredRow) throws -> Webhook {
        let fields = StoredFields(row, table: "webhooks")
        return Webhook(
            id: try fields.uuid("id"), orgID: try fields.uuid("org_id"), url: try fields.text("url"),
            events: try fields.list("events") { WebhookEvent.subscribable.contains($0) ? $0 : nil },
            description: try fields.optionalText("description"), isActive: try fields.bool("is_active"),
            sealedSecret: try fields.bytes("secret"), createdBy: try fields.uuid("created_by"),
            createdAt: try fields.timestamp("created_at"), updatedAt: try fields.timestamp("updated_at"))
    }

    public static func webhookDelivery(_ row: StoredRow) throws -> WebhookDelivery {
        let fields = StoredFields(row, table: "webhook_deliveries")
        return WebhookDelivery(
            webhookID: try fields.uuid("webhook_id"), eventID: try fields.uuid("event_id"),
            event: try fields.parsed("event") {
                let name = try fields.text("event")
                guard WebhookEvent(rawValue: name) != nil else { throw fields.failure("event", "not an event") }
                return name
            },
            status: try fields.value("status"), attempts: try fields.count("attempts"),
            lastStatusCode: try fields.optionalCount("last_status_code"), lastError: try fields.optionalText("last_error"),
            createdAt: try fields.timestamp("created_at"), deliveredAt: try fields.optionalTimestamp("delivered_at"),
            nextAttemptAt: try fields.optionalTimestamp("next_attempt_at"))
    }
}

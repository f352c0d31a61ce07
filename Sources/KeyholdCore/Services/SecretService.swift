import Crypto
import Foundation

/// Reading and writing secrets: authorization, envelope encryption and the storage transaction.
public struct SecretService: Sendable {
    let store: any SecretStore
    let vaults: VaultService
    let keystore: any Keystore
    let authorizer: Authorizer
    let audit: AuditLog
    let cursors: ListCursor
    /// Reads under a policy that requires approval spend a lease, or ask for one; without this service they are refused.
    let approvals: ApprovalService?

    public static let maxValueBytes = 256 * 1024
    public static let maxMetadataBytes = 16 * 1024

    public init(
        store: any SecretStore, vaults: VaultService, keystore: any Keystore, authorizer: Authorizer, audit: AuditLog,
        cursors: ListCursor, approvals: ApprovalService? = nil
    ) {
        self.cursors = cursors
        self.approvals = approvals
        self.store = store
        self.vaults = vaults
        self.keystore = keystore
        self.authorizer = authorizer
        self.audit = audit
    }

    public struct WriteRequest: Sendable {
        public var value: String
        public var type: SecretType?
        public var metadata: JSONValue?
        public var rotationPolicy: JSONValue?
        public var expiresAt: Timestamp?
        public var maxAccessCount: Int?

        public init(
            value: String, type: SecretType? = nil, metadata: JSONValue? = nil, rotationPolicy: JSONValue? = nil,
            expiresAt: Timestamp? = nil, maxAccessCount: Int? = nil
        ) {
            self.value = value
            self.type = type
            self.metadata = metadata
            self.rotationPolicy = rotationPolicy
            self.expiresAt = expiresAt
            self.maxAccessCount = maxAccessCount
        }

        func validate() throws {
            guard value.utf8.count <= SecretService.maxValueBytes else {
                throw KeyholdError.init(.payloadTooLarge, "value must be at most \(SecretService.maxValueBytes) bytes")
            }
            for (name, json) in [("metadata", metadata), ("rotation_policy", rotationPolicy)] {
                guard let json else { continue }
                guard json.isObject else { throw KeyholdError.badRequest("\(name) must be a JSON object") }
                guard json.depth <= 16, json.jsonString().utf8.count <= SecretService.maxMetadataBytes else {
                    throw KeyholdError.badRequest("\(name) must be at most \(SecretService.maxMetadataBytes) bytes and 16 levels deep")
                }
            }
            if let maxAccessCount, maxAccessCount < 1 {
                throw KeyholdError.badRequest("max_access_count must be a positive integer")
            }
        }
    }

    public struct Revealed: Sendable {
        public let info: SecretVersionInfo
        public let value: String
    }

    /// Creates the next version of `path`. The data key is fresh for every version.
    public func write(_ request: WriteRequest, vaultID: UUID, path: SecretPath, by caller: Caller) async throws
        -> SecretVersionInfo
    {
        try request.validate()
        let vault = try await authorize(caller, vaultID: vaultID, path: path, permission: .write)
        return try await sealAndStore(request, in: vault, path: path, by: caller, action: "secret.write")
    }

    /// Stores an agent's identity private keys as the next versions of its two paths in the org's `__agent-keys`
    /// vault (`AgentService`, on the agent's creation and key rotation): the server writes them on behalf of the
    /// person who registers or manages the agent, who need not be allowed to read that vault. Sealed and audited
    /// like any write (`secret.write`, the path and version, never the value).
    func storeAgentKeys(_ keys: AgentIdentityKeys, agentID: UUID, in vault: Vault, by caller: Caller) async throws {
        for (path, value, type) in [
            (AgentIdentityKeys.sshPath(agentID), keys.sshPrivateKey, SecretType.sshKey),
            (AgentIdentityKeys.ecdhPath(agentID), keys.ecdhPrivateKey, SecretType.privateKey),
        ] {
            _ = try await sealAndStore(
                WriteRequest(value: value, type: type), in: vault, path: try SecretPath(validating: path), by: caller,
                action: "secret.write")
        }
    }

    /// Deletes a purged agent's identity private keys (all their versions), audited as `secret.delete`.
    func deleteAgentKeys(agentID: UUID, in vault: Vault, by caller: Caller) async throws {
        for path in [AgentIdentityKeys.sshPath(agentID), AgentIdentityKeys.ecdhPath(agentID)] {
            _ = try await store.deleteSecret(
                vaultID: vault.id, path: path, at: .now,
                audit: audit.record(
                    caller, "secret.delete", "secret", path,
                    ["vault_id": .string(vault.id.wire), "reason": "agent purged"]))
        }
    }

    /// Seals and stores the next version in a vault the caller was already authorized for.
    private func sealAndStore(
        _ request: WriteRequest, in vault: Vault, path: SecretPath, by caller: Caller, action: String
    ) async throws -> SecretVersionInfo {
        // A vault under customer-managed keys takes only values the client encrypted (CMEK format); nothing else is
        // stored, and the version records whose key it is.
        if vault.cmekFingerprint != nil, !CMEK.isCiphertext(request.value) {
            throw KeyholdError.badRequest(
                "This vault requires customer-managed encryption: value must be base64([0x01][12-byte IV][ciphertext][16-byte GCM tag])")
        }
        let kek = try await vaults.kek(vault.kekID)
        let dataKey = KeyMaterial.randomKey()
        let wrapped = try await keystore.wrap(dataKey: dataKey, with: kek)
        let plaintext = Data(request.value.utf8)
        let newVersion = NewSecretVersion(
            vaultID: vault.id, path: path.rawValue, type: request.type, metadata: request.metadata,
            rotationPolicy: request.rotationPolicy, expiresAt: request.expiresAt,
            maxAccessCount: request.maxAccessCount, createdBy: caller.principal.id, createdAt: .now, kekID: kek.id,
            wrappedDataKey: wrapped, cmekFingerprint: vault.cmekFingerprint)
        let (orgID, vaultID) = (vault.orgID, vault.id)
        let record = audit.record(caller, action, "secret", path.rawValue, ["vault_id": .string(vault.id.wire)])
        return try await store.writeVersion(newVersion, audit: record) { version in
            try EnvelopeCipher.seal(
                plaintext, key: dataKey,
                binding: .init(orgID: orgID, vaultID: vaultID, path: path.rawValue, version: version))
        }
    }

    /// Reads the latest version, or `version`, with its value. Counts the access.
    ///
    /// Under a policy that requires approval, the read spends a use of the caller's approved lease in its own
    /// transaction; without one it is refused with `approval_required`, naming the pending request (one per caller
    /// and path: asking again names the same one).
    public func read(vaultID: UUID, path: SecretPath, version: Int? = nil, by caller: Caller) async throws -> Revealed {
        let (vault, rule) = try await authorizeGated(caller, vaultID: vaultID, path: path)
        var details: [String: JSONValue] = ["vault_id": .string(vault.id.wire)]
        if let version { details["version"] = .number(Double(version)) }
        // Fail closed: a gated read without the approval service is refused, never served without a lease.
        if rule != nil, approvals == nil { throw KeyholdError.forbidden("Access denied") }
        let lease = rule == nil ? nil : approvals?.lease(for: caller, vault: vault, path: path)
        let sealed: SealedSecretVersion
        do {
            sealed = try await recordingRefusal(caller, "secret.read", path, details) {
                try await store.readVersion(
                    vaultID: vault.id, path: path.rawValue, version: version, now: .now,
                    audit: audit.record(caller, "secret.read", "secret", path.rawValue, details), lease: lease,
                    refusing: caller.principal.refusedSecretTypes)
            }
        } catch let error as KeyholdError where error.type == KeyholdError.noLease.type && error.approvalRequestID == nil {
            guard let rule, let approvals else { throw KeyholdError.forbidden("Access denied") }
            let request = try await approvals.requestRead(caller, vault: vault, path: path, rule: rule)
            details["outcome"] = "approval_required"
            details["approval_id"] = .string(request.id.wire)
            try await audit.append(audit.record(caller, "secret.read", "secret", path.rawValue, details))
            throw KeyholdError.approvalRequired(request.id)
        }
        return try await reveal(sealed, orgID: vault.orgID, vaultID: vault.id)
    }

    /// Runs a storage step that writes its audit event only when it succeeds; when it refuses (404 missing, 410
    /// gone, 403 a secret type the caller may not read) its transaction wrote nothing, so the refusal is recorded
    /// on its own before the error is returned.
    private func recordingRefusal<T>(
        _ caller: Caller, _ action: String, _ path: SecretPath, _ details: [String: JSONValue],
        _ body: () async throws -> T
    ) async throws -> T {
        do {
            return try await body()
        } catch let error as KeyholdError
            where error.code == .gone || error.code == .notFound || error.type == KeyholdError.typeRefused.type
        {
            var details = details
            if error.type == KeyholdError.typeRefused.type {
                details["outcome"] = "denied"
                details["reason"] = "intents_api_enabled"
            } else {
                details["outcome"] = .string(error.code == .gone ? "gone" : "not_found")
                details["reason"] = .string(error.detail)
            }
            try await audit.append(audit.record(caller, action, "secret", path.rawValue, details))
            throw error
        }
    }

    /// Unwraps the version's data key through the keystore and opens the value bound to where it lives; with `kek`,
    /// under that KEK as already read (inside a transaction) rather than looking it up.
    func reveal(_ sealed: SealedSecretVersion, orgID: UUID, vaultID: UUID, kek known: KEKHandle? = nil) async throws
        -> Revealed
    {
        var kek = known
        if kek == nil { kek = try await vaults.kek(sealed.kekID) }
        guard let kek else { throw KeyholdError.gone("The key for this secret no longer exists") }
        let dataKey = try await keystore.unwrap(sealed.wrappedDataKey, with: kek)
        let plaintext = try EnvelopeCipher.open(
            sealed.ciphertext, key: dataKey,
            binding: .init(orgID: orgID, vaultID: vaultID, path: sealed.info.path, version: sealed.info.version))
        return Revealed(info: sealed.info, value: String(decoding: plaintext, as: UTF8.self))
    }

    public static let maxPageSize = 1000

    /// Rows a list request examines at most, readable or not (ten per item asked for, at least 1,000): a caller
    /// who may read few paths of a large vault gets a short page and a cursor rather than a scan of the vault.
    public static func scanBudget(limit: Int) -> Int { max(1000, 10 * limit) }

    /// A page of the metadata of the latest version of the paths under `prefix` that the caller may read, after
    /// the position `cursor` names. The page holds `limit` items unless the scan reached the end or its budget.
    /// Whether `nextCursor` is set depends only on what the caller may see: it is set when the page is full or the
    /// budget ran out, never because of rows the caller may not read (the next page may then be empty). It is
    /// sealed, and bound to the vault, the caller and the prefix: it reveals no path.
    public func list(vaultID: UUID, prefix: String?, cursor: String?, limit: Int, by caller: Caller) async throws
        -> (items: [SecretVersionInfo], nextCursor: String?)
    {
        if let prefix, prefix.utf8.count > SecretPath.maxLength {
            throw KeyholdError.badRequest("prefix is longer than \(SecretPath.maxLength) bytes")
        }
        guard (1...Self.maxPageSize).contains(limit) else {
            throw KeyholdError.badRequest("limit must be between 1 and \(Self.maxPageSize)")
        }
        let access = try await vaults.access(vaultID, for: caller)
        let binding = prefix ?? ""
        var position = try cursor.map {
            try cursors.open($0, vaultID: access.vault.id, for: caller.principal, prefix: binding)
        }
        var items: [SecretVersionInfo] = []
        var scanned = 0
        let budget = Self.scanBudget(limit: limit)
        var reachedEnd = false
        scan: while items.count < limit, scanned < budget {
            let batchSize = min(Self.maxPageSize, budget - scanned, max(limit - items.count, 100))
            let batch = try await store.latestVersions(
                vaultID: access.vault.id, prefix: prefix, after: position, limit: batchSize)
            for info in batch {
                scanned += 1
                position = info.path
                if let path = try? SecretPath(validating: info.path),
                    // Listing shows metadata: a path a read of which needs approval is listed.
                    authorizer.decide(
                        caller.principal, vault: access.vault, path: path, permission: .read,
                        policies: access.policies, context: caller.context
                    ).isVisible
                {
                    items.append(info)
                    if items.count == limit { break scan }
                }
            }
            if batch.count < batchSize {
                reachedEnd = true
                break
            }
        }
        var details: [String: JSONValue] = ["count": .number(Double(items.count))]
        if let prefix { details["prefix"] = .string(prefix) }
        try await audit.append(audit.record(caller, "secret.list", "vault", access.vault.id.wire, details))
        let next = try reachedEnd
            ? nil : position.map { try cursors.seal($0, vaultID: access.vault.id, for: caller.principal, prefix: binding) }
        return (items, next)
    }

    public func versions(vaultID: UUID, path: SecretPath, by caller: Caller) async throws -> [SecretVersionInfo] {
        // Metadata only: a path whose reads need approval shows its versions.
        let vault = try await authorizeGated(caller, vaultID: vaultID, path: path, action: "secret.versions").vault
        return try await recordingRefusal(caller, "secret.versions", path, ["vault_id": .string(vault.id.wire)]) {
            let versions = try await store.versions(vaultID: vault.id, path: path.rawValue)
            guard let latest = versions.last else { throw KeyholdError.notFound("Secret not found") }
            if latest.isDeleted { throw KeyholdError.gone("Secret has been deleted") }
            try await audit.append(
                audit.record(
                    caller, "secret.versions", "secret", path.rawValue,
                    ["vault_id": .string(vault.id.wire), "count": .number(Double(versions.count))]))
            return versions
        }
    }

    public func disable(vaultID: UUID, path: SecretPath, version: Int, by caller: Caller) async throws {
        let vault = try await authorize(caller, vaultID: vaultID, path: path, permission: .write)
        let details: [String: JSONValue] = ["vault_id": .string(vault.id.wire), "version": .number(Double(version))]
        try await recordingRefusal(caller, "secret.version_disable", path, details) {
            let record = audit.record(caller, "secret.version_disable", "secret", path.rawValue, details)
            guard try await store.disableVersion(vaultID: vault.id, path: path.rawValue, version: version, audit: record)
            else { throw KeyholdError.notFound("Secret version not found") }
        }
    }

    public func delete(vaultID: UUID, path: SecretPath, by caller: Caller) async throws {
        let vault = try await authorize(caller, vaultID: vaultID, path: path, permission: .delete)
        let details: [String: JSONValue] = ["vault_id": .string(vault.id.wire)]
        try await recordingRefusal(caller, "secret.delete", path, details) {
            let record = audit.record(caller, "secret.delete", "secret", path.rawValue, details)
            guard try await store.deleteSecret(vaultID: vault.id, path: path.rawValue, at: .now, audit: record) else {
                throw KeyholdError.notFound("Secret not found")
            }
        }
    }

    /// Server-side rotation: a new version with a random value the caller never sees in the response.
    public func rotate(
        vaultID: UUID, path: SecretPath, length: Int, charset: RandomValue.Charset, type: SecretType?,
        by caller: Caller
    ) async throws -> SecretVersionInfo {
        guard (8...1024).contains(length) else { throw KeyholdError.badRequest("length must be between 8 and 1024") }
        let vault = try await authorize(caller, vaultID: vaultID, path: path, permission: .rotate)
        if vault.cmekFingerprint != nil {
            throw KeyholdError.badRequest(
                "This vault requires customer-managed encryption: the server cannot generate a value encrypted with your key; write the new value with PUT")
        }
        let current = try await recordingRefusal(caller, "secret.rotate", path, ["vault_id": .string(vault.id.wire)]) {
            guard let current = try await store.latestVersions(
                vaultID: vault.id, prefix: path.rawValue, after: nil, limit: 1
            ).first, current.path == path.rawValue
            else { throw KeyholdError.notFound("Secret not found") }
            return current
        }
        let request = WriteRequest(
            value: RandomValue.generate(length: length, charset: charset), type: type ?? current.type,
            metadata: current.metadata, rotationPolicy: current.rotationPolicy)
        return try await sealAndStore(request, in: vault, path: path, by: caller, action: "secret.rotate")
    }

    /// The vault, if the caller may use `permission` on `path` in it. A caller who may see the vault but not the
    /// path gets the same 403 whether or not a secret exists there.
    func authorize(
        _ caller: Caller, vaultID: UUID, path: SecretPath, permission: Permission, action: String? = nil
    ) async throws -> Vault {
        let (vault, rule) = try await decide(caller, vaultID: vaultID, path: path, permission: permission, action: action)
        guard rule == nil else { throw try await refuse(caller, vaultID, path, action ?? Self.action(permission), "a person's approval is required") }
        return vault
    }

    /// The vault for a read, and the approval rule the read is under when a policy requires approval.
    func authorizeGated(_ caller: Caller, vaultID: UUID, path: SecretPath, action: String? = nil) async throws
        -> (vault: Vault, rule: ApprovalRule?)
    {
        try await decide(caller, vaultID: vaultID, path: path, permission: .read, action: action)
    }

    private func decide(
        _ caller: Caller, vaultID: UUID, path: SecretPath, permission: Permission, action: String?
    ) async throws -> (vault: Vault, rule: ApprovalRule?) {
        let access = try await vaults.access(vaultID, for: caller)
        switch authorizer.decide(
            caller.principal, vault: access.vault, path: path, permission: permission, policies: access.policies,
            context: caller.context)
        {
        case .allow: return (access.vault, nil)
        // Only reads are gated (a policy requiring approval grants read alone); anything else is refused.
        case .approvalRequired(let rule) where permission == .read: return (access.vault, rule)
        case let decision:
            throw try await refuse(caller, vaultID, path, action ?? Self.action(permission), decision.refusal ?? "denied")
        }
    }

    private func refuse(_ caller: Caller, _ vaultID: UUID, _ path: SecretPath, _ action: String, _ reason: String) async throws
        -> KeyholdError
    {
        try await audit.append(
            audit.record(
                caller, action, "secret", path.rawValue,
                ["vault_id": .string(vaultID.wire), "outcome": "denied", "reason": .string(reason)]))
        return KeyholdError.forbidden("Access denied")
    }

    /// Whether `caller` may read `path` in the vault now, deciding without recording anything (for a share, which
    /// works only while its creator could still read what it shares).
    func mayRead(_ caller: Caller, vaultID: UUID, path: SecretPath) async throws -> Bool {
        guard let access = try await vaults.lookup(vaultID, for: caller.principal) else { return false }
        return authorizer.decide(
            caller.principal, vault: access.vault, path: path, permission: .read, policies: access.policies,
            context: caller.context
        ).isAllowed
    }

    /// Like `mayRead`, but a read a policy gates behind approval counts too: for a capability lease, whose creation
    /// spent the approval.
    func mayUse(_ caller: Caller, vaultID: UUID, path: SecretPath) async throws -> Bool {
        guard let access = try await vaults.lookup(vaultID, for: caller.principal) else { return false }
        switch authorizer.decide(
            caller.principal, vault: access.vault, path: path, permission: .read, policies: access.policies,
            context: caller.context)
        {
        case .allow, .approvalRequired: return true
        default: return false
        }
    }

    static func action(_ permission: Permission) -> String {
        switch permission {
        case .read: "secret.read"
        case .write: "secret.write"
        case .delete: "secret.delete"
        case .rotate: "secret.rotate"
        }
    }
}

/// Server-generated secret values, from the system CSPRNG with rejection sampling (no modulo bias).
public enum RandomValue {
    public enum Charset: String, Sendable, CaseIterable {
        case hex, base64, alphanumeric, ascii

        var alphabet: [UInt8] {
            switch self {
            case .hex: Array("0123456789abcdef".utf8)
            case .base64: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
            case .alphanumeric: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
            case .ascii: Array(UInt8(0x21)...UInt8(0x7E))
            }
        }
    }

    public static func generate(length: Int, charset: Charset) -> String {
        let alphabet = charset.alphabet
        let limit = 256 - 256 % alphabet.count
        var generator = SystemRandomNumberGenerator()
        var output = [UInt8]()
        output.reserveCapacity(length)
        while output.count < length {
            let byte = Int(UInt8.random(in: .min ... .max, using: &generator))
            if byte < limit { output.append(alphabet[byte % alphabet.count]) }
        }
        return String(decoding: output, as: UTF8.self)
    }
}

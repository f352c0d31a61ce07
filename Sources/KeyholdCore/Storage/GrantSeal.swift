import Crypto
import Foundation
import Synchronization

/// Sealed grants: every stored row that grants or limits access carries a MAC (its `seal` column) under a key that
/// only the keystore can unseal, over the row's table, its key and every column that decides access. Whoever can
/// write to the database but cannot use the keystore (a PostgreSQL operator, a stolen backup edited and restored)
/// can then delete such a row, but never create one or widen one: a row whose seal does not verify is refused as
/// `StoredDataError` (the request answers 503, the log names table and column) and grants nothing.
///
/// The MAC covers the stored values themselves, so a rule that changes a sealed column (an access counted, a token
/// spent, a share revoked) re-seals the row in the same transaction, after checking the seal it had.
public final class GrantSeal: Sendable {
    /// The column that holds a row's seal, in every sealed table.
    public static let column = "seal"

    /// The seal version this build writes: the column lists of `tables` as they stand. A column that joins the seal
    /// of an existing table raises it (and names the version in its table's `since`), so that the start-up that
    /// meets rows sealed under an older list re-seals them (`Storage.sealGrants`).
    public static let version = 5

    /// A sealed table: the column that identifies a row and the columns the seal covers (the key among them).
    public struct Table: Sendable {
        public let name: String
        public let key: String
        public let columns: [String]
        /// The seal version at which a column joined the seal; a column not named here is covered since version 1.
        public let since: [String: Int]

        public init(name: String, key: String, columns: [String], since: [String: Int] = [:]) {
            self.name = name
            self.key = key
            self.columns = columns
            self.since = since
        }

        /// The columns the seal covered at seal version `version`.
        public func columns(at version: Int) -> [String] { columns.filter { since[$0, default: 1] <= version } }
    }

    /// Every sealed table. Columns that decide nothing about access (names, descriptions, creation times) are left
    /// out, so they may change without a re-seal.
    public static let tables: [Table] = [
        Table(name: "users", key: "id", columns: ["id", "org_id", "email", "password_hash", "role"]),
        Table(
            name: "agents", key: "id",
            columns: [
                "id", "org_id", "is_active", "scopes", "vault_ids", "token_ttl_seconds", "expires_at", "key_prefix",
                "key_digest", "key_version", "environment", "environment_locked", "env_auto_resolve",
                "api_key_expires_at", "intents_api_enabled", "ssh_public_key", "ecdh_public_key",
                "identity_key_history",
            ],
            // The environment tag and the key's expiry (schema migration 12); intents mode (migration 17), which
            // refuses the agent's reads of private and SSH keys: cleared with SQL it would let them through; the
            // identity public keys and their history (migration 18), which peers trust as the agent's: swapped with
            // SQL they would let someone else pass for it.
            since: [
                "environment": 2, "environment_locked": 2, "env_auto_resolve": 2, "api_key_expires_at": 2,
                "intents_api_enabled": 4, "ssh_public_key": 5, "ecdh_public_key": 5, "identity_key_history": 5,
            ]),
        Table(
            name: "user_api_keys", key: "id",
            columns: ["id", "user_id", "org_id", "key_prefix", "key_digest", "scopes", "is_active", "expires_at"]),
        Table(
            name: "refresh_tokens", key: "digest",
            columns: [
                "digest", "family", "principal_type", "principal_id", "org_id", "expires_at", "scopes", "api_key_id",
                "key_version", "spent_at",
            ]),
        Table(name: "invites", key: "digest", columns: ["digest", "org_id", "email", "role", "expires_at", "redeemed_at"]),
        Table(
            name: "policies", key: "id",
            columns: [
                "id", "vault_id", "pattern", "principal_type", "principal_id", "permissions", "conditions", "expires_at",
                "effect", "priority",
            ]),
        Table(
            name: "shares", key: "id",
            columns: [
                "id", "org_id", "secret_id", "vault_id", "path", "created_by_type", "created_by", "recipient_type",
                "recipient_id", "recipient_email", "expires_at", "max_access_count", "access_count", "passphrase_hash",
                "ip_allowlist", "status", "revoked_at", "version", "claim_digest", "reference",
            ]),
        // Whether the vault requires customer-managed keys, and whose (schema migration 14, seal version 3): a
        // database writer who cleared it would let the server accept values the client never encrypted.
        Table(name: "vaults", key: "id", columns: ["id", "org_id", "cmek_fingerprint"], since: ["cmek_fingerprint": 3]),
        Table(name: "ip_rules", key: "id", columns: ["id", "org_id", "rule_type", "cidr", "applies_to"]),
        // TOTP enrolments (schema migration 11): whether a login needs a second factor, the secret, the last step
        // accepted and the unspent recovery codes.
        Table(
            name: "user_mfa", key: "user_id",
            columns: ["user_id", "org_id", "secret", "enabled_at", "last_step", "recovery_digests"]),
        // Environment variables (migration 13): where a value applies (its environments, a branch override, whether
        // lists may show it) and which vaults an org's shared variable reaches. The values themselves are sealed by
        // their data keys, bound to the row's id and version.
        Table(
            name: "env_vars", key: "id",
            columns: ["id", "vault_id", "key", "environments", "git_branch", "sensitive", "version"]),
        Table(name: "org_env_vars", key: "id", columns: ["id", "org_id", "key", "environments", "sensitive", "version"]),
        Table(name: "org_env_var_links", key: "id", columns: ["id", "env_var_id", "vault_id", "org_id"]),
        // Approvals and their leases (migration 15): who asked, for what (and what the person was shown), the
        // decision, and the lease's uses and expiry. A row planted or edited with SQL would let a read through
        // without a person's approval, or show them something else than what approving applies.
        Table(
            name: "approvals", key: "id",
            columns: [
                "id", "org_id", "user_id", "requester_type", "requester_id", "action", "target_type", "target_id",
                "vault_id", "risk_tier", "status", "summary", "reason", "payload", "decided_by", "decided_at", "expires_at",
                "ttl_seconds", "max_uses", "uses_left", "lease_expires_at",
            ]),
        // Capability leases (migration 20): who may use which secret against which destination, how, how often and
        // until when, with the uses counted so far (the lease's own and each caveat's). Planted or edited with SQL, a
        // row would send the secret somewhere or to someone no person chose, or more often than they allowed.
        Table(
            name: "capability_leases", key: "id",
            columns: [
                "id", "org_id", "vault_id", "path", "principal_type", "principal_id", "scheme", "host", "port", "methods",
                "path_prefix", "injection", "max_uses", "uses", "caveat_uses", "expires_at", "revoked_at", "created_by",
                "created_by_type",
            ]),
    ]

    public static func table(_ name: String) -> Table {
        guard let table = tables.first(where: { $0.name == name }) else { preconditionFailure("\(name) is not sealed") }
        return table
    }

    /// HMAC state with the key already absorbed (as in `AuditChain`).
    private let keyed: HMAC<SHA256>

    /// Rows whose seal verified, by seal: a row read again with the same values (every request reads its caller's
    /// row, its vault and its policies) is then known good without another MAC. Only verified rows enter, and a hit
    /// needs the same table and every sealed value equal, so a changed row always gets the full check. Bounded:
    /// emptied when full.
    private let verifiedRows = Mutex<[Data: VerifiedRow]>([:])
    private static let verifiedRowLimit = 4096

    private struct VerifiedRow: Equatable {
        let table: String
        let values: [SQLValue]
    }

    /// The seal version this seal writes and verifies: `GrantSeal.version`, or an older one to stand for an earlier
    /// build (tests of the upgrade).
    public let version: Int

    public init(key: SymmetricKey, version: Int = GrantSeal.version) {
        keyed = HMAC<SHA256>(key: key)
        self.version = version
    }

    /// Loads the seal key from storage (sealed by the keystore), creating it on first start.
    public static func load(system: any SystemStore, keystore: any Keystore) async throws -> GrantSeal {
        GrantSeal(key: try await keystore.serverKey("grant-seal-key", in: system))
    }

    /// The seal of a row of `table` whose columns hold `value(column)`, over the columns the seal covers at
    /// `version` (this seal's own unless given).
    public func seal(_ table: Table, version: Int? = nil, _ value: (String) -> SQLValue) -> Data {
        var message: [UInt8] = []
        message.reserveCapacity(256)
        func append(_ bytes: some Collection<UInt8>) {
            let count = UInt32(bytes.count)
            message.append(contentsOf: [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)])
            message.append(contentsOf: bytes)
        }
        append("keyhold.grant.v1".utf8)
        append(table.name.utf8)
        for column in table.columns(at: version ?? self.version) {
            append(column.utf8)
            // One spelling per value whichever backend stored it: an id as its canonical text (SQLite keeps text,
            // PostgreSQL a uuid), a flag as the integer 0 or 1 (SQLite's spelling of PostgreSQL's boolean).
            switch value(column) {
            case .null: message.append(0)
            case .integer(let number):
                message.append(1)
                withUnsafeBytes(of: number.bigEndian) { append($0) }
            case .boolean(let flag):
                message.append(1)
                withUnsafeBytes(of: Int64(flag ? 1 : 0).bigEndian) { append($0) }
            case .text(let text):
                message.append(2)
                append(text.utf8)
            case .uuid(let id):
                message.append(2)
                append(id.wire.utf8)
            case .bytes(let data):
                message.append(3)
                append(data)
            }
        }
        var mac = keyed
        mac.update(data: message)
        return Data(mac.finalize())
    }

    /// The seal a stored row of `table` must carry (at `version`, this seal's own unless given).
    public func seal(_ table: Table, row: StoredRow, version: Int? = nil) -> Data {
        seal(table, version: version) { row[$0] ?? .null }
    }

    /// The row decoded by `decode`, when its seal verifies; otherwise `StoredDataError` for the table's `seal`
    /// column. The row is decoded first, so a value that does not decode is named by its own column.
    public func verified<Record>(_ row: StoredRow, _ table: Table, _ decode: (StoredRow) throws -> Record) throws -> Record {
        let record = try decode(row)
        guard case .bytes(let stored)? = row[Self.column] else {
            throw StoredDataError(table: table.name, column: Self.column, problem: "missing")
        }
        let verified = VerifiedRow(table: table.name, values: table.columns(at: version).map { row[$0] ?? .null })
        if verifiedRows.withLock({ $0[stored] }) == verified { return record }
        guard CredentialHasher.constantTimeEqual(stored, seal(table, row: row)) else {
            throw StoredDataError(table: table.name, column: Self.column, problem: "does not verify")
        }
        verifiedRows.withLock {
            if $0.count >= Self.verifiedRowLimit { $0.removeAll(keepingCapacity: true) }
            $0[stored] = verified
        }
        return record
    }
}

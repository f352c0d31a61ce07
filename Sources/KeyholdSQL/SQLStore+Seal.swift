import Foundation
import KeyholdCore

/// Sealed grants (see `GrantSeal`): rows of the sealed tables are verified as they are decoded, and written with
/// their seal.
extension SQLStore {
    static let users = GrantSeal.table("users")
    static let agents = GrantSeal.table("agents")
    static let apiKeys = GrantSeal.table("user_api_keys")
    static let refreshTokens = GrantSeal.table("refresh_tokens")
    static let invites = GrantSeal.table("invites")
    static let policies = GrantSeal.table("policies")
    static let shares = GrantSeal.table("shares")
    static let vaults = GrantSeal.table("vaults")
    static let ipRules = GrantSeal.table("ip_rules")

    /// Installs the seal key and, the first time a database meets it, seals the rows it already holds (in one
    /// transaction that also records it was done, so a row without a seal is never sealed later: it is refused).
    /// Until then, every sealed row is refused.
    ///
    /// The record also holds the seal version the rows were sealed under (`GrantSeal.version`; NULL, from before
    /// versions, is 1). When it is older than this build's, each row of a table whose column list grew since is
    /// checked under the list it was sealed with and, only if that seal verifies, re-sealed under the current one; a
    /// row that does not verify keeps its old seal and stays refused. A version newer than this build knows refuses
    /// the start-up: this build would refuse every row sealed since, and must not downgrade them.
    public func sealGrants(with seal: GrantSeal) async throws {
        try await database.inTransaction { db in
            // `grant_seals` gets its one row in the transaction that sealed the rows stored before seals existed; from
            // then on a row without a seal is refused like a row with a wrong one.
            try await db.lock("keyhold.grant_seals")
            guard let marker = try await db.first("SELECT version FROM grant_seals", []) else {
                for table in GrantSeal.tables {
                    for row in try await db.query("SELECT * FROM \(table.name) WHERE seal IS NULL", []) {
                        try await db.query(
                            "UPDATE \(table.name) SET seal = ? WHERE \(table.key) = ?",
                            [.bytes(seal.seal(table, row: row)), row[table.key] ?? .null])
                    }
                }
                try await db.query("INSERT INTO grant_seals (sealed_at, version) VALUES (?, ?)", [.time(.now), .int(seal.version)])
                return
            }
            let recorded = Int(try StoredFields(marker, table: "grant_seals").optionalInt("version") ?? 1)
            guard recorded <= seal.version else {
                throw StoredDataError(
                    table: "grant_seals", column: "version",
                    problem: "sealed by a newer Keyhold (seal version \(recorded); this one knows up to \(seal.version))")
            }
            guard recorded < seal.version else { return }
            for table in GrantSeal.tables where table.columns(at: recorded) != table.columns(at: seal.version) {
                // Locked, and replaced only if unchanged since it was read: a row another node changes meanwhile keeps
                // the seal that node wrote (the upgrade is meant to run with every older node stopped; see the README).
                for row in try await db.query("SELECT * FROM \(table.name) WHERE seal IS NOT NULL" + db.forUpdate, []) {
                    guard case .bytes(let stored)? = row[GrantSeal.column],
                        CredentialHasher.constantTimeEqual(stored, seal.seal(table, row: row, version: recorded))
                    else { continue }
                    try await db.query(
                        "UPDATE \(table.name) SET seal = ? WHERE \(table.key) = ? AND seal = ?",
                        [.bytes(seal.seal(table, row: row)), row[table.key] ?? .null, .bytes(stored)])
                }
            }
            try await db.query("UPDATE grant_seals SET version = ?", [.int(seal.version)])
        }
        grantSeal.withLock { $0 = seal }
    }

    /// The seal key; a store that has none yet refuses every sealed row.
    var seal: GrantSeal {
        get throws {
            guard let seal = grantSeal.withLock({ $0 }) else {
                throw StoredDataError(table: "system_values", column: "grant-seal-key", problem: "not loaded")
            }
            return seal
        }
    }

    func user(_ row: StoredRow) throws -> User { try seal.verified(row, Self.users, StoredRecords.user) }
    func agent(_ row: StoredRow) throws -> Agent { try seal.verified(row, Self.agents, StoredRecords.agent) }
    func apiKey(_ row: StoredRow) throws -> UserAPIKey { try seal.verified(row, Self.apiKeys, StoredRecords.apiKey) }
    func invite(_ row: StoredRow) throws -> Invite { try seal.verified(row, Self.invites, StoredRecords.invite) }
    func policy(_ row: StoredRow) throws -> Policy { try seal.verified(row, Self.policies, StoredRecords.policy) }
    func share(_ row: StoredRow) throws -> Share { try seal.verified(row, Self.shares, StoredRecords.share) }
    func vault(_ row: StoredRow) throws -> Vault { try seal.verified(row, Self.vaults, StoredRecords.vault) }
    func ipRule(_ row: StoredRow) throws -> IPRule { try seal.verified(row, Self.ipRules, StoredRecords.ipRule) }
}

extension SQLConnection {
    /// Inserts a row of a sealed table with its seal; `values` names every column the seal covers.
    func insert(_ table: GrantSeal.Table, _ values: KeyValuePairs<String, SQLValue>, seal: GrantSeal) async throws {
        let byColumn = Dictionary(values.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        assert(table.columns.allSatisfy { byColumn[$0] != nil }, "every sealed column of \(table.name) is written")
        let columns = values.map(\.key) + [GrantSeal.column]
        try await query(
            "INSERT INTO \(table.name) (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))",
            values.map(\.value) + [.bytes(seal.seal(table) { byColumn[$0] ?? .null })])
    }

    /// The row of a sealed table that `condition` selects, locked for the rest of the transaction, decoded and with
    /// its seal verified; nil when there is none.
    func lockedRow<Record>(
        _ table: GrantSeal.Table, where condition: String, _ binds: [SQLValue], seal: GrantSeal,
        as decode: (StoredRow) throws -> Record
    ) async throws -> (row: StoredRow, record: Record)? {
        guard let row = try await first("SELECT * FROM \(table.name) WHERE \(condition)" + forUpdate, binds) else { return nil }
        return (row, try seal.verified(row, table, decode))
    }

    /// Changes columns of a row read (and verified) in this transaction and re-seals it.
    func update(_ table: GrantSeal.Table, row: StoredRow, set changes: KeyValuePairs<String, SQLValue>, seal: GrantSeal)
        async throws
    {
        let byColumn = Dictionary(changes.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        let assignments = (changes.map(\.key) + [GrantSeal.column]).map { "\($0) = ?" }.joined(separator: ", ")
        try await query(
            "UPDATE \(table.name) SET \(assignments) WHERE \(table.key) = ?",
            changes.map(\.value) + [.bytes(seal.seal(table) { byColumn[$0] ?? row[$0] ?? .null }), row[table.key] ?? .null])
    }
}

import Foundation
import KeyholdCore

/// A value bound to a statement's `?`. Each backend stores it in its own type: a UUID is text in SQLite and `uuid` in
/// PostgreSQL, a flag an integer 0/1 in SQLite and `boolean` in PostgreSQL.
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

/// One connection inside a transaction (or a plain read) of a backend. Statements are written once, in the SQL both
/// backends read, with `?` placeholders (`?N` to use one value twice); the backend numbers them as it needs.
/// A unique-constraint violation is thrown as `StorageError.conflict`.
public protocol SQLConnection {
    associatedtype Row: StoredRow
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [Row]

    /// Appended to a SELECT whose rows the transaction goes on to change or rely on: ` FOR UPDATE` on PostgreSQL
    /// (row locks serialise concurrent transactions on every node), nothing on SQLite (its single writer already does).
    var forUpdate: String { get }
    /// ` FOR UPDATE OF alias` on PostgreSQL (only that table's rows of a join are locked), nothing on SQLite.
    func forUpdate(of alias: String) -> String
    /// ` FOR KEY SHARE` on PostgreSQL (the row may not be deleted until the transaction ends), nothing on SQLite.
    var forKeyShare: String { get }

    /// Takes a lock named by `key` until the transaction ends, for a rule that spans rows which may not exist yet
    /// (a refresh family): an advisory lock on PostgreSQL, nothing on SQLite (its single writer already serialises).
    func lock(_ key: String) async throws

    /// The org's audit chain head, held until the transaction ends so that appends form one linear chain (a row
    /// lock on PostgreSQL; the single writer's cached copy on SQLite). Nil when the org has no event yet.
    func lockAuditHead(orgID: UUID) async throws -> AuditHead?
    /// Records the org's new head, in the transaction that appended the event.
    func setAuditHead(orgID: UUID, to head: AuditHead) async throws
}

extension SQLConnection {
    public func first(_ sql: String, _ binds: [SQLValue] = []) async throws -> Row? { try await query(sql, binds).first }
}

/// How a backend runs a transaction and a plain read; everything else about storage lives in `SQLStorage`.
public protocol SQLDatabase: Sendable {
    associatedtype Connection: SQLConnection
    /// Runs `body` in one transaction and returns once it is committed (durable), or throws after it was rolled
    /// back; the body's own errors come out as thrown.
    func inTransaction<T: Sendable>(_ body: @escaping @Sendable (Connection) async throws -> T) async throws -> T
    /// Runs plain reads outside any transaction; they see the last committed state.
    func reading<T: Sendable>(_ body: @escaping @Sendable (Connection) async throws -> T) async throws -> T
}

/// A `Storage` whose rules are written once, as SQL and Swift over `SQLDatabase`: the methods in this module's
/// extensions are every backend's implementation.
public protocol SQLStorage: Storage {
    associatedtype Backend: SQLDatabase
    var backend: Backend { get }
}

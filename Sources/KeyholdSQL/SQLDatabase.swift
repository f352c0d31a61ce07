import Foundation
import KeyholdCore
import Synchronization

/// One connection inside a transaction (or a plain read) of a backend. Statements are written once, in the SQL both
/// backends read, with `?` placeholders (`?N` to use one value twice; never both kinds in one statement); the backend
/// numbers them as it needs. A unique-constraint violation is thrown as `StorageError.conflict`.
public protocol SQLConnection {
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [StoredRow]

    /// Appended to a SELECT whose rows the transaction goes on to change or rely on: ` FOR UPDATE` on PostgreSQL
    /// (row locks serialise concurrent transactions on every node), nothing on SQLite (its single writer already does).
    var forUpdate: String { get }
    /// ` FOR UPDATE OF alias` on PostgreSQL (only that table's rows of a join are locked), nothing on SQLite.
    func forUpdate(of alias: String) -> String
    /// ` FOR KEY SHARE` on PostgreSQL (the row may not be deleted until the transaction ends), nothing on SQLite.
    var forKeyShare: String { get }
    /// ` FOR UPDATE OF alias SKIP LOCKED` on PostgreSQL (rows another transaction holds are passed over, so concurrent
    /// claimers on many nodes take disjoint rows), nothing on SQLite (its single writer already claims one at a time).
    func forUpdateSkipLocked(of alias: String) -> String
    /// Called by `append` when the transaction queued webhook deliveries, so that the store wakes its dispatcher once
    /// the transaction has committed (`OutboxConnection`); a backend's own connection ignores it.
    func queuedWebhookDeliveries()

    /// Takes a lock named by `key` until the transaction ends, for a rule that spans rows which may not exist yet
    /// (a refresh family): an advisory lock on PostgreSQL, nothing on SQLite (its single writer already serialises).
    func lock(_ key: String) async throws

    /// The org's audit chain head, held until the transaction ends so that appends form one linear chain (a row
    /// lock on PostgreSQL; the single writer's cached copy on SQLite). Nil when the org has no event yet.
    func lockAuditHead(orgID: UUID) async throws -> AuditHead?
    /// Runs `insert` (the event's INSERT, with `binds`) and records `head`, the event, as the org's new head, in
    /// this transaction (on PostgreSQL in one statement: a round trip costs more there than the statement).
    func appendAuditEvent(_ insert: String, _ binds: [SQLValue], orgID: UUID, head: AuditHead) async throws
    /// Whether this transaction, or one before it in the same commit, wrote a table that authorization reads (only
    /// a backend with an `AuthorizationClock` tracks it).
    var changedAuthorization: Bool { get }
}

extension SQLConnection {
    public func queuedWebhookDeliveries() {}
    public var changedAuthorization: Bool { false }

    public func first(_ sql: String, _ binds: [SQLValue] = []) async throws -> StoredRow? { try await query(sql, binds).first }
}

/// How a backend runs a transaction and a plain read; everything else about storage lives in `SQLStore`.
public protocol SQLDatabase: Sendable {
    /// Runs `body` in one transaction and returns once it is committed (durable), or throws after it was rolled
    /// back; the body's own errors come out as thrown.
    func inTransaction<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T
    /// Runs plain reads outside any transaction; they see the last committed state.
    func reading<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T
    /// How the backend knows whether what authorization read may have changed, so that authorization lookups can
    /// be served from memory (`AuthorizationCache`). Nil: every lookup reads storage.
    var authorizationSource: AuthorizationSource? { get }
}

extension SQLDatabase {
    public var authorizationSource: AuthorizationSource? { nil }
}

/// Every backend's `Storage`: the rules are written once, as SQL and Swift over an `SQLDatabase` (the methods in this
/// module's extensions). A backend subclasses it with how it opens and closes.
open class SQLStore: Storage, @unchecked Sendable {
    public let database: any SQLDatabase
    /// Set once, by `sealGrants(with:)`, before the store serves anything.
    let grantSeal = Mutex<GrantSeal?>(nil)

    /// Signalled after a transaction that queued webhook deliveries has committed.
    public let webhookWakeup = WebhookWakeup()

    /// Authorization state in memory, when the backend keeps a clock for it.
    let authorization: AuthorizationCache?

    public init(database: any SQLDatabase) {
        self.database = OutboxDatabase(base: database, wakeup: webhookWakeup)
        let database = self.database
        authorization = database.authorizationSource.map { AuthorizationCache(source: $0, database: database) }
    }

    open func close() async throws {}
}

/// The backend's database with two additions. A transaction whose audit events queued webhook deliveries wakes the
/// dispatcher after it has committed (never before: a delivery must not be looked for before it is visible, nor
/// sent for a change that rolled back). And with an in-process clock, a transaction of a request that was served
/// authorization facts from memory first checks them (`AuthorizationCache.check`).
struct OutboxDatabase: SQLDatabase {
    let base: any SQLDatabase
    let wakeup: WebhookWakeup

    var authorizationSource: AuthorizationSource? { base.authorizationSource }

    func inTransaction<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        let queued = QueuedFlag()
        let observation = AuthorizationObservation.active
        let clock: AuthorizationClock? = if case .clock(let clock) = base.authorizationSource { clock } else { nil }
        let result = try await base.inTransaction { db in
            if let observation, let clock { try await AuthorizationCache.check(observation, clock: clock, on: db) }
            return try await body(OutboxConnection(base: db, queued: queued))
        }
        observation?.markCommitted()
        if queued.value.load(ordering: .acquiring) { wakeup.signal() }
        return result
    }

    func reading<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        try await base.reading(body)
    }
}

final class QueuedFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// A transaction's connection that remembers whether the transaction queued webhook deliveries.
struct OutboxConnection: SQLConnection {
    let base: any SQLConnection
    let queued: QueuedFlag

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [StoredRow] { try await base.query(sql, binds) }
    var forUpdate: String { base.forUpdate }
    func forUpdate(of alias: String) -> String { base.forUpdate(of: alias) }
    var forKeyShare: String { base.forKeyShare }
    func forUpdateSkipLocked(of alias: String) -> String { base.forUpdateSkipLocked(of: alias) }
    func lock(_ key: String) async throws { try await base.lock(key) }
    func lockAuditHead(orgID: UUID) async throws -> AuditHead? { try await base.lockAuditHead(orgID: orgID) }
    func appendAuditEvent(_ insert: String, _ binds: [SQLValue], orgID: UUID, head: AuditHead) async throws {
        try await base.appendAuditEvent(insert, binds, orgID: orgID, head: head)
    }
    func queuedWebhookDeliveries() { queued.value.store(true, ordering: .releasing) }
    var changedAuthorization: Bool { base.changedAuthorization }
}

import Foundation
import KeyholdCore
import KeyholdSQL

/// SQLite under the shared storage rules: transactions on the single writer (group commit), plain reads inline on
/// a reader connection of the pool.
struct SQLiteDatabase: SQLDatabase {
    let committer: GroupCommitter
    let readers: ReaderPool
    var authorizationSource: AuthorizationSource? { .clock(committer.clock) }

    /// Runs `body` in a transaction on the writer and returns once it is committed (durable), or throws after it
    /// was rolled back. Transactions that arrive while the writer is busy run together under one
    /// `BEGIN IMMEDIATE … COMMIT`, each in its own savepoint, so a whole group costs one fsync. A body that throws
    /// rolls back to its savepoint and leaves the others untouched; a failed COMMIT fails every body in the group.
    func writing<T: Sendable>(_ body: @escaping @Sendable (SQLiteDB) async throws -> T) async throws -> T {
        let outcome = Outcome<T>()
        committer.submit { db in outcome.set(try await body(db)) } completion: { error in outcome.finish(error) }
        return try await outcome.value()
    }

    func inTransaction<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        try await writing { try await body($0) }
    }

    /// Plain reads run inline on the calling task: a WAL read of a few rows takes microseconds from the page cache,
    /// less than the two thread hand-offs a thread-pool job costs. (Writes, which wait for fsync, run on the writer.)
    func reading<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        let db = try readers.take()
        defer { readers.put(db) }
        return try await body(db)
    }
}

extension SQLiteDB: SQLConnection {
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [StoredRow] {
        do {
            return try rows(sql, binds)
        } catch let error as Failure where error.isUniqueViolation {
            throw StorageError.conflict
        }
    }

    var forUpdate: String { "" }
    func forUpdate(of alias: String) -> String { "" }
    var forKeyShare: String { "" }
    func forUpdateSkipLocked(of alias: String) -> String { "" }

    func lock(_ key: String) async throws {}

    /// The writer's cached head: this connection is the only one that appends, under `BEGIN IMMEDIATE`.
    func lockAuditHead(orgID: UUID) async throws -> AuditHead? { try auditHeads.head(of: orgID, in: self) }

    func appendAuditEvent(_ insert: String, _ binds: [SQLValue], orgID: UUID, head: AuditHead) async throws {
        _ = try await query(insert, binds)
        auditHeads.advance(orgID, to: head)
    }
}

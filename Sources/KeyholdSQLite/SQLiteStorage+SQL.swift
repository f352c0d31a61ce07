import Foundation
import KeyholdCore
import KeyholdSQL
import SQLiteNIO

/// SQLite under the shared storage rules: transactions on the single writer (group commit), plain reads inline on
/// a reader connection.
extension SQLiteStorage: SQLStorage, SQLDatabase {
    public var backend: SQLiteStorage { self }

    public func inTransaction<T: Sendable>(_ body: @escaping @Sendable (SQLiteDB) async throws -> T) async throws -> T {
        let outcome = Outcome<T>()
        committer.submit { db in outcome.set(try await body(db)) } completion: { error in outcome.finish(error) }
        return try await outcome.value()
    }

    public func reading<T: Sendable>(_ body: @escaping @Sendable (SQLiteDB) async throws -> T) async throws -> T {
        let db = try readers.take()
        defer { readers.put(db) }
        return try await body(db)
    }
}

extension SQLiteDB: SQLConnection {
    public func query(_ sql: String, _ binds: [SQLValue]) async throws -> [Row] {
        do {
            return try query(sql, binds.map(\.sqlite))
        } catch let error as Failure where error.isUniqueViolation {
            throw StorageError.conflict
        }
    }

    public var forUpdate: String { "" }
    public func forUpdate(of alias: String) -> String { "" }
    public var forKeyShare: String { "" }

    public func lock(_ key: String) async throws {}

    /// The writer's cached head: this connection is the only one that appends, under `BEGIN IMMEDIATE`.
    public func lockAuditHead(orgID: UUID) async throws -> AuditHead? { try auditHeads.head(of: orgID, in: self) }

    public func setAuditHead(orgID: UUID, to head: AuditHead) async throws { auditHeads.advance(orgID, to: head) }
}

extension SQLValue {
    var sqlite: SQLiteData {
        switch self {
        case .null: .null
        case .integer(let value): .integer(Int(value))
        case .text(let value): .text(value)
        case .bytes(let value): .blob(ByteBuffer(bytes: value))
        case .boolean(let value): .integer(value ? 1 : 0)
        case .uuid(let value): .text(value.wire)
        }
    }
}

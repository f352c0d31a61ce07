import Foundation
import KeyholdCore
import KeyholdSQL
import NIOCore
import PostgresNIO
import Synchronization

/// PostgreSQL under the shared storage rules: each transaction on a pooled connection (READ COMMITTED, with the
/// row locks the shared statements take), plain reads on a pooled connection outside any transaction.
extension PostgresStorage: SQLStorage, SQLDatabase {
    public var backend: PostgresStorage { self }

    public func inTransaction<T: Sendable>(_ body: @escaping @Sendable (DB) async throws -> T) async throws -> T {
        try await transaction { try await body($0) }
    }

    public func reading<T: Sendable>(_ body: @escaping @Sendable (DB) async throws -> T) async throws -> T {
        let logger = self.logger
        do {
            return try await client.withConnection { try await body(DB(connection: $0, logger: logger)) }
        } catch {
            throw Self.translate(Self.unwrap(error))
        }
    }
}

extension DB: SQLConnection {
    public func query(_ sql: String, _ binds: [SQLValue]) async throws -> [Row] {
        var bindings = PostgresBindings(capacity: binds.count)
        for value in binds {
            switch value {
            case .null: bindings.appendNull()
            case .integer(let number): bindings.append(number)
            case .text(let text): bindings.append(text)
            case .bytes(let data): bindings.append(ByteBuffer(bytes: data))
            case .boolean(let flag): bindings.append(flag)
            case .uuid(let id): bindings.append(id)
            }
        }
        return try await query(PostgresQuery(unsafeSQL: PostgresPlaceholders.numbered(sql), binds: bindings))
    }

    public var forUpdate: String { " FOR UPDATE" }
    public func forUpdate(of alias: String) -> String { " FOR UPDATE OF \(alias)" }
    public var forKeyShare: String { " FOR KEY SHARE" }

    public func lock(_ key: String) async throws {
        try await execute("SELECT pg_advisory_xact_lock(hashtext(\(key))::bigint)")
    }

    /// Locks the org's head row (made first if the org has none yet: a row with seq 0 stands for "no events"), so
    /// that appends from every node form one linear chain.
    public func lockAuditHead(orgID: UUID) async throws -> AuditHead? {
        try await execute(
            "INSERT INTO audit_heads (org_id, event_id, seq, hash) VALUES (\(orgID), NULL, 0, '') ON CONFLICT (org_id) DO NOTHING")
        guard let row = try await query("SELECT event_id, seq, hash FROM audit_heads WHERE org_id = \(orgID) FOR UPDATE")
            .first
        else { throw StorageError.backend("audit head vanished") }
        guard try StoredFields(row, table: "audit_heads").int("seq") > 0 else { return nil }
        return try StoredRecords.auditHead(row)
    }

    public func setAuditHead(orgID: UUID, to head: AuditHead) async throws {
        try await execute(
            "UPDATE audit_heads SET event_id = \(head.eventID), seq = \(head.sequence), hash = \(head.hash) WHERE org_id = \(orgID)")
    }
}

/// The shared statements' `?` (and `?N`) placeholders as PostgreSQL's `$N`, converted once per statement text.
enum PostgresPlaceholders {
    private static let cache = Mutex<[String: String]>([:])

    static func numbered(_ sql: String) -> String {
        if let done = cache.withLock({ $0[sql] }) { return done }
        var out = ""
        var next = 1
        var inLiteral = false
        var characters = sql.makeIterator()
        var pending = characters.next()
        while let character = pending {
            pending = characters.next()
            if character == "'" { inLiteral.toggle() }
            guard character == "?", !inLiteral else {
                out.append(character)
                continue
            }
            var digits = ""
            while let digit = pending, digit.isASCII, digit.isNumber {
                digits.append(digit)
                pending = characters.next()
            }
            if digits.isEmpty {
                out += "$\(next)"
                next += 1
            } else {
                out += "$" + digits
            }
        }
        let converted = out
        cache.withLock { $0[sql] = converted }
        return converted
    }
}

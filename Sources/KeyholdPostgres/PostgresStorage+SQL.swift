import Foundation
import KeyholdCore
import KeyholdSQL
import NIOCore
import PostgresNIO
import Synchronization

/// PostgreSQL under the shared storage rules: each transaction on a pooled connection (READ COMMITTED, with the
/// row locks the shared statements take), plain reads on a pooled connection outside any transaction.
struct PostgresDatabase: SQLDatabase {
    let client: PostgresClient
    /// The logger handed to postgres-nio, never below `debug`: its `trace` output carries whole data rows.
    let logger: Logger
    /// Triggers move `authorization_epoch` with every change authorization would see, on any node.
    var authorizationSource: AuthorizationSource? { .epoch }

    /// Runs `body` in one transaction on a pooled connection; rolls back when it throws. Errors thrown by `body`
    /// come out as they were thrown (PostgreSQL errors as `StorageError`). A transaction the server aborted as a
    /// deadlock victim or serialization failure is retried.
    func inTransaction<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        let logger = self.logger
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await client.withTransaction(logger: logger) { connection in
                    try await body(DB(connection: connection, logger: logger))
                }
            } catch {
                let cause = PostgresStorage.unwrap(error)
                if attempt < 3, let state = (cause as? PSQLError)?.serverInfo?[.sqlState],
                    state == "40P01" || state == "40001"
                {
                    continue
                }
                throw PostgresStorage.translate(cause)
            }
        }
    }

    func reading<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        let logger = self.logger
        do {
            return try await client.withConnection { try await body(DB(connection: $0, logger: logger)) }
        } catch {
            throw PostgresStorage.translate(PostgresStorage.unwrap(error))
        }
    }
}

extension DB: SQLConnection {
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [StoredRow] {
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
        return try await connection.query(
            PostgresQuery(unsafeSQL: PostgresPlaceholders.numbered(sql), binds: bindings), logger: logger
        ).collect().map(Self.storedRow)
    }

    var forUpdate: String { " FOR UPDATE" }
    func forUpdate(of alias: String) -> String { " FOR UPDATE OF \(alias)" }
    var forKeyShare: String { " FOR KEY SHARE" }
    func forUpdateSkipLocked(of alias: String) -> String { " FOR UPDATE OF \(alias) SKIP LOCKED" }

    func lock(_ key: String) async throws {
        try await execute("SELECT pg_advisory_xact_lock(hashtext(\(key))::bigint)")
    }

    /// Locks the org's head row, so that appends from every node form one linear chain: one round trip once the row
    /// exists; an org's first event makes it first (a row with seq 0 stands for "no events").
    func lockAuditHead(orgID: UUID) async throws -> AuditHead? {
        let select = "SELECT event_id, seq, hash FROM audit_heads WHERE org_id = ? FOR UPDATE"
        var locked = try await first(select, [.uuid(orgID)])
        if locked == nil {
            try await execute(
                "INSERT INTO audit_heads (org_id, event_id, seq, hash) VALUES (\(orgID), NULL, 0, '') ON CONFLICT (org_id) DO NOTHING")
            locked = try await first(select, [.uuid(orgID)])
        }
        guard let row = locked else { throw StorageError.backend("audit head vanished") }
        guard try StoredFields(row, table: "audit_heads").int("seq") > 0 else { return nil }
        return try StoredRecords.auditHead(row)
    }

    /// A row in the shared form, each column by its PostgreSQL type; a type the schema does not use is an error.
    static func storedRow(_ row: PostgresRow) throws -> StoredRow {
        var names: [String: Int] = [:]
        var values: [SQLValue] = []
        for (index, cell) in row.enumerated() {
            names[cell.columnName] = index
            guard cell.bytes != nil else {
                values.append(.null)
                continue
            }
            switch cell.dataType {
            case .uuid: values.append(.uuid(try cell.decode(UUID.self)))
            case .bool: values.append(.boolean(try cell.decode(Bool.self)))
            case .int2, .int4, .int8: values.append(.integer(try cell.decode(Int64.self)))
            case .bytea: values.append(.bytes(try cell.decode(Data.self)))
            case .text, .varchar, .name, .bpchar: values.append(.text(try cell.decode(String.self)))
            default: throw StorageError.backend("PostgreSQL: column \(cell.columnName) has a type Keyhold does not use")
            }
        }
        return StoredRow(names: names, values: values)
    }

    /// The event's INSERT as a data-modifying CTE of the head's UPDATE: one round trip.
    func appendAuditEvent(_ insert: String, _ binds: [SQLValue], orgID: UUID, head: AuditHead) async throws {
        _ = try await query(
            "WITH appended AS (\(insert)) UPDATE audit_heads SET event_id = ?, seq = ?, hash = ? WHERE org_id = ?",
            binds + [.uuid(head.eventID), .integer(head.sequence), .text(head.hash), .uuid(orgID)])
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

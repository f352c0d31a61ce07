import CKeyholdShims
import Foundation
import KeyholdCore
import NIOCore
import SQLiteNIO
import VaporCSQLite

/// A synchronous SQLite connection on sqlite-nio's bundled SQLite, with a prepared-statement cache.
///
/// Why not sqlite-nio's async `query`: it hops to a thread pool and back for every statement, and a Keyhold
/// transaction has five to ten statements, so most of a request's time went to thread hand-offs (seen with
/// `perf`: futex waits and task switches on top). Keyhold runs a whole group commit on its writer thread, and a plain
/// read inline on the request's task, calling SQLite directly. One connection is used by one of them at a time.
final class SQLiteDB: @unchecked Sendable {
    private let handle: OpaquePointer
    private var statements: [String: Prepared] = [:]
    /// The writer's copy of each org's audit chain head (see `AuditHeadCache`); unused on reader connections.
    var auditHeads = AuditHeadCache()
    /// On the writer (`trackAuthorizationWrites`): set once a statement ran that writes a table authorization reads
    /// (`AuthorizationCache`); the writer moves the clock after the commit and clears it.
    var changedAuthorization = false
    /// The writer's last `PRAGMA data_version`: it changes when another process committed.
    var dataVersion: Int64?
    private let writes = WriteWatch()

    private struct Prepared {
        let statement: OpaquePointer
        let columns: Int
        let names: [String: Int]
        /// Writes a table outside `authorizationNeutral`, or changes the schema.
        let changesAuthorization: Bool
    }

    /// Set by the authorizer callback while a statement compiles.
    private final class WriteWatch {
        var changesAuthorization = false
    }

    /// Tables no authorization lookup reads: writing them (every read counts, every request is audited) leaves the
    /// authorization state in memory current. A write to any other table, and any schema change, moves the clock.
    static let authorizationNeutral: Set<String> = [
        "secrets", "secret_versions", "version_reads", "audit_events", "audit_heads", "shares", "refresh_tokens",
        "ended_refresh_families", "approvals", "webhook_events", "webhook_deliveries",
    ]

    struct Failure: Error, CustomStringConvertible {
        let code: Int32
        let message: String
        var description: String { "SQLite error \(code): \(message)" }
        /// SQLITE_CONSTRAINT_UNIQUE or SQLITE_CONSTRAINT_PRIMARYKEY.
        var isUniqueViolation: Bool { code == 2067 || code == 1555 }
    }

    /// `bufferedLog`: for the writer, which alone appends to the write-ahead log: its writes to the log are collected
    /// and written as one run per commit (see `keyhold_sqlite_register_wal_vfs`), and it syncs every commit.
    /// `mustExist`: a missing file is an error instead of a new database.
    init(path: String, bufferedLog: Bool = false, mustExist: Bool = false) throws {
        var handle: OpaquePointer?
        let flags = (mustExist ? 0 : SQLITE_OPEN_CREATE) | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX
        if bufferedLog, keyhold_sqlite_register_wal_vfs() != SQLITE_OK {
            throw StorageError.backend("cannot register the SQLite log-buffering VFS")
        }
        let rc = sqlite_nio_sqlite3_open_v2(path, &handle, flags, bufferedLog ? KEYHOLD_WAL_VFS : nil)
        guard rc == SQLITE_OK, let handle else {
            if let handle { sqlite_nio_sqlite3_close(handle) }
            throw StorageError.backend("cannot open \(path): SQLite error \(rc)")
        }
        self.handle = handle
        sqlite_nio_sqlite3_extended_result_codes(handle, 1)
        sqlite_nio_sqlite3_busy_timeout(handle, 10_000)
        guard keyhold_sqlite_enable_qpsg(UnsafeMutableRawPointer(handle)) == SQLITE_OK else {
            throw StorageError.backend("cannot configure \(path)")  // deinit closes the handle
        }
        // The buffering VFS needs every commit synced (the sync writes the buffer out before the commit is visible).
        if bufferedLog { try execute("PRAGMA synchronous=FULL") }
    }

    /// Has SQLite report, as each statement compiles, which tables it writes (its authorizer callback, which allows
    /// everything): the writer uses it to know when a commit changed what authorization reads.
    func trackAuthorizationWrites() {
        let callback: @convention(c) (
            UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?,
            UnsafePointer<CChar>?
        ) -> Int32 = { context, action, table, _, _, _ in
            guard let context else { return SQLITE_OK }
            let watch = Unmanaged<WriteWatch>.fromOpaque(context).takeUnretainedValue()
            switch action {
            case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
                if !SQLiteDB.authorizationNeutral.contains(table.map { String(cString: $0) } ?? "") {
                    watch.changesAuthorization = true
                }
            case SQLITE_READ, SQLITE_SELECT, SQLITE_TRANSACTION, SQLITE_SAVEPOINT, SQLITE_FUNCTION, SQLITE_PRAGMA,
                SQLITE_RECURSIVE:
                break
            default:  // schema changes, ATTACH, and anything newer than this list
                watch.changesAuthorization = true
            }
            return SQLITE_OK
        }
        sqlite_nio_sqlite3_set_authorizer(handle, callback, Unmanaged.passUnretained(writes).toOpaque())
    }

    private var closed = false

    deinit { close() }

    /// Finalizes the cached statements and closes the connection; nothing may use it afterwards.
    func close() {
        guard !closed else { return }
        closed = true
        for prepared in statements.values { sqlite_nio_sqlite3_finalize(prepared.statement) }
        statements = [:]
        sqlite_nio_sqlite3_close_v2(handle)
    }

    private func failure() -> Failure {
        Failure(
            code: sqlite_nio_sqlite3_extended_errcode(handle),
            message: String(cString: sqlite_nio_sqlite3_errmsg(handle)))
    }

    /// Runs SQL without results (pragmas, migrations, transaction control); may hold several statements.
    func execute(_ sql: String) throws {
        writes.changesAuthorization = false
        defer { if writes.changesAuthorization { changedAuthorization = true } }
        guard sqlite_nio_sqlite3_exec(handle, sql, nil, nil, nil) == SQLITE_OK else { throw failure() }
    }

    /// Runs one statement without bind values or results (transaction control), from the statement cache.
    func run(_ sql: String) throws { _ = try rows(sql) }

    /// Runs one statement with its bind values and returns every row, its values as `SQLValue`s (ids and flags
    /// come back as SQLite keeps them: text and integers).
    @discardableResult
    func rows(_ sql: String, _ binds: [SQLValue] = []) throws -> [StoredRow] {
        let prepared = try prepare(sql)
        let statement = prepared.statement
        if prepared.changesAuthorization { changedAuthorization = true }
        defer {
            sqlite_nio_sqlite3_reset(statement)
            sqlite_nio_sqlite3_clear_bindings(statement)
        }
        for (offset, value) in binds.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .integer(let number): rc = sqlite_nio_sqlite3_bind_int64(statement, index, sqlite3_int64(number))
            case .boolean(let flag): rc = sqlite_nio_sqlite3_bind_int64(statement, index, flag ? 1 : 0)
            case .text(let text): rc = sqlite_nio_sqlite3_bind_text(statement, index, text, -1, Self.transient)
            case .uuid(let id): rc = sqlite_nio_sqlite3_bind_text(statement, index, id.wire, -1, Self.transient)
            case .bytes(let data):
                rc = data.withUnsafeBytes {
                    sqlite_nio_sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), Self.transient)
                }
            case .null: rc = sqlite_nio_sqlite3_bind_null(statement, index)
            }
            guard rc == SQLITE_OK else { throw failure() }
        }
        let count = Int(sqlite_nio_sqlite3_column_count(statement))
        // A schema change re-prepares a statement; `SELECT *` may then have other columns than when it was cached.
        let names = count == prepared.columns ? prepared.names : Self.columnNames(statement)
        var rows: [StoredRow] = []
        while true {
            let rc = sqlite_nio_sqlite3_step(statement)
            if rc == SQLITE_DONE { return rows }
            guard rc == SQLITE_ROW else { throw failure() }
            var values: [SQLValue] = []
            values.reserveCapacity(count)
            for column in 0..<Int32(count) {
                switch sqlite_nio_sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: values.append(.integer(Int64(sqlite_nio_sqlite3_column_int64(statement, column))))
                case SQLITE_TEXT:
                    values.append(.text(String(cString: sqlite_nio_sqlite3_column_text(statement, column))))
                case SQLITE_BLOB:
                    let length = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
                    if length > 0, let bytes = sqlite_nio_sqlite3_column_blob(statement, column) {
                        values.append(.bytes(Data(bytes: bytes, count: length)))
                    } else {
                        values.append(.bytes(Data()))
                    }
                case SQLITE_FLOAT:
                    // Keyhold stores no floating-point value: one read back decodes as nothing it expects.
                    values.append(.text(String(sqlite_nio_sqlite3_column_double(statement, column))))
                default: values.append(.null)
                }
            }
            rows.append(StoredRow(names: names, values: values))
        }
    }

    /// A statement compiled once per connection, with its column names (also looked up once).
    private func prepare(_ sql: String) throws -> Prepared {
        if let prepared = statements[sql] { return prepared }
        var statement: OpaquePointer?
        writes.changesAuthorization = false
        guard sqlite_nio_sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw failure()
        }
        let prepared = Prepared(
            statement: statement, columns: Int(sqlite_nio_sqlite3_column_count(statement)),
            names: Self.columnNames(statement), changesAuthorization: writes.changesAuthorization)
        statements[sql] = prepared
        return prepared
    }

    private static func columnNames(_ statement: OpaquePointer) -> [String: Int] {
        var names: [String: Int] = [:]
        for column in 0..<sqlite_nio_sqlite3_column_count(statement) {
            names[String(cString: sqlite_nio_sqlite3_column_name(statement, column))] = Int(column)
        }
        return names
    }

    /// `SQLITE_TRANSIENT`: SQLite copies the bound bytes before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}

import CKeyholdShims
import Foundation
import Testing
import VaporCSQLite

/// The writer's log-buffering VFS (`keyhold_sqlite_register_wal_vfs`): what a commit wrote is in the log file when
/// COMMIT returns, other connections see exactly the committed rows, and a rolled-back transaction leaves nothing,
/// also across transactions larger than its buffer, frames spilled and rewritten before their commit (the writer's
/// page cache is kept tiny), a log restarted by a checkpoint, another writer in between, and a database without
/// powersafe overwrite.
@Suite struct WALBufferTests {
    /// A bare connection of sqlite-nio's SQLite.
    final class Connection {
        let handle: OpaquePointer

        init(_ path: String, vfs: String? = nil) throws {
            var handle: OpaquePointer?
            let flags = SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
            let rc = sqlite_nio_sqlite3_open_v2(path, &handle, flags, vfs)
            guard rc == SQLITE_OK, let handle else { throw Failure(message: "open \(path): \(rc)") }
            self.handle = handle
        }

        deinit { sqlite_nio_sqlite3_close_v2(handle) }

        struct Failure: Error { let message: String }

        func execute(_ sql: String) throws {
            guard sqlite_nio_sqlite3_exec(handle, sql, nil, nil, nil) == SQLITE_OK else {
                throw Failure(message: "\(sql): " + String(cString: sqlite_nio_sqlite3_errmsg(handle)))
            }
        }

        func put(_ id: Int64, _ value: [UInt8]) throws {
            var statement: OpaquePointer?
            guard sqlite_nio_sqlite3_prepare_v2(handle, "INSERT OR REPLACE INTO t VALUES (?, ?)", -1, &statement, nil)
                == SQLITE_OK
            else { throw Failure(message: String(cString: sqlite_nio_sqlite3_errmsg(handle))) }
            defer { sqlite_nio_sqlite3_finalize(statement) }
            sqlite_nio_sqlite3_bind_int64(statement, 1, id)
            let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
            _ = value.withUnsafeBytes {
                sqlite_nio_sqlite3_bind_blob(statement, 2, $0.baseAddress, Int32($0.count), transient)
            }
            guard sqlite_nio_sqlite3_step(statement) == SQLITE_DONE else {
                throw Failure(message: String(cString: sqlite_nio_sqlite3_errmsg(handle)))
            }
        }

        /// The first column of the first row, as text.
        func text(_ sql: String) throws -> String {
            var statement: OpaquePointer?
            guard sqlite_nio_sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK,
                sqlite_nio_sqlite3_step(statement) == SQLITE_ROW, let text = sqlite_nio_sqlite3_column_text(statement, 0)
            else {
                sqlite_nio_sqlite3_finalize(statement)
                throw Failure(message: "\(sql): " + String(cString: sqlite_nio_sqlite3_errmsg(handle)))
            }
            defer { sqlite_nio_sqlite3_finalize(statement) }
            return String(cString: text)
        }

        /// Every row of `t`, by id.
        func rows() throws -> [Int64: [UInt8]] {
            var statement: OpaquePointer?
            guard sqlite_nio_sqlite3_prepare_v2(handle, "SELECT id, v FROM t", -1, &statement, nil) == SQLITE_OK
            else { throw Failure(message: String(cString: sqlite_nio_sqlite3_errmsg(handle))) }
            defer { sqlite_nio_sqlite3_finalize(statement) }
            var rows: [Int64: [UInt8]] = [:]
            while true {
                let rc = sqlite_nio_sqlite3_step(statement)
                if rc == SQLITE_DONE { return rows }
                guard rc == SQLITE_ROW else { throw Failure(message: "step: \(rc)") }
                let count = Int(sqlite_nio_sqlite3_column_bytes(statement, 1))
                let bytes = sqlite_nio_sqlite3_column_blob(statement, 1)
                rows[sqlite_nio_sqlite3_column_int64(statement, 0)] =
                    bytes.map { Array(UnsafeRawBufferPointer(start: $0, count: count)) } ?? []
            }
        }
    }

    let directory: String
    let path: String
    let writer: Connection

    init(uri: (String) -> String = { $0 }) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-wal-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/db.sqlite"
        #expect(keyhold_sqlite_register_wal_vfs() == SQLITE_OK)
        writer = try Connection(uri(path), vfs: KEYHOLD_WAL_VFS)
        // A 20-page cache: a transaction of more than that spills pages into the log before its commit.
        try writer.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=20")
        try writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    }

    /// The rows as another connection sees them, and as a copy of the database and its log files (taken while the
    /// writer is still open, so nothing the writer holds in memory is in it) sees them after recovering the log.
    func expectCommitted(_ expected: [Int64: [UInt8]]) throws {
        #expect(try writer.rows() == expected)
        let reader = try Connection(path)
        #expect(try reader.rows() == expected)
        #expect(try reader.text("PRAGMA integrity_check") == "ok")
        let copy = directory + "/copy-\(UUID()).sqlite"
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        try FileManager.default.copyItem(atPath: path + "-wal", toPath: copy + "-wal")
        #expect(try Connection(copy).rows() == expected)
    }

    /// The size of the log file on disk.
    func logSize() throws -> Int {
        try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int ?? -1
    }

    /// Inserts (or replaces) `count` rows of `size` random bytes from `first` on, and returns them.
    func put(_ first: Int64, count: Int64, size: Int) throws -> [Int64: [UInt8]] {
        var rows: [Int64: [UInt8]] = [:]
        for id in first..<first + count {
            let value = (0..<size).map { _ in UInt8.random(in: 0...255) }
            try writer.put(id, value)
            rows[id] = value
        }
        return rows
    }

    @Test func commitsAreInTheLogFileAndVisibleToOthers() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var expected: [Int64: [UInt8]] = [:]
        // Small commits, one by one.
        for id in Int64(1)...20 { expected.merge(try put(id, count: 1, size: 100)) { $1 } }
        try expectCommitted(expected)

        // One transaction of about 3 MiB: larger than the buffer, so it is written out before the commit too.
        try writer.execute("BEGIN IMMEDIATE")
        expected.merge(try put(100, count: 1_500, size: 2_000)) { $1 }
        try writer.execute("COMMIT")
        try expectCommitted(expected)

        // The same rows changed again and again in one transaction: pages spilled into the log are changed again.
        try writer.execute("BEGIN IMMEDIATE")
        for _ in 0..<5 { expected.merge(try put(1, count: 20, size: 300)) { $1 } }
        try writer.execute("COMMIT")
        try expectCommitted(expected)

        // A checkpoint that restarts the log: the next commit writes the log's header again, from offset 0.
        try writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        expected.merge(try put(5_000, count: 10, size: 500)) { $1 }
        try expectCommitted(expected)
    }

    @Test func aRolledBackTransactionLeavesNothing() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kept = try put(1, count: 10, size: 200)
        try writer.execute("BEGIN IMMEDIATE")
        _ = try put(1, count: 1_000, size: 2_000)  // spilled, and more than the buffer: part of it reaches the log
        try writer.execute("ROLLBACK")
        try expectCommitted(kept)

        var expected = kept
        expected.merge(try put(50, count: 3, size: 100)) { $1 }
        try expectCommitted(expected)
    }

    /// Frames of a rolled-back transaction that never left the buffer must not land on top of what another writer
    /// appended to the log in the meantime.
    @Test func anotherWriterAfterARollback() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var expected = try put(1, count: 10, size: 200)
        let size = try logSize()
        try writer.execute("BEGIN IMMEDIATE")
        _ = try put(100, count: 100, size: 2_000)
        #expect(try logSize() == size)  // spilled into the buffer, not yet into the file
        try writer.execute("ROLLBACK")

        let other = try Connection(path)
        try other.execute("BEGIN IMMEDIATE")
        for id in Int64(200)..<210 {
            let value = (0..<300).map { _ in UInt8.random(in: 0...255) }
            try other.put(id, value)
            expected[id] = value
        }
        try other.execute("COMMIT")

        expected.merge(try put(300, count: 3, size: 100)) { $1 }
        try expectCommitted(expected)
    }

    /// Without powersafe overwrite SQLite pads a commit to a sector and syncs before the end of the padding (a
    /// reader could meet the padding's unwritten tail), so the log of such a database is not buffered.
    @Test func aDatabaseWithoutPowersafeOverwrite() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let test = try WALBufferTests(uri: { "file:\($0)?psow=0" })
        defer { try? FileManager.default.removeItem(atPath: test.directory) }
        var expected: [Int64: [UInt8]] = [:]
        for round in Int64(0)..<5 {
            let size = try test.logSize()
            try test.writer.execute("BEGIN IMMEDIATE")
            expected.merge(try test.put(round * 100, count: 100, size: 2_000)) { $1 }
            #expect(try test.logSize() > size)  // spilled pages went straight to the file
            try test.writer.execute("COMMIT")
            try test.expectCommitted(expected)
        }
    }
}

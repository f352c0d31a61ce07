import Foundation
import KeyholdCore

/// The SQLite side of `keyhold backup` and `keyhold restore`: a consistent copy of a database a server is writing,
/// and the checks of a copy before it is trusted.
public enum SQLiteBackup {
    /// Copies the database at `source` into the new file `target` with `VACUUM INTO`, on a connection of its own:
    /// one read transaction, so the copy is the database as of one commit (the server goes on writing meanwhile),
    /// in one self-contained file without free pages. Values stay as stored: encrypted.
    public static func snapshot(of source: String, into target: String) throws {
        guard FileManager.default.fileExists(atPath: source) else {
            throw BackupError("no Keyhold database at \(source)")
        }
        let db = try SQLiteDB(path: source, mustExist: true)
        do {
            try db.rows("VACUUM INTO ?", [.text(target)])
        } catch {
            throw BackupError("the copy of \(source) failed: \(error)")
        }
    }

    /// Checks the file's structure (`PRAGMA integrity_check`) and returns its schema version.
    public static func check(_ path: String) throws -> Int {
        do {
            let db = try SQLiteDB(path: path, mustExist: true)
            let problems = try db.rows("PRAGMA integrity_check").compactMap { row in
                row.values.first.flatMap { if case .text(let text) = $0 { text } else { nil } }
            }
            guard problems == ["ok"] else {
                throw BackupError("the database fails SQLite's integrity check: \(problems.prefix(3).joined(separator: "; "))")
            }
            guard let row = try db.rows("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").first else {
                throw BackupError("the database has no schema version")
            }
            return try StoredFields(row, table: "schema_migrations").count("v")
        } catch let error as BackupError {
            throw error
        } catch {
            throw BackupError("the database is damaged or not a Keyhold database: \(error)")
        }
    }

    /// Makes the database one self-contained file: its write-ahead log folded in and gone, rollback journal mode
    /// (a server opening it switches it back to WAL).
    public static func settle(_ path: String) throws {
        let db = try SQLiteDB(path: path, mustExist: true)
        try db.execute("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE")
    }
}

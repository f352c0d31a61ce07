import Foundation
import KeyholdCore
import KeyholdHTTP
import KeyholdPostgres
import KeyholdSQLite
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `keyhold backup`, `restore` and `verify-backup`: an online copy of the SQLite store with an authenticated
/// manifest, and the checks a copy passes before it is trusted (`StoreVerification`). Neither the master key nor the
/// HSM's keys are in a backup: restoring needs the keystore that sealed it, and refuses any other.
public enum Backups {
    static let databaseName = "keyhold.sqlite"

    /// Copies the data dir's database while the server may be running and writing, checks the copy, and writes the
    /// backup file (mode 0600, complete or not at all); returns its manifest.
    public static func backup(_ configuration: KeyholdConfiguration, to path: String, logger: Logger) async throws
        -> BackupManifest
    {
        guard configuration.databaseURL == nil else {
            throw BackupError(
                "a PostgreSQL store is backed up with pg_dump and checked after pg_restore with `keyhold verify-backup --database-url` (see the README)")
        }
        let keystore = try await openKeystore(configuration)
        let target = URL(fileURLWithPath: path)
        let scratch = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).\(UUID().wire)")
        defer { removeDatabase(scratch.path) }
        try SQLiteBackup.snapshot(of: configuration.dataDirectory + "/" + databaseName, into: scratch.path)
        let schema = try SQLiteBackup.check(scratch.path)
        guard schema == SQLiteStorage.history.count else {
            throw BackupError(
                "the database is at schema version \(schema) and this build at \(SQLiteStorage.history.count): back up with the server's own build")
        }
        let report = try await verify(copyAt: scratch.path, keystore: keystore, logger: logger)
        guard report.valid, let key = report.backupKey else {
            throw BackupError("the database fails its checks, so no backup was written:\n  " + report.problems.joined(separator: "\n  "))
        }
        try SQLiteBackup.settle(scratch.path)
        let manifest = BackupManifest(
            report: report, keyholdVersion: Keyhold.version, backend: "sqlite", keystore: keystore.kind,
            database: try BackupArchive.digest(path: scratch.path))
        let partial = scratch.path + ".partial"
        defer { unlink(partial) }
        try FileSecurity.writeNewPrivateFile(path: partial, contents: try BackupArchive.header(manifest: manifest, key: key))
        guard let handle = FileHandle(forWritingAtPath: partial) else { throw BackupError("cannot write \(partial)") }
        do {
            try handle.seekToEnd()
            try BackupArchive.copy(from: scratch.path, offset: 0, to: handle)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            throw BackupError("cannot write \(path): \(error)")
        }
        guard rename(partial, path) == 0 else { throw BackupError("cannot write \(path): errno \(errno)") }
        syncDirectory(target.deletingLastPathComponent().path)
        return manifest
    }

    /// Restores a backup into the data dir, which must hold no database. Nothing is written until the file's length
    /// and SHA-256 match its manifest; the database then goes to a scratch file in the data dir and becomes
    /// `keyhold.sqlite` only after SQLite's integrity check, the manifest's MAC, the schema, the counts and heads,
    /// every audit chain and every key check out with this keystore. On any failure the data dir is left as it was.
    public static func restore(from path: String, _ configuration: KeyholdConfiguration, logger: Logger) async throws
        -> StoreReport
    {
        guard configuration.databaseURL == nil else {
            throw BackupError("restore writes a SQLite data dir; a PostgreSQL store is restored with pg_restore (see the README)")
        }
        let directory = configuration.dataDirectory
        let destination = directory + "/" + databaseName
        for file in [destination, destination + "-wal"] where FileManager.default.fileExists(atPath: file) {
            throw BackupError("\(directory) already holds a Keyhold database: restore into a new, empty data dir")
        }
        let header = try BackupArchive.readHeader(path: path)
        try BackupArchive.checkDatabase(path: path, header: header)
        try checkManifest(header.manifest)
        let keystore = try await openKeystore(configuration)
        let created = !FileManager.default.fileExists(atPath: directory)
        try FileSecurity.ensurePrivateDirectory(directory)
        let scratch = directory + "/.restore-\(UUID().wire).sqlite"
        do {
            let report = try await extract(path, header: header, to: scratch, keystore: keystore, logger: logger)
            guard report.valid else { throw BackupError("the backup was not restored:\n  " + report.problems.joined(separator: "\n  ")) }
            try SQLiteBackup.settle(scratch)
            guard rename(scratch, destination) == 0 else { throw BackupError("cannot write \(destination): errno \(errno)") }
            syncDirectory(directory)
            return report
        } catch {
            removeDatabase(scratch)
            if created { try? FileManager.default.removeItem(atPath: directory) }
            throw error
        }
    }

    /// Every check `restore` runs, on a scratch copy in the system's temporary directory that is removed afterwards.
    public static func verify(file path: String, _ configuration: KeyholdConfiguration, logger: Logger) async throws
        -> StoreReport
    {
        let header = try BackupArchive.readHeader(path: path)
        try BackupArchive.checkDatabase(path: path, header: header)
        try checkManifest(header.manifest)
        let keystore = try await openKeystore(configuration)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-verify-\(UUID().wire).sqlite").path
        defer { removeDatabase(scratch) }
        return try await extract(path, header: header, to: scratch, keystore: keystore, logger: logger)
    }

    /// The checks of a store in place: a PostgreSQL database after `pg_restore` (or any other).
    public static func verifyDatabase(_ configuration: KeyholdConfiguration, logger: Logger) async throws -> StoreReport {
        guard let url = configuration.databaseURL else {
            throw BackupError("name the backup file to verify, or --database-url for a PostgreSQL database")
        }
        let keystore = try await openKeystore(configuration)
        return try await verifyAndClose(
            try await PostgresStorage.open(url: url, logger: logger), keystore: keystore,
            schemaVersion: PostgresStorage.history.count)
    }

    // MARK: steps

    private static func checkManifest(_ manifest: BackupManifest) throws {
        guard manifest.backend == "sqlite" else { throw BackupError("the backup is of a \(manifest.backend) store, not SQLite") }
        guard manifest.schemaVersion <= SQLiteStorage.history.count else {
            throw BackupError(
                "the backup is at schema version \(manifest.schemaVersion), newer than this build's \(SQLiteStorage.history.count): restore with a newer keyhold")
        }
    }

    /// Writes the backup's database to `scratch` and checks it against its manifest and the keystore.
    private static func extract(
        _ path: String, header: BackupArchive.Header, to scratch: String, keystore: any Keystore, logger: Logger
    ) async throws -> StoreReport {
        try FileSecurity.writeNewPrivateFile(path: scratch, contents: Data())
        guard let handle = FileHandle(forWritingAtPath: scratch) else { throw BackupError("cannot write \(scratch)") }
        do {
            try BackupArchive.copy(from: path, offset: header.databaseOffset, to: handle)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            throw BackupError("cannot write \(scratch): \(error)")
        }
        let schema = try SQLiteBackup.check(scratch)
        guard schema == header.manifest.schemaVersion else {
            throw BackupError("the database is at schema version \(schema), the manifest says \(header.manifest.schemaVersion)")
        }
        // An older schema is brought up to this build's, as `serve` would on start.
        var report = try await verify(copyAt: scratch, keystore: keystore, logger: logger)
        // Without the audit key (the keystore is not the one that sealed it) the problems already say why.
        guard let key = report.backupKey else { return report }
        guard header.isAuthentic(key: key) else {
            report.problems.insert("the manifest's MAC does not verify: the backup was changed, or made by another server", at: 0)
            return report
        }
        report.problems += header.manifest.differences(from: report)
        return report
    }

    /// Opens the copy as the server would (applying newer migrations) and runs `StoreVerification` on it.
    private static func verify(copyAt path: String, keystore: any Keystore, logger: Logger) async throws -> StoreReport {
        try await verifyAndClose(
            try await SQLiteStorage.open(path: path, logger: logger), keystore: keystore,
            schemaVersion: SQLiteStorage.history.count)
    }

    private static func verifyAndClose(_ storage: any Storage, keystore: any Keystore, schemaVersion: Int) async throws
        -> StoreReport
    {
        do {
            let report = try await StoreVerification.verify(storage, keystore: keystore, schemaVersion: schemaVersion)
            try await storage.close()
            return report
        } catch {
            try? await storage.close()
            throw error
        }
    }

    /// The keystore the configuration names, never a new one: a software master key must already be in the data dir
    /// or in `KEYHOLD_MASTER_KEY` (a backup does not hold it).
    private static func openKeystore(_ configuration: KeyholdConfiguration) async throws -> any Keystore {
        if configuration.keystore == .software, configuration.masterKey == nil,
            !FileManager.default.fileExists(atPath: configuration.dataDirectory + "/master.key")
        {
            throw BackupError(
                "no master key: the backup does not hold it. Copy master.key from the original data dir into \(configuration.dataDirectory) (mode 0600), or set KEYHOLD_MASTER_KEY")
        }
        return try await KeyholdRuntime.openKeystore(configuration)
    }

    private static func removeDatabase(_ path: String) {
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
    }

    private static func syncDirectory(_ path: String) {
        let fd = open(path.isEmpty ? "." : path, O_RDONLY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}

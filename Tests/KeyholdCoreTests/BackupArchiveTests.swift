import Crypto
import Foundation
import KeyholdCore
import Testing

/// The backup file's header: what it records, and that a changed, cut or foreign file is refused.
struct BackupArchiveTests {
    let key = SymmetricKey(size: .bits256)

    func manifest(database: Data) -> BackupManifest {
        var report = StoreReport()
        report.schemaVersion = 18
        report.auditHeads = [UUID(): AuditHead(eventID: UUID(), sequence: 3, hash: "ab")]
        return BackupManifest(
            report: report, keyholdVersion: "test", backend: "sqlite", keystore: "software",
            database: .init(bytes: Int64(database.count), sha256: Data(SHA256.hash(data: database)).hexString))
    }

    func file(_ contents: Data) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("backup-\(UUID()).test").path
        #expect(FileManager.default.createFile(atPath: path, contents: contents))
        return path
    }

    @Test func aHeaderReadsBackAuthenticOnlyWithItsKeyAndTheDatabaseChecksOut() throws {
        let database = Data("SQLite format 3\0 and the rest".utf8)
        let written = manifest(database: database)
        let path = try file(try BackupArchive.header(manifest: written, key: key) + database)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let header = try BackupArchive.readHeader(path: path)
        #expect(header.manifest == written)
        #expect(header.isAuthentic(key: key))
        #expect(!header.isAuthentic(key: SymmetricKey(size: .bits256)))
        try BackupArchive.checkDatabase(path: path, header: header)
        #expect(try BackupArchive.digest(path: path, from: header.databaseOffset) == written.database)
    }

    @Test func aChangedOrCutDatabaseIsRefused() throws {
        let database = Data(repeating: 7, count: 5000)
        let header = try BackupArchive.header(manifest: manifest(database: database), key: key)
        var changed = database
        changed[2500] = 8
        for contents in [header + changed, header + database.prefix(4000), header + database + Data([0])] {
            let path = try file(contents)
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(throws: BackupError.self) { try BackupArchive.checkDatabase(path: path, header: try BackupArchive.readHeader(path: path)) }
        }
    }

    @Test func aFileThatIsNotABackupIsRefusedByItsHeader() throws {
        let good = try BackupArchive.header(manifest: manifest(database: Data()), key: key)
        let text = String(decoding: good, as: UTF8.self)
        let cases: [Data] = [
            Data("SQLite format 3\0".utf8),
            Data("KEYHOLD-BACKUP 2\n{}\n".utf8),
            good.prefix(40),
            Data(text.replacingOccurrences(of: "\"format_version\":1", with: "\"format_version\":2").utf8),
            Data(text.replacingOccurrences(of: "keyhold-backup", with: "other").utf8),
            Data("KEYHOLD-BACKUP 1\n{\"format\":\"keyhold-backup\"}\nabc\n".utf8),
            good.dropLast(2) + Data("zz\n".utf8),
        ]
        for contents in cases {
            let path = try file(contents)
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(throws: BackupError.self) { try BackupArchive.readHeader(path: path) }
        }
    }
}

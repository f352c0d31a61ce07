import Crypto
import Foundation

/// Why a backup was not taken, verified or restored; the message says what to do.
public struct BackupError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// What a backup says of itself: the database's size and SHA-256, the schema version, the counts and every org's
/// audit chain head at the moment it was taken. It is authenticated with a key derived from the store's audit key
/// (sealed by the keystore), so only someone holding the keystore can make a manifest a restore accepts.
public struct BackupManifest: Codable, Sendable, Equatable {
    public struct Database: Codable, Sendable, Equatable {
        public var bytes: Int64
        public var sha256: String

        public init(bytes: Int64, sha256: String) {
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    public struct Counts: Codable, Sendable, Equatable {
        public var orgs, vaults, secrets, secretVersions, auditEvents: Int

        init(_ stats: StorageStatistics) {
            (orgs, vaults, secrets, secretVersions, auditEvents) =
                (stats.orgs, stats.vaults, stats.secrets, stats.secretVersions, stats.auditEvents)
        }
    }

    public struct Head: Codable, Sendable, Equatable {
        public var orgId: String
        public var sequence: Int64
        public var eventId: String
        public var hash: String
    }

    public static let formatName = "keyhold-backup"
    public static let currentFormatVersion = 1

    public var format = Self.formatName
    public var formatVersion = Self.currentFormatVersion
    public var keyholdVersion: String
    public var createdAt: String
    /// `sqlite`: the file is the database itself (a PostgreSQL database is backed up with `pg_dump`).
    public var backend: String
    public var schemaVersion: Int
    /// The kind of keystore whose keys the database's keys are sealed by (the keys themselves are not in the backup).
    public var keystore: String
    public var database: Database
    public var counts: Counts
    public var auditHeads: [Head]

    public init(report: StoreReport, keyholdVersion: String, backend: String, keystore: String, database: Database) {
        self.keyholdVersion = keyholdVersion
        createdAt = Timestamp.now.iso8601
        self.backend = backend
        schemaVersion = report.schemaVersion
        self.keystore = keystore
        self.database = database
        counts = Counts(report.statistics)
        auditHeads = Self.heads(report.auditHeads)
    }

    static func heads(_ heads: [UUID: AuditHead]) -> [Head] {
        heads.map { Head(orgId: $0.key.wire, sequence: $0.value.sequence, eventId: $0.value.eventID.wire, hash: $0.value.hash) }
            .sorted { $0.orgId < $1.orgId }
    }

    /// The manifest's MAC key: HKDF-SHA256 of the store's audit chain key, for this purpose only.
    public static func key(fromAuditKey key: SymmetricKey) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key, info: Data("keyhold.backup.manifest.v1".utf8), outputByteCount: 32)
    }

    /// How the store restored from this backup differs from what the manifest recorded (nothing: it is the same).
    public func differences(from report: StoreReport) -> [String] {
        var found: [String] = []
        let restored = Counts(report.statistics)
        if restored != counts { found.append("the database's counts \(restored) differ from the manifest's \(counts)") }
        if Self.heads(report.auditHeads) != auditHeads {
            found.append("the database's audit chain heads differ from the ones the manifest recorded")
        }
        return found
    }
}

/// A backup file: a first line naming the format, the manifest as one line of JSON, its MAC (hex) on the next line,
/// then the SQLite database, byte for byte.
public enum BackupArchive {
    static let magic = Data("KEYHOLD-BACKUP 1\n".utf8)
    /// The header is read from at most this many leading bytes.
    static let maxHeader = 1 << 20

    public struct Header: Sendable {
        public let manifest: BackupManifest
        let manifestBytes: Data
        let mac: Data
        /// Where the database starts in the file.
        public let databaseOffset: UInt64

        /// Whether the manifest was written by someone holding the store's keystore.
        public func isAuthentic(key: SymmetricKey) -> Bool {
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: BackupArchive.signed(manifestBytes), using: key)
        }
    }

    private static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    static func signed(_ manifest: Data) -> Data { Data("keyhold.backup.v1\n".utf8) + manifest }

    /// The bytes before the database.
    public static func header(manifest: BackupManifest, key: SymmetricKey) throws -> Data {
        let bytes = try encoder().encode(manifest)
        let mac = Data(HMAC<SHA256>.authenticationCode(for: signed(bytes), using: key))
        return magic + bytes + Data("\n".utf8) + Data(mac.hexString.utf8) + Data("\n".utf8)
    }

    /// Reads and parses the header of the file at `path`; anything unexpected is refused.
    public static func readHeader(path: String) throws -> Header {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BackupError("cannot open \(path)") }
        defer { try? handle.close() }
        let prefix = try handle.read(upToCount: maxHeader) ?? Data()
        guard prefix.starts(with: magic) else { throw BackupError("\(path) is not a Keyhold backup (no KEYHOLD-BACKUP 1 header)") }
        var lines: [Data] = []
        var start = prefix.startIndex + magic.count
        while lines.count < 2, let newline = prefix[start...].firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(prefix[start..<newline])
            start = newline + 1
        }
        guard lines.count == 2 else { throw BackupError("the backup's header is cut short or too long") }
        let manifest: BackupManifest
        do {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            manifest = try decoder.decode(BackupManifest.self, from: lines[0])
        } catch {
            throw BackupError("the backup's manifest does not parse")
        }
        guard manifest.format == BackupManifest.formatName, manifest.formatVersion == BackupManifest.currentFormatVersion
        else { throw BackupError("backup format \(manifest.format) \(manifest.formatVersion) is not one this build reads") }
        guard let macText = String(data: lines[1], encoding: .utf8), macText.utf8.count == 64, let mac = Data(hex: macText)
        else { throw BackupError("the backup's manifest MAC is malformed") }
        return Header(
            manifest: manifest, manifestBytes: Data(lines[0]), mac: mac,
            databaseOffset: UInt64(start - prefix.startIndex))
    }

    /// Checks that the database part of the file is exactly as long as, and hashes to, what the manifest says.
    public static func checkDatabase(path: String, header: Header) throws {
        let found = try digest(path: path, from: header.databaseOffset)
        guard found.bytes == header.manifest.database.bytes else {
            throw BackupError("the database in the backup is \(found.bytes) bytes, the manifest says \(header.manifest.database.bytes): the file is cut short or was changed")
        }
        guard found.sha256 == header.manifest.database.sha256.lowercased() else {
            throw BackupError("the database in the backup does not match the manifest's SHA-256: the file was changed")
        }
    }

    /// SHA-256 (hex) and length of a file from `offset` to its end.
    public static func digest(path: String, from offset: UInt64 = 0) throws -> BackupManifest.Database {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BackupError("cannot open \(path)") }
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        var hash = SHA256()
        var length: Int64 = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hash.update(data: chunk)
            length += Int64(chunk.count)
        }
        return BackupManifest.Database(bytes: length, sha256: Data(hash.finalize()).hexString)
    }

    /// Copies `source` from `offset` to its end into the open file `target`.
    public static func copy(from source: String, offset: UInt64, to target: FileHandle) throws {
        guard let handle = FileHandle(forReadingAtPath: source) else { throw BackupError("cannot open \(source)") }
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { try target.write(contentsOf: chunk) }
    }
}

import Crypto
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The embedded default: one random 256-bit master key, in a 0600 file in the data dir or given as
/// `KEYHOLD_MASTER_KEY`. Every KEK is random and sealed under the master key with AES-256-GCM; unsealed KEKs are
/// kept in memory (as a vault keeps its keyring after unseal), data keys never are.
///
/// Rotating the master key (`keyhold keys rotate-master`) writes the new key to `master.key.next` before re-sealing
/// every KEK and server secret in one transaction, then renames it over `master.key`. Until the rename, the
/// keystore opens with both keys (the new one first), so a crash at any point leaves every key readable.
public final class SoftwareKeystore: Keystore {
    public let kind = "software"
    /// The key new seals use.
    public let masterKey: SymmetricKey
    /// Keys tried after `masterKey` when unsealing (a master key rotation in progress).
    private let previousKeys: [SymmetricKey]
    private let unsealed = Mutex<[String: SymmetricKey]>([:])

    public init(masterKey: SymmetricKey, previousKeys: [SymmetricKey] = []) {
        self.masterKey = masterKey
        self.previousKeys = previousKeys
    }


    /// Loads the master key: `environmentKey` (64 hex chars or base64 of 32 bytes) when given, else the file
    /// `master.key` in `directory`, created with mode 0600 on first start.
    public static func open(directory: String, environmentKey: String?) throws -> SoftwareKeystore {
        if let text = environmentKey {
            guard let bytes = Self.decodeKey(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw KeyholdError(.badRequest, "KEYHOLD_MASTER_KEY must be 32 bytes as 64 hex characters or base64")
            }
            return SoftwareKeystore(masterKey: SymmetricKey(data: bytes))
        }
        let path = directory + "/master.key"
        if let existing = FileManager.default.contents(atPath: path) {
            guard existing.count == 32 else {
                throw KeyholdError(.internalError, "master.key in the data dir is not 32 bytes")
            }
            if let next = FileManager.default.contents(atPath: path + ".next"), next.count == 32 {
                return SoftwareKeystore(masterKey: SymmetricKey(data: next), previousKeys: [SymmetricKey(data: existing)])
            }
            return SoftwareKeystore(masterKey: SymmetricKey(data: existing))
        }
        let key = KeyMaterial.randomKey()
        try FileSecurity.writeNewPrivateFile(path: path, contents: KeyMaterial.bytes(of: key))
        return SoftwareKeystore(masterKey: key)
    }

    static func decodeKey(_ text: String) -> Data? {
        if text.utf8.count == 64, let data = Data(hex: text) { return data }
        if let data = Data(base64Encoded: text), data.count == 32 { return data }
        return nil
    }

    public func createKEK(id: String) async throws -> KEKHandle {
        let kek = KeyMaterial.randomKey()
        let material = try KeyMaterial.seal(KeyMaterial.bytes(of: kek), key: masterKey, label: "keyhold.kek|" + id)
        unsealed.withLock { $0[id] = kek }
        return KEKHandle(id: id, material: material)
    }

    public func wrap(dataKey: SymmetricKey, with kek: KEKHandle) async throws -> Data {
        try KeyMaterial.seal(KeyMaterial.bytes(of: dataKey), key: try key(for: kek), label: "keyhold.dek|" + kek.id)
    }

    public func unwrap(_ wrapped: Data, with kek: KEKHandle) async throws -> SymmetricKey {
        do {
            return SymmetricKey(data: try KeyMaterial.open(wrapped, key: try key(for: kek), label: "keyhold.dek|" + kek.id))
        } catch {
            throw KeyholdError.internalError("A data key failed to unwrap")
        }
    }

    public func protect(_ secret: Data, purpose: String) async throws -> Data {
        try KeyMaterial.seal(secret, key: masterKey, label: "keyhold.system|" + purpose)
    }

    public func unprotect(_ sealed: Data, purpose: String) async throws -> Data {
        for key in [masterKey] + previousKeys {
            if let opened = try? KeyMaterial.open(sealed, key: key, label: "keyhold.system|" + purpose) { return opened }
        }
        throw KeyholdError.internalError(
            "A server key in the database failed to unseal: this is not the master key that sealed it (every node on one database needs the same KEYHOLD_MASTER_KEY)")
    }

    func key(for kek: KEKHandle) throws -> SymmetricKey {
        if let cached = unsealed.withLock({ $0[kek.id] }) { return cached }
        guard let key = ([masterKey] + previousKeys).lazy.compactMap({
            try? SymmetricKey(data: KeyMaterial.open(kek.material, key: $0, label: "keyhold.kek|" + kek.id))
        }).first else {
            throw KeyholdError.internalError("A vault key failed to unseal")
        }
        unsealed.withLock { $0[kek.id] = key }
        return key
    }
}

/// Files that hold key material: created exclusively with mode 0600 and flushed to disk.
public enum FileSecurity {
    public static func writeNewPrivateFile(path: String, contents: Data) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw KeyholdError.internalError("Cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == contents.count, fsync(fd) == 0 else {
            throw KeyholdError.internalError("Cannot write \(path): errno \(errno)")
        }
    }

    /// Creates the directory with mode 0700 if missing, and tightens it to 0700 if it exists.
    public static func ensurePrivateDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } else if !isDirectory.boolValue {
            throw KeyholdError.internalError("\(path) exists and is not a directory")
        }
        guard chmod(path, 0o700) == 0 else { throw KeyholdError.internalError("Cannot chmod \(path)") }
    }
}

extension Data {
    public init?(hex: String) {
        var bytes = [UInt8]()
        bytes.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8?
        for char in hex.utf8 {
            guard let nibble = Self.hexNibble(char) else { return nil }
            if let h = high {
                bytes.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        guard high == nil else { return nil }
        self.init(bytes)
    }

    /// The value of one hex digit (either case), or nil.
    static func hexNibble(_ char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): char - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): char - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): char - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Lower-case hex, without `String(format:)` (which parses a format per byte and showed up in profiles).
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes = [UInt8]()
        bytes.reserveCapacity(count * 2)
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension SoftwareKeystore {
    /// Re-seals every KEK and server secret under a new master key. With a data-dir key file: the new key is
    /// written to `master.key.next` first, everything is re-sealed in one transaction, then the file replaces
    /// `master.key`. With `KEYHOLD_MASTER_KEY`, `newKey` is the operator's new key and no file is written.
    public static func rotateMasterKey(
        directory: String?, store: any KeyRotationStore, current: SoftwareKeystore, newKey: SymmetricKey
    ) async throws -> (keks: Int, systemValues: Int) {
        if let directory {
            let next = directory + "/master.key.next"
            try? FileManager.default.removeItem(atPath: next)
            try FileSecurity.writeNewPrivateFile(path: next, contents: KeyMaterial.bytes(of: newKey))
        }
        let successor = SoftwareKeystore(masterKey: newKey)
        var keks: [KEKHandle] = []
        for kek in try await store.allKEKs() {
            let material = try current.key(for: kek)
            keks.append(
                KEKHandle(
                    id: kek.id,
                    material: try KeyMaterial.seal(KeyMaterial.bytes(of: material), key: newKey, label: "keyhold.kek|" + kek.id)))
        }
        var values: [String: Data] = [:]
        for (name, sealed) in try await store.allSystemValues() {
            values[name] = try await successor.protect(try await current.unprotect(sealed, purpose: name), purpose: name)
        }
        try await store.reseal(keks: keks, systemValues: values)
        if let directory {
            guard rename(directory + "/master.key.next", directory + "/master.key") == 0 else {
                throw KeyholdError.internalError("Cannot replace master.key: errno \(errno)")
            }
            let fd = Glibc.open(directory, O_RDONLY)
            if fd >= 0 {
                fsync(fd)
                close(fd)
            }
        }
        return (keks.count, values.count)
    }
}

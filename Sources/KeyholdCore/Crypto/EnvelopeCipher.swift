import Crypto
import Foundation

/// AES-256-GCM sealing of secret values under a per-version data key, with associated data that binds the
/// ciphertext to the place it belongs, so a row copied to another org, vault, path or version fails to open.
///
/// Sealed form: `0x01 | nonce (12) | ciphertext | tag (16)`.
public enum EnvelopeCipher {
    public static let formatVersion: UInt8 = 1
    static let overhead = 1 + 12 + 16

    /// Where a sealed value lives.
    public struct Binding: Sendable, Hashable {
        public let orgID: UUID
        public let vaultID: UUID
        public let path: String
        public let version: Int
        /// What kind of value this is: a secret's, a vault's env var's (`path` = its id), an org's shared variable's.
        public let domain: String

        public init(orgID: UUID, vaultID: UUID, path: String, version: Int, domain: String = "keyhold.secret.v1") {
            self.orgID = orgID
            self.vaultID = vaultID
            self.path = path
            self.version = version
            self.domain = domain
        }

        /// Length-prefixed fields, so no two bindings share an encoding.
        public var associatedData: Data {
            var data = Data(domain.utf8)
            for field in [orgID.wire, vaultID.wire, path, String(version)] {
                let bytes = Array(field.utf8)
                withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { data.append(contentsOf: $0) }
                data.append(contentsOf: bytes)
            }
            return data
        }
    }

    public static func seal(
        _ plaintext: some DataProtocol, key: SymmetricKey, binding: Binding, nonce: AES.GCM.Nonce = AES.GCM.Nonce()
    ) throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: key, nonce: nonce, authenticating: binding.associatedData)
        var sealed = Data([formatVersion])
        sealed.append(contentsOf: box.nonce)
        sealed.append(box.ciphertext)
        sealed.append(box.tag)
        return sealed
    }

    public static func open(_ sealed: Data, key: SymmetricKey, binding: Binding) throws -> Data {
        guard sealed.count >= overhead, sealed.first == formatVersion else {
            throw KeyholdError.internalError("Stored secret is malformed")
        }
        do {
            let bytes = sealed.dropFirst()
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: bytes.prefix(12)),
                ciphertext: bytes.dropFirst(12).dropLast(16),
                tag: bytes.suffix(16))
            return try AES.GCM.open(box, using: key, authenticating: binding.associatedData)
        } catch {
            throw KeyholdError.internalError("Stored secret failed its integrity check")
        }
    }
}

/// Small helpers around key bytes.
public enum KeyMaterial {
    public static func randomKey() -> SymmetricKey { SymmetricKey(size: .bits256) }

    public static func bytes(of key: SymmetricKey) -> Data { key.withUnsafeBytes { Data($0) } }

    /// AES-256-GCM seal with a label as associated data, `nonce | ct | tag`: used to wrap keys in software.
    public static func seal(_ plaintext: some DataProtocol, key: SymmetricKey, label: String) throws -> Data {
        try AES.GCM.seal(plaintext, using: key, authenticating: Data(label.utf8)).combined!
    }

    public static func open(_ sealed: Data, key: SymmetricKey, label: String) throws -> Data {
        try AES.GCM.open(AES.GCM.SealedBox(combined: sealed), using: key, authenticating: Data(label.utf8))
    }
}

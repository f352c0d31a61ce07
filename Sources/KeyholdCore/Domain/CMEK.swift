import Crypto
import Foundation

/// Customer-managed keys (contract §1.2, §2.3): the client encrypts each value with its own AES-256 key and sends
/// `base64([0x01][12-byte IV][ciphertext][16-byte GCM tag])`; the server stores that text under its own envelope as
/// any value, and knows the key only by its SHA-256 fingerprint, except during a rotation the owner asks for, when
/// both keys are in memory for the job and nowhere else.
public enum CMEK {
    /// The format's version byte.
    public static let formatVersion: UInt8 = 0x01
    public static let ivLength = 12
    public static let tagLength = 16
    public static let keyLength = 32
    /// The shortest CMEK value after decoding: version, IV and tag (the ciphertext may be empty).
    public static let minimumLength = 1 + ivLength + tagLength

    /// A fingerprint as given (64 hex digits, either case), in the stored spelling (lower case); nil otherwise.
    public static func fingerprint(parsing text: String) -> String? {
        guard text.utf8.count == 64, text.utf8.allSatisfy({ $0.isHexDigit }) else { return nil }
        return text.lowercased()
    }

    /// The fingerprint of a key: SHA-256 of its 32 bytes, lower-case hex.
    public static func fingerprint(of key: SymmetricKey) -> String {
        key.withUnsafeBytes { SHA256.hash(data: Data($0)) }.map { String(format: "%02x", $0) }.joined()
    }

    /// Strict base64: the standard alphabet with its padding, in the one spelling that re-encodes to itself.
    public static func strictBase64(_ text: String) -> Data? {
        guard let data = Data(base64Encoded: text), data.base64EncodedString() == text else { return nil }
        return data
    }

    /// Whether a value has the CMEK format (strict base64 of version byte 1, IV, ciphertext and tag).
    public static func isCiphertext(_ value: String) -> Bool {
        guard let data = strictBase64(value), data.count >= minimumLength else { return false }
        return data.first == formatVersion
    }

    /// A key given in a header: the base64 of exactly 32 bytes; 400 naming the header otherwise (never its value).
    public static func key(header name: String, _ value: String?) throws -> SymmetricKey {
        guard let value, let data = strictBase64(value), data.count == keyLength else {
            throw KeyholdError.badRequest("\(name) must be the base64 of a 32-byte key")
        }
        return SymmetricKey(data: data)
    }

    /// Thrown when a value does not open under the key it should: not a CMEK value, or another key's.
    public struct WrongKey: Error, Sendable {}

    /// The value decrypted with `old` and encrypted again with `new` under a fresh IV, in the same format.
    public static func reencrypt(_ value: String, from old: SymmetricKey, to new: SymmetricKey) throws -> String {
        guard let data = strictBase64(value), data.count >= minimumLength, data.first == formatVersion else {
            throw WrongKey()
        }
        let body = data.dropFirst()
        let plaintext: Data
        do {
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: body.prefix(ivLength)),
                ciphertext: body.dropFirst(ivLength).dropLast(tagLength), tag: body.suffix(tagLength))
            plaintext = try AES.GCM.open(box, using: old)
        } catch {
            throw WrongKey()
        }
        return try encrypt(plaintext, with: new)
    }

    /// A plaintext in the CMEK format under `key` (what a client sends; used by the rotation and by tests).
    public static func encrypt(_ plaintext: Data, with key: SymmetricKey) throws -> String {
        let box = try AES.GCM.seal(plaintext, using: key)
        var out = Data([formatVersion])
        box.nonce.withUnsafeBytes { out.append(contentsOf: $0) }
        out.append(box.ciphertext)
        out.append(box.tag)
        return out.base64EncodedString()
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}

/// A CMEK rotation job (`CmekRotationJobResponse`). Its row is progress only: the keys are never stored.
public struct CMEKRotationJob: Sendable, Hashable {
    public enum Status: String, Sendable, CaseIterable {
        case pending, running, completed, failed
    }

    public let id: UUID
    public let vaultID: UUID
    public let orgID: UUID
    public let oldFingerprint: String
    public let newFingerprint: String
    public var status: Status
    /// Versions under the old key when the job started (versions written meanwhile raise it).
    public var totalSecrets: Int
    public var processed: Int
    public var error: String?
    public var startedAt: Timestamp?
    public var completedAt: Timestamp?
    public let createdBy: UUID
    public let createdAt: Timestamp

    public init(
        id: UUID, vaultID: UUID, orgID: UUID, oldFingerprint: String, newFingerprint: String, status: Status,
        totalSecrets: Int, processed: Int, error: String?, startedAt: Timestamp?, completedAt: Timestamp?,
        createdBy: UUID, createdAt: Timestamp
    ) {
        self.id = id
        self.vaultID = vaultID
        self.orgID = orgID
        self.oldFingerprint = oldFingerprint
        self.newFingerprint = newFingerprint
        self.status = status
        self.totalSecrets = totalSecrets
        self.processed = processed
        self.error = error
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

/// A stored version under a customer-managed key, as a rotation reads it: where it lives (its envelope's binding),
/// its wrapped data key and its sealed value.
public struct CMEKVersion: Sendable, Hashable {
    public let secretID: UUID
    public let path: String
    public let version: Int
    public let kekID: String
    public let wrappedDataKey: Data
    public let ciphertext: Data

    public init(secretID: UUID, path: String, version: Int, kekID: String, wrappedDataKey: Data, ciphertext: Data) {
        self.secretID = secretID
        self.path = path
        self.version = version
        self.kekID = kekID
        self.wrappedDataKey = wrappedDataKey
        self.ciphertext = ciphertext
    }
}

/// A rotated version: the new value sealed under a fresh data key, replacing `original` only if it is unchanged.
public struct CMEKReplacement: Sendable {
    public let original: CMEKVersion
    public let kekID: String
    public let wrappedDataKey: Data
    public let ciphertext: Data

    public init(original: CMEKVersion, kekID: String, wrappedDataKey: Data, ciphertext: Data) {
        self.original = original
        self.kekID = kekID
        self.wrappedDataKey = wrappedDataKey
        self.ciphertext = ciphertext
    }
}

import Crypto
import Foundation

/// Bearer secrets Keyhold hands out: 32 random bytes, base64url without padding, behind a prefix that says what
/// they are (`ocv_` agent key, `1ck_` personal API key, `rt_` refresh token, `inv_` invitation, `shc_` share claim). They are stored
/// only as HMAC-SHA256 digests under a server key the keystore protects, plus a short prefix for lookup. With 256
/// bits of entropy a keyed hash is as strong as a password hash and costs microseconds per request.
public enum CredentialKind: String, Sendable, CaseIterable {
    case agentKey = "ocv_"
    case userKey = "1ck_"
    case refreshToken = "rt_"
    case invite = "inv_"
    /// The one-time token that claims an `external_email` share.
    case shareClaim = "shc_"

    /// Characters stored in clear for lookup: the prefix and 8 random characters (48 bits).
    public var lookupLength: Int { rawValue.count + 8 }

    public func generate() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        return rawValue + Data(bytes).base64URLEncodedString()
    }

    /// True when `text` has this kind's prefix and exact shape (43 base64url characters after it).
    public func matchesShape(_ text: String) -> Bool {
        guard text.hasPrefix(rawValue) else { return false }
        let body = text.utf8.dropFirst(rawValue.utf8.count)
        return body.count == 43 && body.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                true
            default: false
            }
        }
    }

    public func lookupPrefix(of text: String) -> String { String(text.prefix(lookupLength)) }
}

/// Keyed digests of credentials, compared in constant time.
public struct CredentialHasher: Sendable {
    private let key: SymmetricKey

    public init(key: SymmetricKey) { self.key = key }

    /// Loads the HMAC key from storage (sealed by the keystore), creating it on first start.
    public static func load(system: any SystemStore, keystore: any Keystore) async throws -> CredentialHasher {
        CredentialHasher(key: try await keystore.serverKey("credential-hmac-key", in: system))
    }

    /// A key for another purpose, derived from this one (HKDF-SHA256), so it needs no storage of its own.
    public func derivedKey(for purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data("keyhold \(purpose)".utf8), outputByteCount: 32)
    }

    public func digest(_ credential: String) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Data(credential.utf8), using: key))
    }

    public func matches(_ credential: String, digest expected: Data) -> Bool {
        Self.constantTimeEqual(digest(credential), expected)
    }

    public static func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}

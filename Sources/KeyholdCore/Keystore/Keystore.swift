import Crypto
import Foundation

/// A key-encryption key as storage keeps it: its id, and whatever the keystore needs to use it again
/// (the software keystore keeps the KEK sealed under its master key; an HSM keeps only a label).
public struct KEKHandle: Sendable, Hashable {
    public let id: String
    public let material: Data

    public init(id: String, material: Data) {
        self.id = id
        self.material = material
    }
}

/// Where the keys that protect secrets live. Data keys are wrapped and unwrapped here; the key-encryption keys
/// never leave it in the clear. A PKCS#11 HSM is one implementation, the software keystore the embedded default.
public protocol Keystore: Sendable {
    /// A short name for logs and health (`software`, `pkcs11`).
    var kind: String { get }
    /// Creates a new key-encryption key with this id and returns the handle to persist.
    func createKEK(id: String) async throws -> KEKHandle
    func wrap(dataKey: SymmetricKey, with kek: KEKHandle) async throws -> Data
    func unwrap(_ wrapped: Data, with kek: KEKHandle) async throws -> SymmetricKey
    /// Protects small server secrets (the JWT signing key, later the audit key) for storage.
    func protect(_ secret: Data, purpose: String) async throws -> Data
    func unprotect(_ sealed: Data, purpose: String) async throws -> Data
    /// Destroys a retired KEK where the keystore holds it (an HSM object); software KEKs die with their record.
    func destroyKEK(id: String) async throws
    /// Whether a hardware token answers; nil for a keystore without one.
    func health() async -> KeystoreHealth?
}

extension Keystore {
    public func destroyKEK(id: String) async throws {}
    public func health() async -> KeystoreHealth? { nil }
}

/// A hardware token's state: whether it answers, its label and how many secret keys it holds.
public struct KeystoreHealth: Sendable {
    public let available: Bool
    public let tokenLabel: String
    public let secretKeys: Int
    public let reason: String?

    public init(available: Bool, tokenLabel: String, secretKeys: Int, reason: String?) {
        self.available = available
        self.tokenLabel = tokenLabel
        self.secretKeys = secretKeys
        self.reason = reason
    }
}

extension Keystore {
    /// A server secret kept in storage sealed by this keystore: read and unsealed, or made by `make`, sealed and
    /// stored on first start (the first of several nodes starting at once wins; the others read its value).
    public func serverSecret(_ purpose: String, in system: any SystemStore, make: () -> Data) async throws -> Data {
        let sealed: Data
        if let stored = try await system.systemValue(purpose) {
            sealed = stored
        } else {
            sealed = try await system.insertSystemValueIfAbsent(purpose, try await protect(make(), purpose: purpose))
        }
        return try await unprotect(sealed, purpose: purpose)
    }

    /// A random 256-bit server key kept as a server secret (see `serverSecret`).
    public func serverKey(_ purpose: String, in system: any SystemStore) async throws -> SymmetricKey {
        SymmetricKey(data: try await serverSecret(purpose, in: system) { KeyMaterial.bytes(of: KeyMaterial.randomKey()) })
    }
}

import CoreMetrics
import Crypto
import Foundation

extension CoreMetrics.Timer {
    /// Records the time since `start` (a monotonic clock's instant).
    public func record(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}

/// A keystore whose calls are timed and whose failures are counted, by operation
/// (`keyhold_keystore_operation_duration_seconds`, `keyhold_keystore_errors_total`), through the process's metrics
/// system. It changes nothing else: every call goes to the keystore it wraps.
public struct MeasuredKeystore: Keystore {
    let base: any Keystore

    public init(_ base: any Keystore) { self.base = base }

    public var kind: String { base.kind }

    private func measure<T>(_ operation: String, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        do {
            let result = try await body()
            Timer(label: "keyhold_keystore_operation_duration_seconds", dimensions: [("operation", operation)])
                .record(since: start)
            return result
        } catch {
            Counter(label: "keyhold_keystore_errors_total", dimensions: [("operation", operation)]).increment()
            throw error
        }
    }

    public func createKEK(id: String) async throws -> KEKHandle { try await measure("create_kek") { try await base.createKEK(id: id) } }
    public func wrap(dataKey: SymmetricKey, with kek: KEKHandle) async throws -> Data {
        try await measure("wrap") { try await base.wrap(dataKey: dataKey, with: kek) }
    }
    public func unwrap(_ wrapped: Data, with kek: KEKHandle) async throws -> SymmetricKey {
        try await measure("unwrap") { try await base.unwrap(wrapped, with: kek) }
    }
    public func protect(_ secret: Data, purpose: String) async throws -> Data {
        try await measure("protect") { try await base.protect(secret, purpose: purpose) }
    }
    public func unprotect(_ sealed: Data, purpose: String) async throws -> Data {
        try await measure("unprotect") { try await base.unprotect(sealed, purpose: purpose) }
    }
    public func destroyKEK(id: String) async throws { try await measure("destroy_kek") { try await base.destroyKEK(id: id) } }
    public func health() async -> KeystoreHealth? { await base.health() }
}

import CPKCS11
import Crypto
import Foundation
import KeyholdCore
import Logging
import NIOPosix
import Synchronization

/// The keystore in a PKCS#11 HSM (SoftHSM2 in development and CI; Luna, YubiHSM, CloudHSM in production).
///
/// Each vault's KEK is an AES-256 key generated inside the token (`CKA_SENSITIVE`, not `CKA_EXTRACTABLE`), found by
/// its label. Data keys are wrapped and unwrapped inside the token with AES-256-GCM (`C_Encrypt`/`C_Decrypt`; the
/// associated data names the KEK), so a KEK never leaves the HSM. Server secrets (the JWT signing key, the audit
/// and credential HMAC keys) are sealed the same way under a token key labelled `keyhold-system`. Every call runs
/// on a dedicated thread pool, never on an event loop; sessions come from a small pool. When the token stops
/// answering, calls fail with 503 and the next call opens fresh sessions, so the keystore recovers when the HSM
/// returns.
public final class PKCS11Keystore: Keystore {
    public let kind = "pkcs11"
    public let tokenLabel: String
    static let systemKeyLabel = "keyhold-system"

    private let module: PKCS11Module
    private let pin: String
    private let threadPool: NIOThreadPool
    private let sessions: SessionPool
    /// Object handles of keys already found, by label; dropped when the token goes away.
    private let handles = Mutex<[String: CK_OBJECT_HANDLE]>([:])

    /// Loads the module, finds the token and logs in. A wrong PIN or a missing token throws with the reason.
    public static func open(modulePath: String, tokenLabel: String, pin: String, sessions: Int = 4) async throws
        -> PKCS11Keystore
    {
        let threadPool = NIOThreadPool(numberOfThreads: sessions)
        threadPool.start()
        do {
            let keystore = try await threadPool.runIfActive {
                try PKCS11Keystore(
                    module: PKCS11Module.shared(path: modulePath), tokenLabel: tokenLabel, pin: pin, threadPool: threadPool,
                    size: sessions)
            }
            _ = try await keystore.systemKey()
            return keystore
        } catch {
            try? await threadPool.shutdownGracefully()
            throw Self.startupError(error, tokenLabel: tokenLabel)
        }
    }

    private init(module: PKCS11Module, tokenLabel: String, pin: String, threadPool: NIOThreadPool, size: Int) throws {
        self.module = module
        self.tokenLabel = tokenLabel
        self.pin = pin
        self.threadPool = threadPool
        self.sessions = SessionPool(size: size)
        // Log in once now, so a wrong PIN or a missing token stops start-up with its reason.
        let session = try module.openSession(slot: try module.slot(tokenLabel: tokenLabel), pin: pin)
        sessions.put(session)
    }

    static func startupError(_ error: any Error, tokenLabel: String) -> KeyholdError {
        switch error {
        case let error as PKCS11Error:
            KeyholdError(.unavailable, "PKCS#11 token '\(tokenLabel)': \(error.description)")
        case let error as KeyholdError:
            error
        default:
            KeyholdError(.unavailable, "PKCS#11 token '\(tokenLabel)': \(error)")
        }
    }

    public func close() async {
        sessions.drain().forEach(module.closeSession)
        try? await threadPool.shutdownGracefully()
    }

    // MARK: Keystore

    public func createKEK(id: String) async throws -> KEKHandle {
        _ = try await perform { module, session in
            try Self.generateKey(module, session, label: id)
        }
        return KEKHandle(id: id, material: Data("pkcs11:\(id)".utf8))
    }

    public func wrap(dataKey: SymmetricKey, with kek: KEKHandle) async throws -> Data {
        try await encrypt(KeyMaterial.bytes(of: dataKey), keyLabel: kek.id, context: "keyhold.dek|" + kek.id)
    }

    public func unwrap(_ wrapped: Data, with kek: KEKHandle) async throws -> SymmetricKey {
        SymmetricKey(data: try await decrypt(wrapped, keyLabel: kek.id, context: "keyhold.dek|" + kek.id))
    }

    public func protect(_ secret: Data, purpose: String) async throws -> Data {
        try await encrypt(secret, keyLabel: Self.systemKeyLabel, context: "keyhold.system|" + purpose)
    }

    public func unprotect(_ sealed: Data, purpose: String) async throws -> Data {
        try await decrypt(sealed, keyLabel: Self.systemKeyLabel, context: "keyhold.system|" + purpose)
    }

    /// Destroys a KEK inside the token (after a rewrap left no data key under it).
    public func destroyKEK(id: String) async throws {
        try await perform { module, session in
            guard let handle = try self.findKey(module, session, label: id) else { return }
            try module.check("C_DestroyObject", module.functions.pointee.C_DestroyObject(session, handle))
            self.handles.withLock { _ = $0.removeValue(forKey: id) }
        }
    }

    // MARK: health

    /// Whether the token answers, and how many secret keys it holds.
    public func health() async -> KeystoreHealth? {
        do {
            let count = try await perform { module, session in try Self.countSecretKeys(module, session) }
            return KeystoreHealth(available: true, tokenLabel: tokenLabel, secretKeys: count, reason: nil)
        } catch {
            return KeystoreHealth(available: false, tokenLabel: tokenLabel, secretKeys: 0, reason: "\(error)")
        }
    }

    /// Reads `CKA_SENSITIVE` and `CKA_EXTRACTABLE` of a key, to show a KEK cannot leave the token.
    public func protection(ofKey label: String) async throws -> (sensitive: Bool, extractable: Bool) {
        try await perform { module, session in
            guard let handle = try self.findKey(module, session, label: label) else {
                throw KeyholdError.notFound("No key labelled \(label)")
            }
            // The two flags live in one buffer that outlives the call (a pointer to a local is valid only
            // inside the expression that takes it).
            var flags: [CK_BBOOL] = [0, 1]
            try flags.withUnsafeMutableBufferPointer { flags in
                var attributes = [
                    CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_SENSITIVE), pValue: flags.baseAddress, ulValueLen: 1),
                    CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_EXTRACTABLE), pValue: flags.baseAddress! + 1, ulValueLen: 1),
                ]
                try module.check(
                    "C_GetAttributeValue",
                    module.functions.pointee.C_GetAttributeValue(session, handle, &attributes, CK_ULONG(attributes.count)))
            }
            return (flags[0] != 0, flags[1] != 0)
        }
    }

    // MARK: operations

    private func encrypt(_ plaintext: Data, keyLabel: String, context: String) async throws -> Data {
        try await perform { module, session in
            let key = try self.key(module, session, label: keyLabel, create: keyLabel == Self.systemKeyLabel)
            var nonce = [UInt8](repeating: 0, count: 12)
            var generator = SystemRandomNumberGenerator()
            for index in nonce.indices { nonce[index] = generator.next() }
            let output = try Self.gcm(module, session, key: key, nonce: nonce, aad: Array(context.utf8), input: Array(plaintext), encrypt: true)
            return Data(nonce + output)
        }
    }

    private func decrypt(_ sealed: Data, keyLabel: String, context: String) async throws -> Data {
        guard sealed.count > 12 + 16 else { throw KeyholdError.internalError("A wrapped key is malformed") }
        return try await perform { module, session in
            guard let key = try self.findKey(module, session, label: keyLabel) else {
                throw KeyholdError.internalError("The HSM holds no key labelled \(keyLabel)")
            }
            let bytes = Array(sealed)
            return Data(try Self.gcm(
                module, session, key: key, nonce: Array(bytes[0..<12]), aad: Array(context.utf8),
                input: Array(bytes[12...]), encrypt: false))
        }
    }

    static func gcm(
        _ module: PKCS11Module, _ session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE, nonce: [UInt8], aad: [UInt8],
        input: [UInt8], encrypt: Bool
    ) throws -> [UInt8] {
        var nonce = nonce
        var aad = aad
        var input = input
        return try nonce.withUnsafeMutableBufferPointer { noncePointer in
            try aad.withUnsafeMutableBufferPointer { aadPointer in
                var parameters = CK_GCM_PARAMS(
                    pIv: noncePointer.baseAddress, ulIvLen: CK_ULONG(noncePointer.count),
                    ulIvBits: CK_ULONG(noncePointer.count * 8), pAAD: aadPointer.baseAddress,
                    ulAADLen: CK_ULONG(aadPointer.count), ulTagBits: 128)
                return try withUnsafeMutablePointer(to: &parameters) { parametersPointer in
                    var mechanism = CK_MECHANISM(
                        mechanism: CK_MECHANISM_TYPE(CKM_AES_GCM), pParameter: parametersPointer,
                        ulParameterLen: CK_ULONG(MemoryLayout<CK_GCM_PARAMS>.size))
                    let functions = module.functions.pointee
                    var output = [UInt8](repeating: 0, count: input.count + 16)
                    var outputLength = CK_ULONG(output.count)
                    if encrypt {
                        try module.check("C_EncryptInit", functions.C_EncryptInit(session, &mechanism, key))
                        try module.check(
                            "C_Encrypt", functions.C_Encrypt(session, &input, CK_ULONG(input.count), &output, &outputLength))
                    } else {
                        try module.check("C_DecryptInit", functions.C_DecryptInit(session, &mechanism, key))
                        let rv = functions.C_Decrypt(session, &input, CK_ULONG(input.count), &output, &outputLength)
                        if rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE {
                            throw KeyholdError.internalError("A wrapped key failed its integrity check in the HSM")
                        }
                        try module.check("C_Decrypt", rv)
                    }
                    return Array(output.prefix(Int(outputLength)))
                }
            }
        }
    }

    static func generateKey(_ module: PKCS11Module, _ session: CK_SESSION_HANDLE, label: String) throws -> CK_OBJECT_HANDLE {
        var mechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_AES_KEY_GEN), pParameter: nil, ulParameterLen: 0)
        let template = Template()
            .add(CKA_CLASS, ulong: CK_ULONG(CKO_SECRET_KEY))
            .add(CKA_KEY_TYPE, ulong: CK_ULONG(CKK_AES))
            .add(CKA_VALUE_LEN, ulong: 32)
            .add(CKA_TOKEN, bool: true)
            .add(CKA_PRIVATE, bool: true)
            .add(CKA_SENSITIVE, bool: true)
            .add(CKA_EXTRACTABLE, bool: false)
            .add(CKA_ENCRYPT, bool: true)
            .add(CKA_DECRYPT, bool: true)
            .add(CKA_WRAP, bool: true)
            .add(CKA_UNWRAP, bool: true)
            .add(CKA_LABEL, string: label)
            .add(CKA_ID, string: label)
        var attributes = template.attributes
        var handle: CK_OBJECT_HANDLE = 0
        try module.check(
            "C_GenerateKey",
            module.functions.pointee.C_GenerateKey(session, &mechanism, &attributes, CK_ULONG(attributes.count), &handle))
        return handle
    }

    func findKey(_ module: PKCS11Module, _ session: CK_SESSION_HANDLE, label: String) throws -> CK_OBJECT_HANDLE? {
        if let cached = handles.withLock({ $0[label] }) { return cached }
        let template = Template().add(CKA_CLASS, ulong: CK_ULONG(CKO_SECRET_KEY)).add(CKA_LABEL, string: label)
        var attributes = template.attributes
        let functions = module.functions.pointee
        try module.check("C_FindObjectsInit", functions.C_FindObjectsInit(session, &attributes, CK_ULONG(attributes.count)))
        defer { _ = functions.C_FindObjectsFinal(session) }
        var handle: CK_OBJECT_HANDLE = 0
        var found: CK_ULONG = 0
        try module.check("C_FindObjects", functions.C_FindObjects(session, &handle, 1, &found))
        guard found == 1 else { return nil }
        handles.withLock { $0[label] = handle }
        return handle
    }

    private func key(_ module: PKCS11Module, _ session: CK_SESSION_HANDLE, label: String, create: Bool) throws
        -> CK_OBJECT_HANDLE
    {
        if let handle = try findKey(module, session, label: label) { return handle }
        guard create else { throw KeyholdError.internalError("The HSM holds no key labelled \(label)") }
        let handle = try Self.generateKey(module, session, label: label)
        handles.withLock { $0[label] = handle }
        return handle
    }

    static func countSecretKeys(_ module: PKCS11Module, _ session: CK_SESSION_HANDLE) throws -> Int {
        let template = Template().add(CKA_CLASS, ulong: CK_ULONG(CKO_SECRET_KEY))
        var attributes = template.attributes
        let functions = module.functions.pointee
        try module.check("C_FindObjectsInit", functions.C_FindObjectsInit(session, &attributes, CK_ULONG(attributes.count)))
        defer { _ = functions.C_FindObjectsFinal(session) }
        var total = 0
        var batch = [CK_OBJECT_HANDLE](repeating: 0, count: 64)
        while true {
            var found: CK_ULONG = 0
            try module.check("C_FindObjects", functions.C_FindObjects(session, &batch, CK_ULONG(batch.count), &found))
            total += Int(found)
            if found < CK_ULONG(batch.count) { return total }
        }
    }

    func systemKey() async throws -> CK_OBJECT_HANDLE {
        try await perform { module, session in try self.key(module, session, label: Self.systemKeyLabel, create: true) }
    }

    /// Runs `body` with a session on the keystore's thread pool. A failure that means the token went away drops
    /// every session and cached handle and answers 503; the next call logs in again.
    private func perform<T: Sendable>(
        _ body: @escaping @Sendable (PKCS11Module, CK_SESSION_HANDLE) throws -> T
    ) async throws -> T {
        let module = self.module
        let (pin, label, sessions) = (self.pin, self.tokenLabel, self.sessions)
        do {
            return try await threadPool.runIfActive {
                let session = try sessions.take() ?? Self.reopen(module, label: label, pin: pin)
                func release() { if !sessions.put(session) { module.closeSession(session) } }
                do {
                    let result = try body(module, session)
                    release()
                    return result
                } catch let error as PKCS11Error where error.isDeviceGone {
                    module.closeSession(session)
                    throw error
                } catch {
                    release()
                    throw error
                }
            }
        } catch let error as PKCS11Error {
            if error.isDeviceGone {
                sessions.drain().forEach(module.closeSession)
                handles.withLock { $0.removeAll() }
            }
            throw KeyholdError(.unavailable, "The HSM is unavailable (\(error.description))")
        } catch let error as KeyholdError where error.code == .unavailable {
            throw error
        }
    }
}

extension PKCS11Keystore {
    /// A new logged-in session. When the token is not found (it went away and may have come back), the module is
    /// initialised again once so that it looks for tokens afresh.
    static func reopen(_ module: PKCS11Module, label: String, pin: String) throws -> CK_SESSION_HANDLE {
        let slot: CK_SLOT_ID
        do {
            slot = try module.slot(tokenLabel: label)
        } catch {
            try module.reinitialize()
            slot = try module.slot(tokenLabel: label)
        }
        return try module.openSession(slot: slot, pin: pin)
    }
}

/// Idle logged-in sessions. Taking from an empty pool returns nil and the caller opens a new session, so the
/// pool never blocks; it keeps at most `size` idle sessions.
final class SessionPool: Sendable {
    private let idle = Mutex<[CK_SESSION_HANDLE]>([])
    private let size: Int

    init(size: Int) { self.size = size }

    func take() -> CK_SESSION_HANDLE? { idle.withLock { $0.popLast() } }

    /// Keeps a session for reuse; false when the pool is full and the caller should close it.
    @discardableResult
    func put(_ session: CK_SESSION_HANDLE) -> Bool {
        idle.withLock { idle in
            guard idle.count < size else { return false }
            idle.append(session)
            return true
        }
    }

    func drain() -> [CK_SESSION_HANDLE] { idle.withLock { idle in defer { idle.removeAll() }; return idle } }
}

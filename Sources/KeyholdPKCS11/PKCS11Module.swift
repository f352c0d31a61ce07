import CPKCS11
import Foundation
import KeyholdCore
import Synchronization

/// A PKCS#11 failure: the function and its return value. `isDeviceGone` marks the values that mean the token or
/// module went away, which the keystore answers with 503 and recovers from by opening new sessions.
public struct PKCS11Error: Error, CustomStringConvertible, Sendable {
    public let function: String
    public let rv: CK_RV

    public var description: String { "\(function) failed with \(Self.name(rv))" }

    var isDeviceGone: Bool {
        [
            CK_RV(CKR_DEVICE_ERROR), CK_RV(CKR_DEVICE_REMOVED), CK_RV(CKR_TOKEN_NOT_PRESENT),
            CK_RV(CKR_TOKEN_NOT_RECOGNIZED), CK_RV(CKR_SESSION_HANDLE_INVALID), CK_RV(CKR_SESSION_CLOSED),
            CK_RV(CKR_CRYPTOKI_NOT_INITIALIZED), CK_RV(CKR_USER_NOT_LOGGED_IN), CK_RV(CKR_OBJECT_HANDLE_INVALID),
            CK_RV(CKR_KEY_HANDLE_INVALID), CK_RV(CKR_GENERAL_ERROR),
        ].contains(rv)
    }

    static func name(_ rv: CK_RV) -> String {
        switch rv {
        case CK_RV(CKR_PIN_INCORRECT): "CKR_PIN_INCORRECT (wrong PIN)"
        case CK_RV(CKR_PIN_LOCKED): "CKR_PIN_LOCKED"
        case CK_RV(CKR_TOKEN_NOT_PRESENT): "CKR_TOKEN_NOT_PRESENT"
        case CK_RV(CKR_DEVICE_REMOVED): "CKR_DEVICE_REMOVED"
        case CK_RV(CKR_DEVICE_ERROR): "CKR_DEVICE_ERROR"
        case CK_RV(CKR_MECHANISM_INVALID): "CKR_MECHANISM_INVALID"
        case CK_RV(CKR_ENCRYPTED_DATA_INVALID): "CKR_ENCRYPTED_DATA_INVALID"
        case CK_RV(CKR_KEY_HANDLE_INVALID): "CKR_KEY_HANDLE_INVALID"
        case CK_RV(CKR_SESSION_HANDLE_INVALID): "CKR_SESSION_HANDLE_INVALID"
        case CK_RV(CKR_USER_NOT_LOGGED_IN): "CKR_USER_NOT_LOGGED_IN"
        default: "CK_RV 0x" + String(rv, radix: 16)
        }
    }
}

/// A loaded PKCS#11 module (`dlopen`) and its function list. The module is initialised for multi-threaded use
/// (`CKF_OS_LOCKING_OK`), so distinct sessions may be used from different threads at once. A module is loaded once
/// per process and stays loaded: `C_Initialize`/`C_Finalize` are process-wide, so finalizing it for one keystore
/// would break every other user of the same library.
final class PKCS11Module: @unchecked Sendable {
    private static let loaded = Mutex<[String: PKCS11Module]>([:])

    static func shared(path: String) throws -> PKCS11Module {
        try loaded.withLock { loaded in
            if let module = loaded[path] { return module }
            let module = try PKCS11Module(path: path)
            loaded[path] = module
            return module
        }
    }

    let functions: UnsafeMutablePointer<CK_FUNCTION_LIST>
    private let handle: UnsafeMutableRawPointer

    private init(path: String) throws {
        var handle: UnsafeMutableRawPointer?
        var functions: UnsafeMutablePointer<CK_FUNCTION_LIST>?
        var message = [CChar](repeating: 0, count: 512)
        guard keyhold_p11_load(path, &handle, &functions, &message, message.count) == 0, let handle, let functions
        else {
            throw KeyholdError(
                .unavailable, "PKCS#11 module \(path): " + String(decoding: message.prefix { $0 != 0 }.map(UInt8.init), as: UTF8.self))
        }
        self.handle = handle
        self.functions = functions
        var arguments = CK_C_INITIALIZE_ARGS()
        arguments.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
        let rv = withUnsafeMutablePointer(to: &arguments) { functions.pointee.C_Initialize($0) }
        guard rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED else {
            keyhold_p11_unload(handle)
            throw PKCS11Error(function: "C_Initialize", rv: rv)
        }
    }

    /// Finalizes and initializes the module again, so that it looks for tokens afresh (SoftHSM2, like many
    /// modules, does not notice a token that comes back after it went away). Every open session becomes invalid.
    func reinitialize() throws {
        _ = functions.pointee.C_Finalize(nil)
        var arguments = CK_C_INITIALIZE_ARGS()
        arguments.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
        let rv = withUnsafeMutablePointer(to: &arguments) { functions.pointee.C_Initialize($0) }
        guard rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED else {
            throw PKCS11Error(function: "C_Initialize", rv: rv)
        }
    }

    func check(_ function: String, _ rv: CK_RV) throws {
        guard rv == CKR_OK else { throw PKCS11Error(function: function, rv: rv) }
    }

    /// The slot holding the token with this label.
    func slot(tokenLabel: String) throws -> CK_SLOT_ID {
        var count: CK_ULONG = 0
        try check("C_GetSlotList", functions.pointee.C_GetSlotList(CK_BBOOL(CK_TRUE), nil, &count))
        var slots = [CK_SLOT_ID](repeating: 0, count: Int(count))
        try check("C_GetSlotList", functions.pointee.C_GetSlotList(CK_BBOOL(CK_TRUE), &slots, &count))
        for slot in slots.prefix(Int(count)) {
            var info = CK_TOKEN_INFO()
            guard functions.pointee.C_GetTokenInfo(slot, &info) == CKR_OK else { continue }
            let label = withUnsafeBytes(of: info.label) { String(decoding: $0, as: UTF8.self) }
                .trimmingCharacters(in: .whitespaces)
            if label == tokenLabel { return slot }
        }
        throw KeyholdError(.unavailable, "No PKCS#11 token labelled '\(tokenLabel)' is present")
    }

    /// A read-write session, logged in as the user (the login is shared by all sessions of the application).
    func openSession(slot: CK_SLOT_ID, pin: String) throws -> CK_SESSION_HANDLE {
        var session: CK_SESSION_HANDLE = 0
        try check(
            "C_OpenSession",
            functions.pointee.C_OpenSession(slot, CK_FLAGS(CKF_SERIAL_SESSION | CKF_RW_SESSION), nil, nil, &session))
        var pinBytes = Array(pin.utf8)
        let rv = functions.pointee.C_Login(session, CK_USER_TYPE(CKU_USER), &pinBytes, CK_ULONG(pinBytes.count))
        guard rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN else {
            _ = functions.pointee.C_CloseSession(session)
            throw PKCS11Error(function: "C_Login", rv: rv)
        }
        return session
    }

    func closeSession(_ session: CK_SESSION_HANDLE) {
        _ = functions.pointee.C_CloseSession(session)
    }
}

/// An attribute template whose values stay allocated for the call that uses it.
final class Template {
    private var buffers: [UnsafeMutableRawPointer] = []
    private(set) var attributes: [CK_ATTRIBUTE] = []

    deinit { buffers.forEach { $0.deallocate() } }

    @discardableResult
    func add(_ type: UInt, _ bytes: [UInt8]) -> Template {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        buffers.append(buffer)
        attributes.append(CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(type), pValue: buffer, ulValueLen: CK_ULONG(bytes.count)))
        return self
    }

    @discardableResult
    func add(_ type: UInt, bool: Bool) -> Template { add(type, [bool ? 1 : 0]) }

    @discardableResult
    func add(_ type: UInt, ulong: CK_ULONG) -> Template { add(type, withUnsafeBytes(of: ulong) { Array($0) }) }

    @discardableResult
    func add(_ type: UInt, string: String) -> Template { add(type, Array(string.utf8)) }
}

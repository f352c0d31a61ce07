import Crypto
import Foundation
import KeyholdCore
import KeyholdPKCS11
import Testing

/// SoftHSM2 tokens for the tests, made once per process with `softhsm2-util` in a private token directory.
/// SoftHSM reads its configuration when the module is first initialised, so every token is created up front.
enum SoftHSM {
    static let module = "/usr/lib/softhsm/libsofthsm2.so"
    static let pin = "246810"
    static let labels = ["kh-main", "kh-fresh", "kh-pin"]
    static var available: Bool { FileManager.default.fileExists(atPath: module) }

    static let setUp: Void = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-softhsm-\(UUID())").path
        try! FileManager.default.createDirectory(atPath: dir + "/tokens", withIntermediateDirectories: true)
        let conf = dir + "/softhsm2.conf"
        try! "directories.tokendir = \(dir)/tokens\nobjectstore.backend = file\nlog.level = ERROR\n"
            .write(toFile: conf, atomically: true, encoding: .utf8)
        setenv("SOFTHSM2_CONF", conf, 1)
        for label in labels {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/softhsm2-util")
            process.arguments = ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "13579"]
            process.standardOutput = FileHandle.nullDevice
            try! process.run()
            process.waitUntilExit()
            precondition(process.terminationStatus == 0, "softhsm2-util failed for \(label)")
        }
    }()

    static func keystore(_ label: String = "kh-main", pin: String = pin) async throws -> PKCS11Keystore {
        _ = setUp
        return try await PKCS11Keystore.open(modulePath: module, tokenLabel: label, pin: pin)
    }
}

/// Fails rather than skips in CI, where the test command installs SoftHSM2.
let softHSMPresent = SoftHSM.available || ProcessInfo.processInfo.environment["CI"] != nil

@Suite(.serialized, .enabled(if: softHSMPresent, "SoftHSM2 is not installed"))
struct PKCS11KeystoreTests {
    @Test func dataKeysRoundTripThroughTheToken() async throws {
        let keystore = try await SoftHSM.keystore()
        let kek = try await keystore.createKEK(id: "vault-\(UUID())-v1")
        let dataKey = SymmetricKey(size: .bits256)
        let wrapped = try await keystore.wrap(dataKey: dataKey, with: kek)
        #expect(wrapped.count == 12 + 32 + 16)
        #expect(!wrapped.contains(KeyMaterial.bytes(of: dataKey)))
        #expect(KeyMaterial.bytes(of: try await keystore.unwrap(wrapped, with: kek)) == KeyMaterial.bytes(of: dataKey))
        #expect(try await keystore.wrap(dataKey: dataKey, with: kek) != wrapped, "a fresh nonce each time")
        let other = try await keystore.createKEK(id: "vault-\(UUID())-v1")
        await #expect(throws: KeyholdError.self) { try await keystore.unwrap(wrapped, with: other) }
        var tampered = wrapped
        tampered[20] ^= 1
        await #expect(throws: KeyholdError.self) { try await keystore.unwrap(tampered, with: kek) }
    }

    @Test func keysAreSensitiveAndNotExtractable() async throws {
        let keystore = try await SoftHSM.keystore()
        let kek = try await keystore.createKEK(id: "vault-\(UUID())-v1")
        let protection = try await keystore.protection(ofKey: kek.id)
        #expect(protection.sensitive)
        #expect(!protection.extractable)
        let system = try await keystore.protection(ofKey: "keyhold-system")
        #expect(system.sensitive && !system.extractable)
    }

    @Test func serverSecretsAreSealedByTheToken() async throws {
        let keystore = try await SoftHSM.keystore()
        let sealed = try await keystore.protect(Data("signing key".utf8), purpose: "jwt")
        #expect(try await keystore.unprotect(sealed, purpose: "jwt") == Data("signing key".utf8))
        await #expect(throws: KeyholdError.self) { try await keystore.unprotect(sealed, purpose: "audit") }
    }

    @Test func aFreshTokenCannotDecryptOldData() async throws {
        let keystore = try await SoftHSM.keystore()
        let kek = try await keystore.createKEK(id: "vault-shared-label-v1")
        let wrapped = try await keystore.wrap(dataKey: SymmetricKey(size: .bits256), with: kek)
        let sealed = try await keystore.protect(Data("x".utf8), purpose: "p")
        let fresh = try await SoftHSM.keystore("kh-fresh")
        let sameLabel = try await fresh.createKEK(id: "vault-shared-label-v1")
        await #expect(throws: KeyholdError.self) { try await fresh.unwrap(wrapped, with: sameLabel) }
        await #expect(throws: KeyholdError.self) { try await fresh.unprotect(sealed, purpose: "p") }
    }

    @Test func aWrongPinOrAMissingTokenStopsStartUp() async throws {
        do {
            _ = try await SoftHSM.keystore("kh-pin", pin: "000000")
            Issue.record("a wrong PIN was accepted")
        } catch let error as KeyholdError {
            #expect(error.detail.contains("CKR_PIN_INCORRECT"))
            #expect(!error.detail.contains("000000"))
        }
        do {
            _ = try await SoftHSM.keystore("no-such-token")
            Issue.record("a missing token was accepted")
        } catch let error as KeyholdError {
            #expect(error.detail.contains("no-such-token"))
        }
    }

    @Test func healthCountsTheTokensKeys() async throws {
        let keystore = try await SoftHSM.keystore()
        let before = try #require(await keystore.health())
        _ = try await keystore.createKEK(id: "vault-\(UUID())-v1")
        let after = try #require(await keystore.health())
        #expect(after.available && after.tokenLabel == "kh-main")
        #expect(after.secretKeys == before.secretKeys + 1)
    }

    @Test func concurrentCallsShareTheSessionPool() async throws {
        let keystore = try await SoftHSM.keystore()
        let kek = try await keystore.createKEK(id: "vault-\(UUID())-v1")
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<32 {
                group.addTask {
                    let key = SymmetricKey(size: .bits256)
                    let back = try await keystore.unwrap(try await keystore.wrap(dataKey: key, with: kek), with: kek)
                    return KeyMaterial.bytes(of: back) == KeyMaterial.bytes(of: key)
                }
            }
            for try await matched in group { #expect(matched) }
        }
    }

    /// Not a timed assertion (machines here are shared): prints what one HSM round trip costs, for the record.
    @Test func measuresTheCostOfARoundTrip() async throws {
        let keystore = try await SoftHSM.keystore()
        let kek = try await keystore.createKEK(id: "vault-\(UUID())-v1")
        let key = SymmetricKey(size: .bits256)
        let wrapped = try await keystore.wrap(dataKey: key, with: kek)
        let rounds = 500
        let start = ContinuousClock.now
        for _ in 0..<rounds { _ = try await keystore.unwrap(wrapped, with: kek) }
        let unwrap = (ContinuousClock.now - start) / rounds
        let wrapStart = ContinuousClock.now
        for _ in 0..<rounds { _ = try await keystore.wrap(dataKey: key, with: kek) }
        let wrap = (ContinuousClock.now - wrapStart) / rounds
        print("[pkcs11] SoftHSM2 round trip, mean of \(rounds): unwrap \(unwrap), wrap \(wrap)")
        #expect(KeyMaterial.bytes(of: try await keystore.unwrap(wrapped, with: kek)) == KeyMaterial.bytes(of: key))
    }
}

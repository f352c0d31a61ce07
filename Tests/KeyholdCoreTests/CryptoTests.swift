import Crypto
import Foundation
import KeyholdCore
import Testing

@Suite struct EnvelopeCipherTests {
    let key = SymmetricKey(data: Data(0..<32))
    let binding = EnvelopeCipher.Binding(
        orgID: UUID(uuidString: "00000000-0000-0000-0000-000000000001")!,
        vaultID: UUID(uuidString: "00000000-0000-0000-0000-000000000002")!, path: "api-keys/openai", version: 3)

    /// Computed independently with Python's `cryptography` AESGCM over the same associated-data layout.
    static let vector = "01000102030405060708090a0b3469fb6bb78aa836bc73a412d3380c3ea0a877216a2713294a18df"

    @Test func matchesFixedVector() throws {
        let sealed = try EnvelopeCipher.seal(
            Data("sk-proj-123".utf8), key: key, binding: binding, nonce: try AES.GCM.Nonce(data: Data(0..<12)))
        #expect(sealed.hexString == Self.vector)
        #expect(try EnvelopeCipher.open(Data(hex: Self.vector)!, key: key, binding: binding) == Data("sk-proj-123".utf8))
    }

    @Test func freshNonceEachSeal() throws {
        let a = try EnvelopeCipher.seal(Data("v".utf8), key: key, binding: binding)
        let b = try EnvelopeCipher.seal(Data("v".utf8), key: key, binding: binding)
        #expect(a != b)
    }

    @Test(arguments: [
        EnvelopeCipher.Binding(orgID: UUID(), vaultID: UUID(uuidString: "00000000-0000-0000-0000-000000000002")!, path: "api-keys/openai", version: 3),
        EnvelopeCipher.Binding(orgID: UUID(uuidString: "00000000-0000-0000-0000-000000000001")!, vaultID: UUID(), path: "api-keys/openai", version: 3),
        EnvelopeCipher.Binding(orgID: UUID(uuidString: "00000000-0000-0000-0000-000000000001")!, vaultID: UUID(uuidString: "00000000-0000-0000-0000-000000000002")!, path: "api-keys/openai2", version: 3),
        EnvelopeCipher.Binding(orgID: UUID(uuidString: "00000000-0000-0000-0000-000000000001")!, vaultID: UUID(uuidString: "00000000-0000-0000-0000-000000000002")!, path: "api-keys/openai", version: 4),
    ])
    func refusesAnotherPlace(_ other: EnvelopeCipher.Binding) throws {
        let sealed = Data(hex: Self.vector)!
        #expect(throws: KeyholdError.self) { try EnvelopeCipher.open(sealed, key: key, binding: other) }
    }

    @Test func refusesTamperingAndWrongKey() throws {
        var sealed = Data(hex: Self.vector)!
        sealed[20] ^= 1
        #expect(throws: KeyholdError.self) { try EnvelopeCipher.open(sealed, key: key, binding: binding) }
        #expect(throws: KeyholdError.self) {
            try EnvelopeCipher.open(Data(hex: Self.vector)!, key: SymmetricKey(size: .bits256), binding: binding)
        }
        #expect(throws: KeyholdError.self) { try EnvelopeCipher.open(Data([1, 2, 3]), key: key, binding: binding) }
    }
}

@Suite struct SoftwareKeystoreTests {
    @Test func wrapsAndUnwrapsDataKeys() async throws {
        let keystore = SoftwareKeystore(masterKey: SymmetricKey(size: .bits256))
        let kek = try await keystore.createKEK(id: "vault-a-v1")
        let dataKey = SymmetricKey(size: .bits256)
        let wrapped = try await keystore.wrap(dataKey: dataKey, with: kek)
        #expect(!wrapped.contains(KeyMaterial.bytes(of: dataKey)))
        #expect(KeyMaterial.bytes(of: try await keystore.unwrap(wrapped, with: kek)) == KeyMaterial.bytes(of: dataKey))
        let other = try await keystore.createKEK(id: "vault-b-v1")
        await #expect(throws: KeyholdError.self) { try await keystore.unwrap(wrapped, with: other) }
    }

    @Test func anotherMasterKeyCannotOpenKEKs() async throws {
        let kek = try await SoftwareKeystore(masterKey: SymmetricKey(size: .bits256)).createKEK(id: "k")
        let stranger = SoftwareKeystore(masterKey: SymmetricKey(size: .bits256))
        await #expect(throws: KeyholdError.self) { try await stranger.wrap(dataKey: SymmetricKey(size: .bits256), with: kek) }
    }

    @Test func masterKeyFileIsPrivateAndStable() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-ks-\(UUID())").path
        try FileSecurity.ensurePrivateDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try SoftwareKeystore.open(directory: dir, environmentKey: nil)
        let sealed = try await first.protect(Data("signing".utf8), purpose: "p")
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/master.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect((try FileManager.default.attributesOfItem(atPath: dir)[.posixPermissions] as? Int) == 0o700)
        let second = try SoftwareKeystore.open(directory: dir, environmentKey: nil)
        #expect(try await second.unprotect(sealed, purpose: "p") == Data("signing".utf8))
        await #expect(throws: KeyholdError.self) { try await second.unprotect(sealed, purpose: "other") }
    }

    @Test func masterKeyFromEnvironment() throws {
        #expect(throws: Never.self) { try SoftwareKeystore.open(directory: "/nonexistent", environmentKey: String(repeating: "ab", count: 32)) }
        #expect(throws: KeyholdError.self) { try SoftwareKeystore.open(directory: "/nonexistent", environmentKey: "short") }
    }
}

@Suite struct RandomValueTests {
    @Test(arguments: RandomValue.Charset.allCases)
    func generatesFromCharset(_ charset: RandomValue.Charset) {
        let value = RandomValue.generate(length: 500, charset: charset)
        #expect(value.utf8.count == 500)
        let allowed: (UInt8) -> Bool =
            switch charset {
            case .hex: { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
            case .alphanumeric: { $0 < 0x80 && Character(UnicodeScalar($0)).isLetter || Character(UnicodeScalar($0)).isNumber }
            case .base64: { $0 < 0x80 && (Character(UnicodeScalar($0)).isLetter || Character(UnicodeScalar($0)).isNumber || $0 == 0x2B || $0 == 0x2F) }
            case .ascii: { (0x21...0x7E).contains($0) }
            }
        #expect(value.utf8.allSatisfy(allowed))
        #expect(Set(value.utf8).count > 10)
    }
}

import Foundation
import KeyholdCore
import Testing

@Suite struct TOTPTests {
    /// RFC 6238 Appendix B, the SHA-1 rows: the 20-byte ASCII seed, 8 digits, 30-second steps.
    static let rfc6238: [(seconds: Int64, code: String)] = [
        (59, "94287082"), (1_111_111_109, "07081804"), (1_111_111_111, "14050471"), (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"), (20_000_000_000, "65353130"),
    ]
    static let seed = Data("12345678901234567890".utf8)

    @Test func rfc6238SHA1Vectors() {
        for (seconds, code) in Self.rfc6238 {
            let step = TOTP.step(at: Timestamp(milliseconds: seconds * 1000))
            #expect(TOTP.code(secret: Self.seed, step: step, digits: 8) == code, "T = \(seconds)")
            // Six digits are the same number modulo 10^6.
            #expect(TOTP.code(secret: Self.seed, step: step) == String(code.suffix(6)), "T = \(seconds)")
        }
    }

    /// RFC 4226 Appendix D: HOTP of counters 0 to 9 (TOTP's step is HOTP's counter).
    @Test func rfc4226HOTPVectors() {
        let expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
        for (counter, code) in expected.enumerated() {
            #expect(TOTP.code(secret: Self.seed, step: Int64(counter)) == code)
        }
    }

    @Test func aCodeMatchesItsStepAndOneStepEitherSideOnly() {
        let now = Timestamp(milliseconds: 1_234_567_890_000)
        let step = TOTP.step(at: now)
        for offset in -1...1 {
            let code = TOTP.code(secret: Self.seed, step: step + Int64(offset))
            #expect(TOTP.matchingStep(secret: Self.seed, code: code, at: now) == step + Int64(offset))
        }
        for offset in [-3, -2, 2, 3] {
            let code = TOTP.code(secret: Self.seed, step: step + Int64(offset))
            #expect(TOTP.matchingStep(secret: Self.seed, code: code, at: now) == nil, "offset \(offset)")
        }
        #expect(TOTP.matchingStep(secret: Self.seed, code: "12345", at: now) == nil)
        #expect(TOTP.matchingStep(secret: Self.seed, code: "１２３４５６", at: now) == nil)
        #expect(TOTP.matchingStep(secret: Data("another secret......".utf8), code: TOTP.code(secret: Self.seed, step: step), at: now) == nil)
    }

    @Test func base32RoundTripsAndTheURINamesTheParameters() throws {
        #expect(Base32.encode(Data("foobar".utf8)) == "MZXW6YTBOI")  // RFC 4648 §10, without padding
        #expect(Base32.encode(Self.seed) == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
        #expect(Base32.decode("gezdgnbvgy3tqojqgezdgnbvgy3tqojq") == Self.seed)
        #expect(Base32.decode("GE1=") == nil)
        let secret = TOTP.generateSecret()
        #expect(secret.count == 20 && Base32.decode(Base32.encode(secret)) == secret)
        let uri = TOTP.provisioningURI(secret: Self.seed, account: "ada+1@example.com", issuer: "Keyhold")
        #expect(uri == "otpauth://totp/Keyhold:ada%2B1@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Keyhold&algorithm=SHA1&digits=6&period=30")
    }

    @Test func recoveryCodesAreTenBase32CharactersAndNormalise() {
        let codes = Set((0..<100).map { _ in RecoveryCode.generate() })
        #expect(codes.count == 100)
        for code in codes {
            #expect(code.count == 11 && code[code.index(code.startIndex, offsetBy: 5)] == "-")
            #expect(RecoveryCode.normalized(code) == code.replacingOccurrences(of: "-", with: ""))
            #expect(RecoveryCode.normalized(code.uppercased()) == RecoveryCode.normalized(code))
        }
        #expect(RecoveryCode.normalized("abcde-fgh1j") == nil)
        #expect(RecoveryCode.normalized("abcde") == nil)
        #expect(RecoveryCode.normalized("123456") == nil)
    }
}

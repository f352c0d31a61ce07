import Crypto
import Foundation
import KeyholdCore
import Testing

@Suite struct PasswordPolicyTests {
    @Test(arguments: ["Correct-Horse-9-Battery!", "Zq8#mVt2!pLw"])
    func acceptsStrongPasswords(_ password: String) throws {
        try PasswordPolicy.validate(password)
    }

    @Test(arguments: [
        "Sh0rt!pass", "nouppercase-9-battery!", "NOLOWERCASE-9-BATTERY!", "No-Digits-Here-Battery!",
        "NoSpecial9Battery", "Aaa-Horse-9-Battery!x", "Correct-Horse-123-Battery!", "Abc-Horse-9-Battery!",
    ])
    func refusesWeakPasswords(_ password: String) {
        #expect(throws: KeyholdError.badRequest("")) { try PasswordPolicy.validate(password) }
    }
}

@Suite struct PasswordHasherTests {
    @Test func verifiesOnlyTheRightPassword() async throws {
        let hasher = PasswordHasher(cost: 10)
        let hash = try await hasher.hash("Correct-Horse-9-Battery!")
        #expect(hash.hasPrefix("$2"))
        #expect(!hash.contains("Correct"))
        #expect(try await hasher.verify("Correct-Horse-9-Battery!", hash: hash))
        #expect(try await !hasher.verify("Correct-Horse-9-Battery?", hash: hash))
        #expect(try await !hasher.verify("Correct-Horse-9-Battery!", hash: nil))
    }

    @Test func longPassphrasesAreNotTruncated() async throws {
        let hasher = PasswordHasher(cost: 10)
        let base = String(repeating: "Xy9!", count: 30)
        let hash = try await hasher.hash(base + "A")
        #expect(try await !hasher.verify(base + "B", hash: hash))
    }
}

@Suite struct TokenServiceTests {
    let principal = Principal(kind: .user, id: UUID(), orgID: UUID(), role: .owner)

    @Test func issuesVerifiableEdDSATokens() async throws {
        let tokens = await TokenService(signingKey: Curve25519.Signing.PrivateKey())
        let issued = try await tokens.issue(for: principal)
        #expect(issued.expiresIn == 900)
        let header = try JSONSerialization.jsonObject(with: base64URL(issued.token.split(separator: ".")[0])) as! [String: Any]
        #expect(header["alg"] as? String == "EdDSA")
        #expect(header["kid"] as? String == tokens.keyID)
        let claims = try await tokens.verify(issued.token)
        #expect(claims.sub.value == "user:" + principal.id.uuidString.lowercased())
        #expect(claims.org == principal.orgID.uuidString.lowercased())
    }

    @Test func refusesForgedExpiredAndForeignTokens() async throws {
        let tokens = await TokenService(signingKey: Curve25519.Signing.PrivateKey())
        let token = try await tokens.issue(for: principal).token
        var parts = token.split(separator: ".").map(String.init)
        parts[2] = String(parts[2].reversed())
        await #expect(throws: KeyholdError.unauthenticated) { try await tokens.verify(parts.joined(separator: ".")) }
        let expired = try await tokens.issue(for: principal, lifetime: 60, now: Date().addingTimeInterval(-3600)).token
        await #expect(throws: KeyholdError.unauthenticated) { try await tokens.verify(expired) }
        let stranger = await TokenService(signingKey: Curve25519.Signing.PrivateKey())
        await #expect(throws: KeyholdError.unauthenticated) { try await tokens.verify(try await stranger.issue(for: principal).token) }
        await #expect(throws: KeyholdError.unauthenticated) { try await tokens.verify("not.a.token") }
    }

    func base64URL(_ part: Substring) -> Data {
        var text = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text)!
    }
}

@Suite struct TimestampTests {
    @Test func parsesAndFormatsISO8601() throws {
        #expect(Timestamp(iso8601: "2026-12-31T23:59:59Z")?.iso8601 == "2026-12-31T23:59:59Z")
        #expect(Timestamp(iso8601: "2026-12-31T23:59:59.250Z")?.milliseconds == 1_798_761_599_250)
        #expect(Timestamp(iso8601: "2027-01-01T01:59:59+02:00")?.iso8601 == "2026-12-31T23:59:59Z")
        for ms in Int64(1_795_000_000_000)...1_795_000_001_000 {
            let text = Timestamp(milliseconds: ms).iso8601
            #expect(Timestamp(iso8601: text)?.milliseconds == ms, "\(text)")
        }
        #expect(Timestamp(milliseconds: 1_795_000_000_007).iso8601.hasSuffix(".007Z"))
        for ms in stride(from: Int64(-2_000_000_000_000), through: 4_000_000_000_000, by: 7_777_777_777) {
            let expected = Date(timeIntervalSince1970: Double(ms) / 1000)
                .formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
            let formatted = Timestamp(milliseconds: ms).iso8601
            #expect(Timestamp(iso8601: formatted)?.milliseconds == ms, "\(formatted)")
            #expect(formatted.prefix(19) == expected.prefix(19), "\(formatted) vs \(expected)")
        }
        #expect(Timestamp(iso8601: "2026-12-31t23:59:59z")?.iso8601 == "2026-12-31T23:59:59Z")
        #expect(Timestamp(iso8601: "2026-12-31T23:59:59.123456789Z")?.milliseconds == 1_798_761_599_123)
        #expect(Timestamp(iso8601: "2026-12-31T23:59:60Z")?.milliseconds == 1_798_761_599_999)
        #expect(Timestamp(iso8601: "2027-01-01T23:58:59+23:59")?.iso8601 == "2026-12-31T23:59:59Z")
        #expect(Timestamp(iso8601: "2024-02-29T00:00:00Z") != nil)
        #expect(Timestamp(iso8601: "1969-12-31T23:59:59.500Z")?.milliseconds == -500)
        for bad in [
            "tomorrow", "2026-13-01T00:00:00Z", "", "2026-12-31", "2030-01-01T00:00:00Zgarbage", "6276-02-30T05:37:05Z",
            "2026-02-29T00:00:00Z", "2026-01-01T24:00:00Z", "2026-1-01T00:00:00Z", "2026-01-01T00:00:00+0530",
            "2026-01-01T00:00:00+05", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z", "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00+24:00", "2026-01-01T00:60:00Z",
        ] {
            #expect(Timestamp(iso8601: bad) == nil, "\(bad)")
        }
    }
}

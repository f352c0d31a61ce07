import Foundation
import KeyholdCore
import Testing

@Suite struct SecretPathTests {
    @Test(arguments: ["a", "api-keys/openai", "A1/b_2/c-3", "x/y/z/w", String(repeating: "a", count: SecretPath.maxLength)])
    func acceptsValidPaths(_ raw: String) throws {
        #expect(try SecretPath(validating: raw).rawValue == raw)
    }

    @Test(arguments: [
        "", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b", "-a", "a-", "a b", "a;b", "café", "a\\b", "a%2Fb",
        "a/.hidden", "_a", String(repeating: "a", count: SecretPath.maxLength + 1),
    ])
    func refusesInvalidPaths(_ raw: String) {
        #expect(throws: KeyholdError.badRequest("")) { try SecretPath(validating: raw) }
    }

    @Test func refusesTooManySegments() {
        let raw = Array(repeating: "a", count: SecretPath.maxSegments + 1).joined(separator: "/")
        #expect(throws: KeyholdError.badRequest("")) { try SecretPath(validating: raw) }
    }

    @Test func decodesEncodedSlashesOnly() throws {
        #expect(try SecretPath(urlEncoded: "api-keys%2Fopenai").rawValue == "api-keys/openai")
        #expect(try SecretPath(urlEncoded: "a%2fb/c").rawValue == "a/b/c")
        for raw in ["a%2E%2E", "%2E%2E", "a%20b", "a%252Fb", "a%2", "a%", "caf%C3%A9", "a%2F%2Fb", "%2Fa"] {
            #expect(throws: KeyholdError.badRequest(""), "\(raw)") { try SecretPath(urlEncoded: raw[...]) }
        }
    }

    @Test func segmentsSplitOnSlash() throws {
        #expect(try SecretPath(validating: "a/b/c").segments == ["a", "b", "c"])
    }

    @Test func fastUUIDParsingAgreesWithFoundation() {
        for _ in 0..<200 {
            let id = UUID()
            #expect(UUID(fast: id.uuidString) == id)
            #expect(UUID(fast: id.uuidString.lowercased()) == id)
        }
        for bad in ["", "not-a-uuid", "0000000000000000000000000000000000000", "00000000-0000-0000-0000-00000000000g",
                    "00000000-0000-0000-0000-0000000000000", "000000000-000-0000-0000-000000000000"] {
            #expect(UUID(fast: bad) == nil, "\(bad)")
        }
    }
}

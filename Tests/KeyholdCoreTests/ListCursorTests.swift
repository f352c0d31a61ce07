import Crypto
import Foundation
import KeyholdCore
import Testing

@Suite struct ListCursorTests {
    let cursors = ListCursor(key: SymmetricKey(size: .bits256))
    let vault = UUID()
    let caller = Principal(kind: .user, id: UUID(), orgID: UUID(), role: .member)

    @Test func aCursorOpensToItsPositionForItsVaultAndCaller() throws {
        let cursor = try cursors.seal("hidden/db-password", vaultID: vault, for: caller)
        #expect(try cursors.open(cursor, vaultID: vault, for: caller) == "hidden/db-password")
    }

    @Test func aCursorRevealsNeitherThePathNorItsLength() throws {
        let short = try cursors.seal("a", vaultID: vault, for: caller)
        let long = try cursors.seal(String(repeating: "b", count: 500), vaultID: vault, for: caller)
        #expect(short.count == long.count)
        let named = try cursors.seal("hidden/db-password", vaultID: vault, for: caller)
        let bytes = try #require(Data(base64URL: named))
        #expect(bytes.range(of: Data("hidden".utf8)) == nil && !named.contains("hidden"))
        #expect(try cursors.seal("a", vaultID: vault, for: caller) != short, "a fresh nonce each time")
    }

    @Test func anotherVaultCallerKeyOrAnAlteredCursorIsRefused() throws {
        let cursor = try cursors.seal("a/b", vaultID: vault, for: caller)
        let stranger = Principal(kind: .user, id: UUID(), orgID: caller.orgID, role: .member)
        let agentWithTheSameID = Principal(kind: .agent, id: caller.id, orgID: caller.orgID, role: nil)
        var altered = Array(cursor)
        altered[40] = altered[40] == "A" ? "B" : "A"
        let attempts: [(String, UUID, Principal, ListCursor)] = [
            (cursor, UUID(), caller, cursors),
            (cursor, vault, stranger, cursors),
            (cursor, vault, agentWithTheSameID, cursors),
            (cursor, vault, caller, ListCursor(key: SymmetricKey(size: .bits256))),
            (String(altered), vault, caller, cursors),
            ("a/b", vault, caller, cursors),
            ("", vault, caller, cursors),
            (String(repeating: "A", count: 5000), vault, caller, cursors),
        ]
        for (text, vaultID, principal, sealer) in attempts {
            #expect(throws: KeyholdError.badRequest("")) { try sealer.open(text, vaultID: vaultID, for: principal) }
        }
    }
}

@Suite struct ScopeCapTests {
    let vault = Vault(
        id: UUID(), orgID: UUID(), name: "v", description: nil, createdBy: UUID(), createdByType: .user, kekID: "k",
        createdAt: .now)

    func decision(scopes: [String]?, role: OrgRole = .owner) throws -> Authorizer.Decision {
        let principal = Principal(kind: .user, id: UUID(), orgID: vault.orgID, role: role, scopes: scopes)
        return Authorizer().decide(
            principal, vault: vault, path: try SecretPath(validating: "prod/db"), permission: .read, policies: [],
            context: AccessContext(clientIP: nil))
    }

    @Test func anEmptyScopeListMatchesNothingAndNoListMeansNoCap() throws {
        #expect(try decision(scopes: nil) == .allow)
        #expect(try decision(scopes: ["prod/**"]) == .allow)
        #expect(try decision(scopes: []) == .deny(reason: "path is outside the caller's scopes"))
        #expect(Principal(kind: .user, id: UUID(), orgID: UUID(), role: .owner, scopes: []).isScoped)
        #expect(!Principal(kind: .user, id: UUID(), orgID: UUID(), role: .owner, scopes: nil).isScoped)
        #expect(throws: KeyholdError.forbidden("")) {
            try Principal(kind: .user, id: UUID(), orgID: UUID(), role: .owner, scopes: []).requireManager()
        }
    }
}

import Crypto
import Foundation
import KeyholdCore
import Testing

/// An agent's environment tag and key expiry, and the seal versions that cover them.
@Suite struct AgentTests {
    /// A whole second (tokens are issued on one), far from any clock.
    static let second = Timestamp(milliseconds: 1_800_000_000_000)

    func agent(ttl: Int? = 300, keyExpiresAt: Timestamp? = nil) -> Agent {
        Agent(
            id: UUID(), orgID: UUID(), name: "bot", description: nil, isActive: true, scopes: nil, vaultIDs: [],
            tokenTTLSeconds: ttl, expiresAt: nil, createdBy: UUID(), createdAt: Self.second, keyPrefix: "ocv_abcdefgh",
            keyDigest: Data([1]), keyVersion: 1, apiKeyExpiresAt: keyExpiresAt)
    }

    @Test(arguments: ["production", "preview", "development", "eu-west-1", "qa", String(repeating: "a", count: 30)])
    func acceptsEnvironmentSlugs(_ slug: String) {
        #expect(Agent.isEnvironmentSlug(slug))
    }

    @Test(arguments: [
        "", "p", "Production", "prod_1", "prod env", "prod.eu", "prödüction", String(repeating: "a", count: 31), "prod\n",
    ])
    func refusesOtherEnvironments(_ slug: String) {
        #expect(!Agent.isEnvironmentSlug(slug))
    }

    @Test func withoutAKeyExpiryTheTokenLivesItsTTL() {
        #expect(agent(ttl: 300).tokenLifetime(at: Self.second, default: 3600) == 300)
        #expect(agent(ttl: nil).tokenLifetime(at: Self.second, default: 3600) == 3600)
        #expect(agent().isUsable(at: Self.second))
    }

    /// The token's `exp` (its issue time, the second `now` falls in, plus the lifetime) never passes the key's
    /// expiry, wherever in its second `now` falls.
    @Test(arguments: [0, 1, 500, 999] as [Int64], [0, 1, 499, 999, 120_000, 120_500, 299_999, 300_000, 900_000] as [Int64])
    func aTokenNeverOutlivesTheKey(_ offset: Int64, _ left: Int64) {
        let now = Timestamp(milliseconds: Self.second.milliseconds + offset)
        let expiry = Timestamp(milliseconds: now.milliseconds + left)
        let bot = agent(ttl: 300, keyExpiresAt: expiry)
        let lifetime = bot.tokenLifetime(at: now, default: 3600)
        let issuedAt = Self.second.milliseconds
        #expect(lifetime >= 0 && lifetime <= 300)
        #expect(issuedAt + lifetime * 1000 <= expiry.milliseconds)
        // As long as the key allows: a second more would pass it, or the TTL caps.
        #expect(lifetime == 300 || issuedAt + (lifetime + 1) * 1000 > expiry.milliseconds)
        #expect(bot.isUsable(at: now) == (left > 0))
    }

    @Test func anExpiredKeyIsNotUsable() {
        let bot = agent(keyExpiresAt: Self.second)
        #expect(!bot.isUsable(at: Self.second))
        #expect(!bot.isUsable(at: Self.second.adding(seconds: 1)))
        #expect(bot.isUsable(at: Timestamp(milliseconds: Self.second.milliseconds - 1)))
        #expect(bot.tokenLifetime(at: Self.second.adding(seconds: 5), default: 3600) == 0)
    }
}

@Suite struct GrantSealVersionTests {
    let agents = GrantSeal.table("agents")
    let row = StoredRow(
        names: [
            "id": 0, "org_id": 1, "is_active": 2, "scopes": 3, "vault_ids": 4, "token_ttl_seconds": 5, "expires_at": 6,
            "key_prefix": 7, "key_digest": 8, "key_version": 9, "environment": 10, "environment_locked": 11,
            "env_auto_resolve": 12, "api_key_expires_at": 13, "name": 14, "created_by": 15, "created_at": 16,
            "intents_api_enabled": 17,
        ],
        values: [
            .uuid(UUID()), .uuid(UUID()), .boolean(true), .null, .text("[]"), .null, .null, .text("ocv_abcdefgh"),
            .bytes(Data([1])), .integer(1), .null, .boolean(false), .boolean(true), .null, .text("bot"), .uuid(UUID()),
            .integer(0), .boolean(false),
        ])

    @Test func theAgentsColumnsOfIssue17JoinedAtVersion2() {
        let added = ["environment", "environment_locked", "env_auto_resolve", "api_key_expires_at"]
        #expect(agents.columns(at: 2) == agents.columns.filter { $0 != "intents_api_enabled" })
        #expect(agents.columns(at: 1) == agents.columns.filter { !added.contains($0) && $0 != "intents_api_enabled" })
        for table in GrantSeal.tables where !["agents", "vaults"].contains(table.name) {
            #expect(table.columns(at: 1) == table.columns, "\(table.name) unchanged since version 1")
        }
    }

    @Test func theAgentsIntentsFlagJoinedAtVersion4() {
        #expect(GrantSeal.version == 4)
        #expect(agents.columns(at: 4) == agents.columns)
        #expect(agents.columns(at: 3) == agents.columns.filter { $0 != "intents_api_enabled" })
        #expect(agents.columns(at: 3) == agents.columns(at: 2))
    }

    @Test func anIntentsAgentMayNotReadPrivateOrSSHKeys() {
        let (orgID, agentID) = (UUID(), UUID())
        let intents = Principal(kind: .agent, id: agentID, orgID: orgID, role: nil, intentsAPIEnabled: true)
        #expect(intents.refusedSecretTypes == [.privateKey, .sshKey])
        #expect(Principal(kind: .agent, id: agentID, orgID: orgID, role: nil).refusedSecretTypes.isEmpty)
        var agent = Agent(
            id: agentID, orgID: orgID, name: "signer", description: nil, isActive: true, scopes: nil, vaultIDs: [],
            tokenTTLSeconds: nil, expiresAt: nil, createdBy: UUID(), createdAt: .now, keyPrefix: "ocv_abcdefgh",
            keyDigest: Data([1]), keyVersion: 1)
        #expect(agent.intentsAPIEnabled == false)
        agent.intentsAPIEnabled = true
        #expect(agent.intentsAPIEnabled)
    }

    @Test func theVaultsCMEKColumnJoinedAtVersion3() {
        let vaults = GrantSeal.table("vaults")
        #expect(vaults.columns(at: 3) == ["id", "org_id", "cmek_fingerprint"])
        #expect(vaults.columns(at: 2) == ["id", "org_id"])
        #expect(vaults.columns(at: 1) == ["id", "org_id"])
    }

    /// A row's version-1 seal verifies only for a seal of version 1; the same key at version 2 refuses it, and
    /// the reverse.
    @Test func aSealVerifiesOnlyUnderItsOwnVersion() throws {
        let key = SymmetricKey(size: .bits256)
        let (v1, v2) = (GrantSeal(key: key, version: 1), GrantSeal(key: key))
        #expect(v1.seal(agents, row: row) == v2.seal(agents, row: row, version: 1))
        #expect(v1.seal(agents, row: row) != v2.seal(agents, row: row))
        func sealed(_ seal: Data) -> StoredRow {
            StoredRow(names: row.names.merging(["seal": row.values.count]) { a, _ in a }, values: row.values + [.bytes(seal)])
        }
        let oldRow = sealed(v1.seal(agents, row: row))
        _ = try v1.verified(oldRow, agents, StoredRecords.agent)
        #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "does not verify")) {
            _ = try v2.verified(oldRow, agents, StoredRecords.agent)
        }
        let newRow = sealed(v2.seal(agents, row: row))
        _ = try v2.verified(newRow, agents, StoredRecords.agent)
        #expect(throws: StoredDataError(table: "agents", column: "seal", problem: "does not verify")) {
            _ = try v1.verified(newRow, agents, StoredRecords.agent)
        }
    }
}

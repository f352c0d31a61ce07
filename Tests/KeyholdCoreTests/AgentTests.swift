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
            "intents_api_enabled": 17, "ssh_public_key": 18, "ecdh_public_key": 19, "identity_keys_created_at": 20,
            "identity_key_history": 21,
        ],
        values: [
            .uuid(UUID()), .uuid(UUID()), .boolean(true), .null, .text("[]"), .null, .null, .text("ocv_abcdefgh"),
            .bytes(Data([1])), .integer(1), .null, .boolean(false), .boolean(true), .null, .text("bot"), .uuid(UUID()),
            .integer(0), .boolean(false), .null, .null, .null, .text("[]"),
        ])

    @Test func theAgentsColumnsOfIssue17JoinedAtVersion2() {
        let added = ["environment", "environment_locked", "env_auto_resolve", "api_key_expires_at"]
        #expect(agents.columns(at: 2) == agents.columns.filter { !Self.since4.contains($0) })
        #expect(agents.columns(at: 1) == agents.columns.filter { !added.contains($0) && !Self.since4.contains($0) })
        for table in GrantSeal.tables where !["agents", "vaults"].contains(table.name) {
            #expect(table.columns(at: 1) == table.columns, "\(table.name) unchanged since version 1")
        }
    }

    /// The agents' columns of issue 19: intents mode (seal version 4), the identity public keys (version 5).
    static let since4 = ["intents_api_enabled", "ssh_public_key", "ecdh_public_key", "identity_key_history"]

    @Test func theAgentsColumnsOfIssue19JoinedAtVersions4And5() {
        #expect(GrantSeal.version == 5)
        #expect(agents.columns(at: 5) == agents.columns)
        #expect(agents.columns(at: 4) == agents.columns.filter { !Self.since4.dropFirst().contains($0) })
        #expect(agents.columns(at: 3) == agents.columns.filter { !Self.since4.contains($0) })
        #expect(agents.columns(at: 3) == agents.columns(at: 2))
    }

    @Test func identityKeysHaveTheirEncodings() throws {
        let keys = AgentIdentityKeys.generate(comment: "keyhold-agent-test")
        let parts = keys.sshPublicKey.split(separator: " ")
        #expect(parts.count == 2 && parts[0] == "ssh-ed25519")
        let blob = try #require(Data(base64Encoded: String(parts[1])))
        #expect(blob.count == 4 + 11 + 4 + 32)
        #expect(blob.prefix(15) == Data([0, 0, 0, 11]) + Data("ssh-ed25519".utf8))
        let point = try #require(Data(base64Encoded: keys.ecdhPublicKey))
        #expect(point.count == 65 && point.first == 4)
        // The PKCS#8 private key is the public key's pair.
        let agreement = try P256.KeyAgreement.PrivateKey(pemRepresentation: keys.ecdhPrivateKey)
        #expect(agreement.publicKey.x963Representation == point)
        #expect(keys.sshPrivateKey.hasPrefix("-----BEGIN OPENSSH PRIVATE KEY-----\n"))
        #expect(keys.sshPrivateKey.hasSuffix("\n-----END OPENSSH PRIVATE KEY-----\n"))
        #expect(AgentIdentityKeys.sshPath(UUID(uuidString: "00000000-0000-4000-8000-000000000001")!)
            == "agents/00000000-0000-4000-8000-000000000001/ssh/private_key")
    }

    /// OpenSSH's private key format for a fixed key, as `ssh-keygen` writes it (PROTOCOL.key); the test vector's
    /// check integers are 0x01020304 and its comment "c".
    @Test func theOpenSSHPrivateKeyLayout() throws {
        let seed = Data(repeating: 7, count: 32)
        let publicKey = try Curve25519.Signing.PrivateKey(rawRepresentation: seed).publicKey.rawRepresentation
        let text = AgentIdentityKeys.openSSHPrivateKey(seed: seed, publicKey: publicKey, comment: "c", checkint: 0x0102_0304)
        let lines = text.split(separator: "\n").dropFirst().dropLast()
        #expect(lines.allSatisfy { $0.count <= 70 })
        let body = try #require(Data(base64Encoded: lines.joined()))
        #expect(body.prefix(15) == Data("openssh-key-v1".utf8) + Data([0]))
        // magic 15, "none" 8, "none" 8, "" 4, count 4, public blob 4 + 51, private section 4 + n
        let header = 15 + 8 + 8 + 4 + 4 + 55 + 4
        let privateSection = Data(body.dropFirst(header))
        #expect(privateSection.count % 8 == 0)
        #expect(privateSection.prefix(8) == Data([1, 2, 3, 4, 1, 2, 3, 4]))
        let keyPair: Data = seed + publicKey
        #expect(privateSection.range(of: keyPair) != nil)
    }

    @Test func theAgentKeysVaultIDIsTheOrgsOwn() {
        let org = UUID()
        #expect(VaultService.agentKeysVaultID(orgID: org) == VaultService.agentKeysVaultID(orgID: org))
        #expect(VaultService.agentKeysVaultID(orgID: org) != VaultService.agentKeysVaultID(orgID: UUID()))
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

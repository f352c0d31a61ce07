import Foundation
import KeyholdCore
import Testing

@Suite struct PathPatternTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let pattern: String
        let path: String
        let matches: Bool
        var testDescription: String { "\(pattern) \(matches ? "~" : "!~") \(path)" }
    }

    static let cases: [Case] = [
        .init(pattern: "api-keys/*", path: "api-keys/openai", matches: true),
        .init(pattern: "api-keys/*", path: "api-keys/openai/prod", matches: false),
        .init(pattern: "api-keys/*", path: "api-keys", matches: false),
        .init(pattern: "api-keys/**", path: "api-keys", matches: true),
        .init(pattern: "api-keys/**", path: "api-keys/a/b/c", matches: true),
        .init(pattern: "api-keys/**", path: "api-keysx/a", matches: false),
        .init(pattern: "**", path: "anything/at/all", matches: true),
        .init(pattern: "*", path: "top", matches: true),
        .init(pattern: "*", path: "top/level", matches: false),
        .init(pattern: "prod/db", path: "prod/db", matches: true),
        .init(pattern: "prod/db", path: "prod/DB", matches: false),
        .init(pattern: "prod/db", path: "prod/db/replica", matches: false),
        .init(pattern: "**/secret", path: "secret", matches: true),
        .init(pattern: "**/secret", path: "a/b/secret", matches: true),
        .init(pattern: "**/secret", path: "a/b/secret/x", matches: false),
        .init(pattern: "a/**/z", path: "a/z", matches: true),
        .init(pattern: "a/**/z", path: "a/b/c/z", matches: true),
        .init(pattern: "a/*/z", path: "a/z", matches: false),
        .init(pattern: "a/**/**/z", path: "a/q/z", matches: true),
        .init(pattern: "*/db/**", path: "prod/db", matches: true),
        .init(pattern: "*/db/**", path: "prod/cache/db", matches: false),
    ]

    @Test(arguments: cases)
    func matching(_ c: Case) throws {
        #expect(try PathPattern(validating: c.pattern).matches(SecretPath(validating: c.path)) == c.matches)
    }

    @Test(arguments: ["", "/a", "a/", "a//b", "a/../b", "..", ".", "a/./b", "a b", "a/%2E%2E/b", "a/.*", "a/**x", "ç"])
    func refusesInvalidPatterns(_ raw: String) {
        #expect(throws: KeyholdError.badRequest("")) { try PathPattern(validating: raw) }
    }

    /// 30 double stars against 32 segments: a backtracking matcher would try on the order of 2^30 splits and not
    /// finish; the matcher answers at once. (No clock: a wall-clock bound fails on a busy machine.)
    @Test func manyDoubleStarsNeedNoBacktracking() throws {
        let pattern = try PathPattern(validating: Array(repeating: "**/a", count: 30).joined(separator: "/") + "/b")
        let path = try SecretPath(validating: Array(repeating: "a", count: 32).joined(separator: "/"))
        #expect(!pattern.matches(path))
        #expect(pattern.matches(try SecretPath(validating: Array(repeating: "a", count: 31).joined(separator: "/") + "/b")))
    }
}

@Suite struct ConditionTests {
    @Test func cidrMatching() throws {
        let ten = try #require(CIDR("10.0.0.0/8"))
        #expect(ten.contains(IPAddress("10.1.2.3")!))
        #expect(!ten.contains(IPAddress("11.0.0.1")!))
        #expect(ten.contains(IPAddress("::ffff:10.9.9.9")!))
        let host = try #require(CIDR("192.168.1.7"))
        #expect(host.contains(IPAddress("192.168.1.7")!) && !host.contains(IPAddress("192.168.1.8")!))
        let v6 = try #require(CIDR("2001:db8::/32"))
        #expect(v6.contains(IPAddress("2001:db8:1::5")!))
        #expect(!v6.contains(IPAddress("2001:db9::1")!))
        #expect(!v6.contains(IPAddress("10.0.0.1")!))
        #expect(CIDR("0.0.0.0/0")!.contains(IPAddress("8.8.8.8")!))
        for bad in ["10.0.0.0/33", "10.0.0/8", "256.0.0.1", "10.0.0.01", "::1/129", "abc", "", "1.2.3.4/-1", "1:2:3:4:5:6:7:8:9"] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
        #expect(IPAddress("::1")?.description == "0:0:0:0:0:0:0:1")
    }

    /// Addresses taken from a socket's raw bytes (network order) equal the same addresses parsed from text.
    @Test func addressesFromRawBytes() {
        #expect(IPAddress(bytes: [127, 0, 0, 1]) == IPAddress("127.0.0.1"))
        #expect(IPAddress(bytes: [127, 0, 0, 1])?.description == "127.0.0.1")
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 9, 9, 9]
        #expect(IPAddress(bytes: mapped) == IPAddress("10.9.9.9") && IPAddress(bytes: mapped)?.isIPv4 == true)
        let v6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [5]
        #expect(IPAddress(bytes: v6) == IPAddress("2001:db8::5") && IPAddress(bytes: v6)?.isIPv4 == false)
        #expect(IPAddress(bytes: [1, 2, 3]) == nil && IPAddress(bytes: [UInt8](repeating: 1, count: 17)) == nil)
    }

    @Test func conditionsParseAndHold() throws {
        let json = try JSONValue(jsonString: #"{"ip_allowlist":["127.0.0.0/8"],"time_window":{"after":"08:00","before":"20:00","timezone":"UTC"}}"#)
        let conditions = try PolicyConditions(json: json)
        let noon = Timestamp(iso8601: "2026-11-27T12:00:00Z")!
        let night = Timestamp(iso8601: "2026-11-27T23:00:00Z")!
        #expect(conditions.hold(at: AccessContext(clientIP: IPAddress("127.0.0.1"), now: noon)))
        #expect(!conditions.hold(at: AccessContext(clientIP: IPAddress("10.0.0.1"), now: noon)))
        #expect(!conditions.hold(at: AccessContext(clientIP: nil, now: noon)))
        #expect(!conditions.hold(at: AccessContext(clientIP: IPAddress("127.0.0.1"), now: night)))
    }

    @Test func windowsSpanMidnightZonesAndDays() throws {
        let overnight = try PolicyConditions(json: JSONValue(jsonString: #"{"time_window":{"after":"22:00","before":"06:00"}}"#))
        #expect(overnight.hold(at: AccessContext(clientIP: nil, now: Timestamp(iso8601: "2026-11-27T23:30:00Z")!)))
        #expect(overnight.hold(at: AccessContext(clientIP: nil, now: Timestamp(iso8601: "2026-11-27T05:59:00Z")!)))
        #expect(!overnight.hold(at: AccessContext(clientIP: nil, now: Timestamp(iso8601: "2026-11-27T06:00:00Z")!)))
        // 2026-11-27 is a Friday. 09:00 in Tokyo is 00:00 UTC.
        let tokyo = try PolicyConditions(json: JSONValue(jsonString: #"{"time_window":{"after":"08:30","before":"09:30","timezone":"Asia/Tokyo","days":["fri"]}}"#))
        #expect(tokyo.hold(at: AccessContext(clientIP: nil, now: Timestamp(iso8601: "2026-11-27T00:00:00Z")!)))
        #expect(!tokyo.hold(at: AccessContext(clientIP: nil, now: Timestamp(iso8601: "2026-11-28T00:00:00Z")!)))
    }

    @Test(arguments: [
        #"[]"#, #"{"ip_allowlist":"10.0.0.0/8"}"#, #"{"ip_allowlist":[]}"#, #"{"ip_allowlist":["nope"]}"#,
        #"{"time_window":{"after":"8:00","before":"20:00"}}"#, #"{"time_window":{"after":"08:00","before":"08:00"}}"#,
        #"{"time_window":{"after":"08:00","before":"25:00"}}"#, #"{"time_window":{"after":"08:00","before":"20:00","timezone":"Mars/Olympus"}}"#,
        #"{"time_window":{"after":"08:00","before":"20:00","days":["funday"]}}"#, #"{"geo":"eu"}"#,
    ])
    func refusesInvalidConditions(_ text: String) throws {
        let json = try JSONValue(jsonString: text)
        #expect(throws: KeyholdError.badRequest("")) { try PolicyConditions(json: json) }
    }
}

@Suite struct AuthorizerTests {
    static let org = UUID()
    static let owner = Principal(kind: .user, id: UUID(), orgID: org, role: .owner)
    static let admin = Principal(kind: .user, id: UUID(), orgID: org, role: .admin)
    static let member = Principal(kind: .user, id: UUID(), orgID: org, role: .member)
    static let vault = Vault(
        id: UUID(), orgID: org, name: "v", description: nil, createdBy: owner.id, createdByType: .user, kekID: "k",
        createdAt: .now)
    static let otherVault = Vault(
        id: UUID(), orgID: org, name: "w", description: nil, createdBy: owner.id, createdByType: .user, kekID: "k2",
        createdAt: .now)
    static let now = Timestamp(iso8601: "2026-11-27T12:00:00Z")!
    static let local = AccessContext(clientIP: IPAddress("127.0.0.1"), now: now)

    static func agent(scopes: [String]? = nil, vaults: [UUID] = []) -> Principal {
        Principal(kind: .agent, id: UUID(), orgID: org, role: nil, scopes: scopes, vaultIDs: vaults)
    }

    static func policy(
        for principal: Principal, _ pattern: String, _ permissions: [Permission], effect: PolicyEffect = .allow,
        vault: Vault = vault, expiresAt: Timestamp? = nil, conditions: String? = nil
    ) throws -> Policy {
        Policy(
            id: UUID(), vaultID: vault.id, pattern: try PathPattern(validating: pattern), principalKind: principal.kind,
            principalID: principal.id, permissions: permissions,
            conditions: try PolicyConditions(json: conditions.map { try JSONValue(jsonString: $0) }),
            expiresAt: expiresAt, effect: effect, priority: 0, createdBy: owner.id, createdByType: .user,
            createdAt: now)
    }

    let authorizer = Authorizer()

    func allowed(
        _ principal: Principal, _ path: String, _ permission: Permission, _ policies: [Policy], vault: Vault = vault,
        context: AccessContext = local
    ) throws -> Bool {
        authorizer.decide(
            principal, vault: vault, path: try SecretPath(validating: path), permission: permission, policies: policies,
            context: context
        ).isAllowed
    }

    @Test func ownersAndAdminsAreAllowedByDefaultAndMembersAreNot() throws {
        for permission in Permission.allCases {
            #expect(try allowed(Self.owner, "a/b", permission, []))
            #expect(try allowed(Self.admin, "a/b", permission, []))
            #expect(try !allowed(Self.member, "a/b", permission, []))
            #expect(try !allowed(Self.agent(), "a/b", permission, []))
        }
        let stranger = Principal(kind: .user, id: UUID(), orgID: UUID(), role: .owner)
        #expect(try !allowed(stranger, "a/b", .read, []))
        #expect(!authorizer.canSee(stranger, vault: Self.vault, policies: [], context: Self.local))
    }

    @Test func policiesGrantExactlyTheirPathsAndPermissions() throws {
        let agent = Self.agent()
        let grants = [try Self.policy(for: agent, "prod/**", [.read])]
        #expect(try allowed(agent, "prod/db", .read, grants))
        #expect(try allowed(agent, "prod", .read, grants))
        #expect(try !allowed(agent, "staging/db", .read, grants))
        #expect(try !allowed(agent, "prod/db", .write, grants))
        #expect(try !allowed(agent, "prod/db", .read, grants, vault: Self.otherVault), "a policy is for its vault")
        let other = Self.agent()
        #expect(try !allowed(other, "prod/db", .read, grants), "a policy is for its principal")
    }

    @Test func anAllowThatRequiresApprovalGatesTheReadWithTheStrictestRule() throws {
        let agent = Self.agent()
        let path = try SecretPath(validating: "prod/db")
        func decide(_ policies: [Policy], _ principal: Principal = agent) -> Authorizer.Decision {
            authorizer.decide(principal, vault: Self.vault, path: path, permission: .read, policies: policies, context: Self.local)
        }
        let gated = try Self.policy(for: agent, "prod/**", [.read], conditions: #"{"require_approval": true, "approval_max_uses": 3}"#)
        let tighter = try Self.policy(
            for: agent, "prod/*", [.read], conditions: #"{"require_approval": true, "approval_ttl_seconds": 60, "approval_max_uses": 5}"#)
        let plain = try Self.policy(for: agent, "prod/**", [.read])
        #expect(decide([gated]) == .approvalRequired(ApprovalRule(ttlSeconds: 900, maxUses: 3)))
        // The stricter grant wins: a plain allow beside a gated one does not lift the gate; two gates combine.
        #expect(decide([gated, plain]) == .approvalRequired(ApprovalRule(ttlSeconds: 900, maxUses: 3)))
        #expect(decide([gated, tighter]) == .approvalRequired(ApprovalRule(ttlSeconds: 60, maxUses: 3)))
        #expect(!decide([gated]).isAllowed && decide([gated]).isVisible && decide([gated]).refusal != nil)
        // A deny still wins; a gate on another path does not apply; an owner under a gated policy is gated too.
        #expect(decide([gated, try Self.policy(for: agent, "prod/db", [.read], effect: .deny)]) == .deny(reason: "denied by policy"))
        #expect(decide([try Self.policy(for: agent, "staging/**", [.read], conditions: #"{"require_approval": true}"#)]).isVisible == false)
        let owners = try Self.policy(for: Self.owner, "**", [.read], conditions: #"{"require_approval": true}"#)
        #expect(decide([owners], Self.owner) == .approvalRequired(ApprovalRule()))
    }

    @Test(arguments: [
        #"{"require_approval": 1}"#, #"{"approval_max_uses": 2}"#, #"{"require_approval": false, "approval_ttl_seconds": 60}"#,
        #"{"require_approval": true, "approval_max_uses": 0}"#, #"{"require_approval": true, "approval_max_uses": 1001}"#,
        #"{"require_approval": true, "approval_ttl_seconds": 59}"#, #"{"require_approval": true, "approval_ttl_seconds": 90.5}"#,
        #"{"require_approval": true, "approval_ttl_seconds": "900"}"#, #"{"require_aproval": true}"#,
    ])
    func malformedApprovalConditionsAreRefused(_ json: String) {
        #expect(throws: KeyholdError.badRequest("")) { try PolicyConditions(json: try JSONValue(jsonString: json)) }
    }

    @Test func writeImpliesDeleteAndRotateButNotRead() throws {
        let agent = Self.agent()
        let grants = [try Self.policy(for: agent, "**", [.write])]
        #expect(try allowed(agent, "x", .write, grants))
        #expect(try allowed(agent, "x", .delete, grants))
        #expect(try allowed(agent, "x", .rotate, grants))
        #expect(try !allowed(agent, "x", .read, grants))
        let rotateOnly = [try Self.policy(for: agent, "**", [.rotate])]
        #expect(try !allowed(agent, "x", .write, rotateOnly))
    }

    @Test func denyWinsOverAllowAndOverTheOwner() throws {
        let agent = Self.agent()
        let policies = [
            try Self.policy(for: agent, "**", [.read]),
            try Self.policy(for: agent, "prod/root-key", [.read], effect: .deny),
        ]
        #expect(try allowed(agent, "prod/other", .read, policies))
        #expect(try !allowed(agent, "prod/root-key", .read, policies))
        let ownerDenied = [try Self.policy(for: Self.owner, "break-glass/**", [.read], effect: .deny)]
        #expect(try !allowed(Self.owner, "break-glass/key", .read, ownerDenied))
        #expect(try allowed(Self.owner, "other", .read, ownerDenied))
    }

    @Test func expiredPoliciesAndFailedConditionsDoNotApply() throws {
        let agent = Self.agent()
        #expect(try !allowed(agent, "a", .read, [try Self.policy(for: agent, "**", [.read], expiresAt: Self.now)]))
        #expect(try allowed(agent, "a", .read, [try Self.policy(for: agent, "**", [.read], expiresAt: Self.now.adding(seconds: 1))]))
        let office = [try Self.policy(for: agent, "**", [.read], conditions: #"{"ip_allowlist":["10.0.0.0/8"]}"#)]
        #expect(try !allowed(agent, "a", .read, office))
        #expect(try allowed(agent, "a", .read, office, context: AccessContext(clientIP: IPAddress("10.2.3.4"), now: Self.now)))
        let hours = [try Self.policy(for: agent, "**", [.read], conditions: #"{"time_window":{"after":"13:00","before":"14:00"}}"#)]
        #expect(try !allowed(agent, "a", .read, hours))
        // A deny whose conditions fail does not deny.
        let denyAtNight = [
            try Self.policy(for: agent, "**", [.read]),
            try Self.policy(for: agent, "**", [.read], effect: .deny, conditions: #"{"time_window":{"after":"22:00","before":"06:00"}}"#),
        ]
        #expect(try allowed(agent, "a", .read, denyAtNight))
    }

    @Test func vaultBindingAndScopesCapAgentsBeforePolicies() throws {
        let bound = Self.agent(vaults: [Self.otherVault.id])
        let grants = [try Self.policy(for: bound, "**", [.read])]
        #expect(try !allowed(bound, "a", .read, grants), "not bound to this vault")
        #expect(!authorizer.canSee(bound, vault: Self.vault, policies: grants, context: Self.local))

        let scoped = Self.agent(scopes: ["prod/*"])
        let wide = [try Self.policy(for: scoped, "**", [.read, .write])]
        #expect(try allowed(scoped, "prod/db", .read, wide))
        #expect(try !allowed(scoped, "prod/db/replica", .read, wide))
        #expect(try !allowed(scoped, "staging/db", .write, wide))

        let meaningless = Self.agent(scopes: ["vaults:read"])
        #expect(try !allowed(meaningless, "prod/db", .read, [try Self.policy(for: meaningless, "**", [.read])]))
        let star = Self.agent(scopes: ["*"])
        #expect(try allowed(star, "a/b/c", .read, [try Self.policy(for: star, "**", [.read])]))
    }

    @Test func agentsThatCreatedAVaultOwnIt() throws {
        let agent = Self.agent()
        let own = Vault(
            id: UUID(), orgID: Self.org, name: "mine", description: nil, createdBy: agent.id, createdByType: .agent,
            kekID: "k", createdAt: .now)
        #expect(try allowed(agent, "x", .write, [], vault: own))
        #expect(authorizer.isOwner(agent, of: own))
        #expect(!authorizer.isOwner(agent, of: Self.vault))
    }

    @Test func visibilityNeedsAnAllowPolicyInForceOrOwnership() throws {
        let member = Self.member
        #expect(!authorizer.canSee(member, vault: Self.vault, policies: [], context: Self.local))
        #expect(authorizer.canSee(member, vault: Self.vault, policies: [try Self.policy(for: member, "a/*", [.read])], context: Self.local))
        #expect(!authorizer.canSee(member, vault: Self.vault, policies: [try Self.policy(for: member, "a/*", [.read], effect: .deny)], context: Self.local))
        #expect(!authorizer.canSee(member, vault: Self.vault, policies: [try Self.policy(for: member, "a/*", [.read], expiresAt: Self.now)], context: Self.local))
        #expect(authorizer.canSee(Self.admin, vault: Self.vault, policies: [], context: Self.local))
    }

    @Test func pathTricksNeverReachTheAuthorizer() {
        for trick in ["a/../b", "a/%2E%2E/b", "a/./b", "a//b", "prod/../admin"] {
            #expect(throws: KeyholdError.badRequest(""), "\(trick)") { try SecretPath(urlEncoded: trick[...]) }
        }
    }
}

@Suite struct CredentialTests {
    @Test(arguments: CredentialKind.allCases)
    func generatedCredentialsHaveTheirShape(_ kind: CredentialKind) {
        let secret = kind.generate()
        #expect(secret.hasPrefix(kind.rawValue))
        #expect(kind.matchesShape(secret))
        #expect(secret.count == kind.rawValue.count + 43)
        #expect(kind.lookupPrefix(of: secret).count == kind.lookupLength)
        #expect(!kind.matchesShape(secret + "x"))
        #expect(!kind.matchesShape(String(secret.dropLast())))
        #expect(!kind.matchesShape(String(secret.dropLast()) + "!"))
        #expect(kind.generate() != secret)
    }

    @Test func agentKeysMatchTheDocumentedForm() {
        let key = CredentialKind.agentKey.generate()
        #expect(key.count == 47)
        #expect(key.range(of: #"^ocv_[A-Za-z0-9_-]{43}$"#, options: .regularExpression) != nil)
    }

    @Test func digestsAreKeyedAndCompareExactly() {
        let a = CredentialHasher(key: .init(size: .bits256))
        let b = CredentialHasher(key: .init(size: .bits256))
        let secret = CredentialKind.userKey.generate()
        #expect(a.matches(secret, digest: a.digest(secret)))
        #expect(!a.matches(secret, digest: b.digest(secret)))
        #expect(!a.matches(secret + "x", digest: a.digest(secret)))
        #expect(!CredentialHasher.constantTimeEqual(Data([1, 2]), Data([1, 2, 3])))
    }
}

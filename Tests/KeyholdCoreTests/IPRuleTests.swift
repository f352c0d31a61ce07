import Crypto
import Foundation
import KeyholdCore
import Synchronization
import Testing

/// The org IP rules' decision (pure), the client address behind trusted proxies, and the service's lock-out guard.
@Suite struct IPRuleTests {
    static let org = UUID()

    static func rule(_ type: IPRuleType, _ cidr: String, _ target: IPRuleTarget = .all) -> IPRule {
        IPRule(
            id: UUID(), orgID: org, type: type, cidr: CIDR(cidr)!, cidrText: cidr, label: nil, appliesTo: target,
            createdBy: UUID(), createdAt: .now)
    }

    static func ip(_ text: String) -> IPAddress { IPAddress(text)! }

    @Test func noRulesLetEveryAddressIn() {
        let rules = IPRuleSet([])
        #expect(rules.refusal(for: Self.ip("203.0.113.9"), kind: .user) == nil)
        #expect(rules.refusal(for: nil, kind: .agent) == nil)
    }

    @Test func aDenyRuleRefusesTheAddressesItContains() {
        let rules = IPRuleSet([Self.rule(.deny, "127.0.0.2/32")])
        #expect(rules.refusal(for: Self.ip("127.0.0.2"), kind: .user) == .denied)
        #expect(rules.refusal(for: Self.ip("127.0.0.1"), kind: .user) == nil)
        #expect(rules.refusal(for: Self.ip("::ffff:127.0.0.2"), kind: .agent) == .denied, "an IPv4-mapped peer is IPv4")
        #expect(rules.refusal(for: nil, kind: .user) == .denied, "an address the server cannot tell fails closed")
    }

    @Test func withAnAllowRuleOnlyAllowedAddressesPass() {
        let rules = IPRuleSet([Self.rule(.allow, "10.0.0.0/8"), Self.rule(.allow, "192.168.1.0/24")])
        #expect(rules.refusal(for: Self.ip("10.200.3.4"), kind: .user) == nil)
        #expect(rules.refusal(for: Self.ip("192.168.1.77"), kind: .user) == nil)
        #expect(rules.refusal(for: Self.ip("192.168.2.1"), kind: .user) == .notAllowed)
        #expect(rules.refusal(for: nil, kind: .user) == .notAllowed)
    }

    @Test func denyWinsOverAllow() {
        let rules = IPRuleSet([Self.rule(.allow, "10.0.0.0/8"), Self.rule(.deny, "10.1.0.0/16")])
        #expect(rules.refusal(for: Self.ip("10.2.0.1"), kind: .agent) == nil)
        #expect(rules.refusal(for: Self.ip("10.1.0.1"), kind: .agent) == .denied)
        let reversed = IPRuleSet([Self.rule(.deny, "10.1.0.0/16"), Self.rule(.allow, "10.1.2.3")])
        #expect(reversed.refusal(for: Self.ip("10.1.2.3"), kind: .user) == .denied, "a narrower allow does not beat a deny")
    }

    @Test func appliesToLimitsWhoseRequestsARuleCovers() {
        let rules = IPRuleSet([Self.rule(.allow, "10.0.0.0/8", .agents), Self.rule(.deny, "192.0.2.0/24", .humans)])
        // Agents: only 10/8; the humans' deny rule does not concern them.
        #expect(rules.refusal(for: Self.ip("10.0.0.1"), kind: .agent) == nil)
        #expect(rules.refusal(for: Self.ip("192.0.2.5"), kind: .agent) == .notAllowed)
        #expect(rules.refusal(for: Self.ip("198.51.100.1"), kind: .agent) == .notAllowed)
        // People: anything but 192.0.2/24; the agents' allow rule makes no allow-list for them.
        #expect(rules.refusal(for: Self.ip("198.51.100.1"), kind: .user) == nil)
        #expect(rules.refusal(for: Self.ip("192.0.2.5"), kind: .user) == .denied)
    }

    @Test func ipv6RulesAndAddresses() {
        let rules = IPRuleSet([Self.rule(.allow, "2001:db8::/32"), Self.rule(.deny, "2001:db8:bad::/48")])
        #expect(rules.refusal(for: Self.ip("2001:db8:1::5"), kind: .user) == nil)
        #expect(rules.refusal(for: Self.ip("2001:db8:bad::1"), kind: .user) == .denied)
        #expect(rules.refusal(for: Self.ip("2001:db9::1"), kind: .user) == .notAllowed)
        #expect(rules.refusal(for: Self.ip("10.0.0.1"), kind: .user) == .notAllowed, "an IPv6 allow-list refuses IPv4")
        #expect(IPRuleSet([Self.rule(.deny, "::1")]).refusal(for: Self.ip("::1"), kind: .agent) == .denied)
    }

    @Test func ruleTypesAndTargetsOnTheWire() {
        #expect(IPRuleType(wire: "allow") == .allow)
        #expect(IPRuleType(wire: "deny") == .deny)
        #expect(IPRuleType(wire: "block") == .deny, "1Claw's docs say block")
        #expect(IPRuleType(wire: "Allow") == nil)
        #expect(IPRuleType(rawValue: "block") == nil, "stored rows hold allow or deny only")
        #expect(IPRuleTarget.all.covers(.user) && IPRuleTarget.all.covers(.agent))
        #expect(IPRuleTarget.humans.covers(.user) && !IPRuleTarget.humans.covers(.agent))
        #expect(IPRuleTarget.agents.covers(.agent) && !IPRuleTarget.agents.covers(.user))
    }

    // MARK: X-Forwarded-For

    static let proxies = [CIDR("10.0.0.0/8")!, CIDR("fd00::/8")!]

    static func resolve(_ peer: String, _ headers: [String], proxies: [CIDR] = proxies) -> String? {
        ClientAddress.resolve(peer: IPAddress(peer), forwardedFor: headers, trustedProxies: proxies)?.description
    }

    @Test func forwardedForIsIgnoredWithoutTrustedProxies() {
        #expect(Self.resolve("203.0.113.5", ["198.51.100.1"], proxies: []) == "203.0.113.5")
    }

    @Test func forwardedForIsIgnoredFromAPeerThatIsNoTrustedProxy() {
        #expect(Self.resolve("203.0.113.5", ["198.51.100.1"]) == "203.0.113.5")
    }

    @Test func theRightMostUntrustedAddressIsTheClient() {
        #expect(Self.resolve("10.0.0.1", ["198.51.100.1"]) == "198.51.100.1")
        // The client wrote a fake first hop; the proxies appended what they saw.
        #expect(Self.resolve("10.0.0.1", ["127.0.0.1, 198.51.100.1, 10.0.0.9"]) == "198.51.100.1")
        #expect(Self.resolve("10.0.0.1", ["127.0.0.1", "198.51.100.1", "10.0.0.9"]) == "198.51.100.1", "several header lines")
        #expect(Self.resolve("10.0.0.1", ["198.51.100.1:4711"]) == "198.51.100.1", "a port is dropped")
        #expect(Self.resolve("fd00::1", ["[2001:db8::7]:443"]) == "2001:db8:0:0:0:0:0:7")
        #expect(Self.resolve("10.0.0.1", [" 2001:db8::7 "]) == "2001:db8:0:0:0:0:0:7")
    }

    @Test func onlyTrustedHopsMeanTheLeftMostOfThem() {
        #expect(Self.resolve("10.0.0.1", ["10.0.0.3, 10.0.0.2"]) == "10.0.0.3")
        #expect(Self.resolve("10.0.0.1", []) == "10.0.0.1", "no header: the proxy itself")
    }

    @Test func aHopThatDoesNotParseStopsAtTheLastTrustedOne() {
        #expect(Self.resolve("10.0.0.1", ["198.51.100.1, garbage"]) == "10.0.0.1")
        #expect(Self.resolve("10.0.0.1", ["198.51.100.1, unknown, 10.0.0.2"]) == "10.0.0.2")
        #expect(Self.resolve("10.0.0.1", [""]) == "10.0.0.1")
        #expect(Self.resolve("10.0.0.1", ["fe80::1%eth0"]) == "10.0.0.1", "no zone ids")
    }

    // MARK: the service

    /// An in-memory store of rules and audit events.
    final class Memory: IPRuleStore, AuditStore, Sendable {
        let rules = Mutex<[IPRule]>([])
        let events = Mutex<[AuditEntry]>([])

        func createIPRule(_ rule: IPRule, audit: AuditRecord) async throws {
            rules.withLock { $0.append(rule) }
            events.withLock { $0.append(audit.entry) }
        }
        func ipRules(orgID: UUID) async throws -> [IPRule] { rules.withLock { $0.filter { $0.orgID == orgID } } }
        func deleteIPRule(id: UUID, orgID: UUID, audit: AuditRecord) async throws -> Bool {
            let found = rules.withLock { rules in
                defer { rules.removeAll { $0.id == id && $0.orgID == orgID } }
                return rules.contains { $0.id == id && $0.orgID == orgID }
            }
            if found { events.withLock { $0.append(audit.entry) } }
            return found
        }
        func appendAudit(_ record: AuditRecord) async throws { events.withLock { $0.append(record.entry) } }
        func auditEvents(orgID: UUID, filter: AuditFilter) async throws -> [AuditEvent] { [] }
        func auditChain(orgID: UUID, afterSequence: Int64, limit: Int) async throws -> [AuditEvent] { [] }
        func auditHead(orgID: UUID) async throws -> AuditHead? { nil }
    }

    struct Setup {
        let memory = Memory()
        let service: IPRuleService
        let failures: FailedAuthentications

        init() {
            let audit = AuditLog(store: memory, chain: AuditChain(key: SymmetricKey(size: .bits256)))
            failures = FailedAuthentications(audit: audit, interval: .seconds(60))
            service = IPRuleService(store: memory, audit: audit, failures: failures)
        }

        func caller(_ role: OrgRole? = .admin, kind: PrincipalKind = .user, from ip: String = "127.0.0.1", scopes: [String]? = nil)
            -> Caller
        {
            Caller(
                Principal(kind: kind, id: UUID(), orgID: IPRuleTests.org, role: kind == .user ? role : nil, scopes: scopes),
                context: AccessContext(clientIP: IPAddress(ip)))
        }

        func draft(_ type: String, _ cidr: String, appliesTo: String? = nil) -> IPRuleService.Draft {
            IPRuleService.Draft(ruleType: type, cidr: cidr, label: "office", appliesTo: appliesTo)
        }
    }

    @Test func onlyUnscopedOwnersAndAdminsManageRules() async throws {
        let s = Setup()
        for caller in [s.caller(.member), s.caller(kind: .agent), s.caller(.owner, scopes: ["*"])] {
            await #expect(throws: KeyholdError(.forbidden, "")) {
                _ = try await s.service.create(s.draft("deny", "192.0.2.0/24"), force: false, by: caller)
            }
            await #expect(throws: KeyholdError(.forbidden, "")) { _ = try await s.service.list(by: caller) }
        }
        #expect(s.memory.events.withLock { $0.map(\.action) } == Array(repeating: "ip_rule.create", count: 3))
        let rule = try await s.service.create(s.draft("block", "192.0.2.0/24"), force: false, by: s.caller(.owner))
        #expect(rule.type == .deny && rule.appliesTo == .all && rule.label == "office")
        #expect(try await s.service.list(by: s.caller(.admin)) == [rule])
    }

    @Test func draftsAreValidated() async throws {
        let s = Setup()
        for draft in [
            s.draft("permit", "10.0.0.0/8"), s.draft("allow", "10.0.0.0/33"), s.draft("allow", "10.0.0/8"),
            s.draft("allow", "example.com"), s.draft("allow", "fe80::1%eth0"), s.draft("allow", "10.0.0.0/8", appliesTo: "robots"),
            IPRuleService.Draft(ruleType: "allow", cidr: "10.0.0.0/8", label: String(repeating: "x", count: 256), appliesTo: nil),
        ] {
            await #expect(throws: KeyholdError(.badRequest, "")) {
                _ = try await s.service.create(draft, force: false, by: s.caller())
            }
        }
        #expect(try await s.service.list(by: s.caller()).isEmpty)
    }

    @Test func theLockOutGuardRefusesARuleAgainstTheCallersOwnAddress() async throws {
        let s = Setup()
        let admin = s.caller(from: "127.0.0.1")
        await #expect(throws: KeyholdError(.conflict, "")) {
            _ = try await s.service.create(s.draft("deny", "127.0.0.0/8"), force: false, by: admin)
        }
        await #expect(throws: KeyholdError(.conflict, "")) {
            _ = try await s.service.create(s.draft("allow", "10.0.0.0/8"), force: false, by: admin)
        }
        #expect(try await s.service.list(by: admin).isEmpty)
        #expect(s.memory.events.withLock { $0.map { $0.details["reason"] } } == ["would_lock_out", "would_lock_out"])
        // Rules that spare the caller, or that cover only agents, pass without force.
        _ = try await s.service.create(s.draft("deny", "127.0.0.2"), force: false, by: admin)
        _ = try await s.service.create(s.draft("allow", "10.0.0.0/8", appliesTo: "agents"), force: false, by: admin)
        let mine = try await s.service.create(s.draft("allow", "127.0.0.1"), force: false, by: admin)
        let other = try await s.service.create(s.draft("allow", "192.0.2.0/24"), force: false, by: admin)
        // Deleting the allow rule the caller depends on would lock them out; another one may go.
        await #expect(throws: KeyholdError(.conflict, "")) { try await s.service.delete(mine.id, force: false, by: admin) }
        try await s.service.delete(other.id, force: false, by: admin)
        // force makes the change, and says so.
        try await s.service.delete(mine.id, force: true, by: admin)
        let forced = try await s.service.create(s.draft("deny", "127.0.0.1"), force: true, by: admin)
        #expect(s.memory.events.withLock { $0.last?.details["forced"] } == true)
        #expect(try await s.service.list(by: admin).contains(forced))
        await #expect(throws: KeyholdError(.notFound, "")) { try await s.service.delete(UUID(), force: false, by: admin) }
    }

    @Test func enforcementRefusesWithA403AndCountsTheRefusal() async throws {
        let s = Setup()
        _ = try await s.service.create(s.draft("deny", "203.0.113.0/24"), force: false, by: s.caller())
        let person = Principal(kind: .user, id: UUID(), orgID: Self.org, role: .member)
        try await s.service.enforce(person, ip: Self.ip("198.51.100.1"), method: "bearer")
        await #expect(throws: IPRuleService.refused) {
            try await s.service.enforce(person, ip: Self.ip("203.0.113.7"), method: "bearer")
        }
        await #expect(throws: IPRuleService.refused) {
            try await s.service.enforce(person, ip: Self.ip("203.0.113.7"), method: "password")
        }
        #expect(s.failures.pendingCount == 2, "counted, not written one by one")
        let written = s.memory.events.withLock { $0.count }
        await s.failures.flush()
        let events = s.memory.events.withLock { Array($0.dropFirst(written)) }
        #expect(events.map(\.action) == ["ip_rule.refused", "ip_rule.refused"])
        #expect(events.allSatisfy { $0.orgID == Self.org && $0.resourceID == person.id.wire && $0.ipAddress == "203.0.113.7" })
        #expect(Set(events.compactMap { $0.details["method"] }) == ["bearer", "password"])
        // Another org's rules do not apply.
        try await s.service.enforce(
            Principal(kind: .user, id: UUID(), orgID: UUID(), role: .owner), ip: Self.ip("203.0.113.7"), method: "bearer")
    }
}

import Crypto
import Foundation
import KeyholdCore
import Testing

@Suite struct CapabilityLeaseTests {
    let root = SymmetricKey(size: .bits256)
    let id = UUID()

    @Test func aMintedTokenRoundTripsAndVerifiesWithNoCaveat() throws {
        let token = LeaseToken.mint(leaseID: id, rootKey: root)
        let parsed = try #require(LeaseToken(parsing: token.encoded))
        #expect(parsed == token && parsed.leaseID == id)
        #expect(parsed.verified(rootKey: root) == [])
        #expect(parsed.verified(rootKey: SymmetricKey(size: .bits256)) == nil, "another lease's key")
    }

    @Test func aHolderNarrowsWithoutTheServerAndTheChainStillVerifies() throws {
        let narrowed = LeaseToken.mint(leaseID: id, rootKey: root)
            .attenuated(with: .uses(3)).attenuated(with: .methods(["POST"])).attenuated(with: .pathPrefix("/v1/charges"))
            .attenuated(with: .host("*.example.com")).attenuated(with: .expires(Timestamp(milliseconds: 1_900_000_000_000)))
        let parsed = try #require(LeaseToken(parsing: narrowed.encoded))
        let verified = try #require(parsed.verified(rootKey: root))
        #expect(verified.map(\.caveat) == [
            .uses(3), .methods(["POST"]), .pathPrefix("/v1/charges"), .host("*.example.com"),
            .expires(Timestamp(milliseconds: 1_900_000_000_000)),
        ])
        #expect(Set(verified.map(\.counterKey)).count == 5)
        // A token attenuated further shares the counters of the caveats it inherited.
        let further = try #require(parsed.attenuated(with: .uses(1)).verified(rootKey: root))
        #expect(Array(further.prefix(5)) == verified)
    }

    @Test func droppingReorderingOrEditingACaveatBreaksTheChain() throws {
        let token = LeaseToken.mint(leaseID: id, rootKey: root).attenuated(with: .uses(1)).attenuated(with: .methods(["GET"]))
        var parts = token.encoded.dropFirst(LeaseToken.prefix.count).split(separator: ".").map(String.init)
        let withoutFirst = LeaseToken.prefix + ([parts[0]] + parts[2...]).joined(separator: ".")
        #expect(try #require(LeaseToken(parsing: withoutFirst)).verified(rootKey: root) == nil)
        parts.swapAt(1, 2)
        #expect(try #require(LeaseToken(parsing: LeaseToken.prefix + parts.joined(separator: "."))).verified(rootKey: root) == nil)
        parts.swapAt(1, 2)
        parts[1] = Data("uses<=100".utf8).base64URLEncodedString()
        #expect(try #require(LeaseToken(parsing: LeaseToken.prefix + parts.joined(separator: "."))).verified(rootKey: root) == nil)
    }

    @Test func anUnknownOrMalformedCaveatIsRefusedEvenWhenSigned() throws {
        for text in ["uses<=-1", "uses<=01", "uses=3", "expires<=soon", "methods=get", "methods=", "path_prefix=v1",
                     "path_prefix=/v1/../admin", "path_prefix=/v1//x", "path_prefix=/v1/%2e%2e", "host=*.localhost",
                     "host=*.", "host=Example.com", "host=ex ample.com", "region=eu", ""] {
            #expect(LeaseCaveat(text: text) == nil, "\(text)")
            let signed = LeaseToken.mint(leaseID: id, rootKey: root).attenuated(withText: text)
            #expect(signed.verified(rootKey: root) == nil, "\(text)")
        }
    }

    @Test func theShapeIsStrict() {
        let good = LeaseToken.mint(leaseID: id, rootKey: root).encoded
        for text in ["", "khl_", good.replacingOccurrences(of: "khl_", with: "khx_"), good + "=", good + ".",
                     String(good.dropLast(2)), "khl_" + String(repeating: "A.", count: 40) + "AA"] {
            #expect(LeaseToken(parsing: text) == nil, "\(text)")
        }
    }

    @Test func hostsAndPathsMatchWholeLabelsAndSegments() {
        #expect(LeaseRules.host("api.example.com", matches: "api.example.com"))
        #expect(LeaseRules.host("a.b.example.com", matches: "*.example.com"))
        #expect(!LeaseRules.host("example.com", matches: "*.example.com"))
        #expect(!LeaseRules.host("evilexample.com", matches: "*.example.com"))
        #expect(!LeaseRules.host("api.example.com.evil.net", matches: "api.example.com"))
        #expect(LeaseRules.path("/v1/charges", isUnder: "/v1/charges"))
        #expect(LeaseRules.path("/v1/charges/ch_1", isUnder: "/v1/charges"))
        #expect(!LeaseRules.path("/v1/chargesX", isUnder: "/v1/charges"))
        #expect(LeaseRules.path("/anything", isUnder: "/"))
        // Exact hosts may be one label or an IPv4 address; a wildcard needs a DNS suffix of two labels and never
        // matches an address.
        #expect(LeaseCaveat(text: "host=localhost") == .host("localhost"))
        #expect(LeaseCaveat(text: "host=127.0.0.1") == .host("127.0.0.1"))
        #expect(LeaseCaveat(text: "host=*.com") == nil)
        #expect(LeaseCaveat(text: "host=*.0.0.1") == nil)
        #expect(!LeaseRules.host("10.0.0.1", matches: "*.example.com"))
    }

    func lease(revoked: Bool = false) -> CapabilityLease {
        CapabilityLease(
            id: id, orgID: UUID(), vaultID: UUID(), path: "stripe/key", principalKind: .agent, principalID: agent,
            scheme: "https", host: "*.example.com", port: nil, methods: ["GET", "POST"], pathPrefix: "/v1",
            injection: .header(name: "Authorization", template: "Bearer {{value}}"), maxUses: 3, uses: 0,
            expiresAt: Timestamp(milliseconds: 2_000_000), revokedAt: revoked ? Timestamp(milliseconds: 1) : nil,
            createdBy: UUID(), createdByType: .user, createdAt: Timestamp(milliseconds: 0))
    }

    let agent = UUID()

    func use(
        _ method: String = "POST", scheme: String = "https", host: String = "api.example.com",
        port: Int = 443, path: String = "/v1/charges", at ms: Int64 = 1_000_000, by principal: UUID? = nil
    ) -> CapabilityLease.Use {
        .init(
            principalKind: .agent, principalID: principal ?? agent, method: method, scheme: scheme, host: host,
            port: port, path: path, at: Timestamp(milliseconds: ms))
    }

    @Test func everyConditionOfTheLeaseAndOfEachCaveatMustHold() throws {
        let lease = lease()
        #expect(lease.refusal(of: use(), caveats: []) == nil)
        #expect(lease.refusal(of: use("DELETE"), caveats: []) != nil)
        #expect(lease.refusal(of: use(scheme: "http"), caveats: []) != nil)
        #expect(lease.refusal(of: use(host: "example.com"), caveats: []) != nil)
        #expect(lease.refusal(of: use(path: "/v2/charges"), caveats: []) != nil)
        #expect(lease.refusal(of: use(port: 8443), caveats: []) != nil)
        #expect(lease.refusal(of: use(by: UUID()), caveats: []) != nil)
        #expect(lease.goneReason(at: Timestamp(milliseconds: 1_999_999)) == nil)
        #expect(lease.goneReason(at: Timestamp(milliseconds: 2_000_000)) != nil)
        #expect(self.lease(revoked: true).goneReason(at: Timestamp(milliseconds: 1)) != nil)

        let token = LeaseToken.mint(leaseID: id, rootKey: root)
            .attenuated(with: .methods(["GET"])).attenuated(with: .pathPrefix("/v1/balance"))
            .attenuated(with: .host("api.example.com")).attenuated(with: .expires(Timestamp(milliseconds: 1_500_000)))
        let caveats = try #require(token.verified(rootKey: root))
        #expect(lease.refusal(of: use("GET", path: "/v1/balance"), caveats: caveats) == nil)
        #expect(lease.refusal(of: use("POST", path: "/v1/balance"), caveats: caveats) != nil)
        #expect(lease.refusal(of: use("GET", path: "/v1/charges"), caveats: caveats) != nil)
        #expect(lease.refusal(of: use("GET", host: "eu.example.com", path: "/v1/balance"), caveats: caveats) != nil)
        #expect(lease.refusal(of: use("GET", path: "/v1/balance", at: 1_500_000), caveats: caveats) != nil)
        // A caveat naming more than the lease allows grants nothing more.
        let wider = try #require(LeaseToken.mint(leaseID: id, rootKey: root)
            .attenuated(with: .methods(["DELETE", "POST"])).attenuated(with: .host("*.evil.net")).verified(rootKey: root))
        #expect(lease.refusal(of: use("DELETE"), caveats: wider) != nil)
        #expect(lease.refusal(of: use(host: "x.evil.net"), caveats: wider) != nil)
    }
}

import Crypto
import Foundation
import KeyholdCore
import Testing

@Suite struct AuditChainTests {
    static let chain = AuditChain(key: SymmetricKey(data: Data(0..<32)))
    static let org = UUID(uuidString: "00000000-0000-0000-0000-0000000000aa")!

    static func entry(_ action: String, actor: ActorType = .user, actorID: String = "u1", details: [String: JSONValue] = [:], ip: String? = "127.0.0.1") -> AuditEntry {
        AuditEntry(
            orgID: org, actorType: actor, actorID: actorID, action: action, resourceType: "secret",
            resourceID: "api-keys/openai", details: details, ipAddress: ip)
    }

    /// Two events whose hashes were computed independently (Python's hmac) over the same field encoding.
    static func vectorChain() -> [AuditEvent] {
        let first = chain.seal(
            entry("secret.write", details: ["vault_id": "v1", "version": 1]), after: nil,
            id: UUID(uuidString: "00000000-0000-0000-0000-000000000001")!, at: Timestamp(milliseconds: 1_795_000_000_000))
        let second = chain.seal(
            entry("secret.read", actor: .agent, actorID: "a1", details: ["outcome": "denied"], ip: nil),
            after: AuditHead(eventID: first.id, sequence: first.sequence, hash: first.integrityHash),
            id: UUID(uuidString: "00000000-0000-0000-0000-000000000002")!, at: Timestamp(milliseconds: 1_795_000_000_500))
        return [first, second]
    }

    static func head(of events: [AuditEvent]) -> AuditHead? {
        events.last.map { AuditHead(eventID: $0.id, sequence: $0.sequence, hash: $0.integrityHash) }
    }

    static func longChain(_ count: Int) -> [AuditEvent] {
        var events: [AuditEvent] = []
        for index in 0..<count {
            events.append(chain.seal(entry("secret.read", details: ["n": .number(Double(index))]), after: head(of: events)))
        }
        return events
    }

    @Test func matchesFixedVectors() {
        let events = Self.vectorChain()
        #expect(events[0].integrityHash == "b6637615aeb85cab5a61fc98bfc62c271fe5f12f4e9b52b8d0661327fcc1e2b0")
        #expect(events[1].integrityHash == "f51b5199c31f7fe98343c023a54ddc0b55d8e603ed930ec397a8d29e89cbde88")
        #expect(events[0].sequence == 1 && events[0].previousID == nil)
        #expect(events[1].sequence == 2 && events[1].previousID == events[0].id)
        #expect(Self.chain.verify(events, head: Self.head(of: events)).valid)
    }

    /// A window of the chain is verified from the event before it: the window's events must follow that anchor.
    @Test func aWindowIsVerifiedFromItsAnchor() {
        let events = Self.longChain(6)
        var window = ChainVerifier(chain: Self.chain, after: events[1])
        for event in events[2...] {
            let followed = window.check(event)
            #expect(followed)
        }
        window.finish(head: Self.head(of: events))
        #expect(window.result.valid && window.result.eventsVerified == 4 && window.result.eventsChecked == 4)

        // An event that does not follow the anchor (one was deleted between them) breaks the window at once.
        var gap = ChainVerifier(chain: Self.chain, after: events[1])
        let followed = gap.check(events[3])
        #expect(!followed)
        #expect(gap.result.brokenAt == events[3].id && gap.result.eventsVerified == 0)
    }

    @Test func anotherKeyCannotProduceTheChain() {
        let events = Self.vectorChain()
        let forger = AuditChain(key: SymmetricKey(size: .bits256))
        let result = forger.verify(events, head: Self.head(of: events))
        #expect(!result.valid && result.brokenAt == events[0].id)
    }

    @Test func findsAChangedField() {
        var events = Self.longChain(6)
        let original = events[3]
        let changed = AuditEntry(
            orgID: original.entry.orgID, actorType: original.entry.actorType, actorID: "someone-else",
            action: original.entry.action, resourceType: original.entry.resourceType,
            resourceID: original.entry.resourceID, details: original.entry.details, ipAddress: original.entry.ipAddress)
        events[3] = AuditEvent(
            id: original.id, sequence: original.sequence, entry: changed, createdAt: original.createdAt,
            previousID: original.previousID, integrityHash: original.integrityHash)
        let result = Self.chain.verify(events, head: Self.head(of: events))
        #expect(!result.valid)
        #expect(result.brokenAt == original.id)
        #expect(result.eventsVerified == 3)
    }

    @Test func findsAChangedTimestampOrHash() {
        var events = Self.longChain(4)
        let original = events[1]
        events[1] = AuditEvent(
            id: original.id, sequence: original.sequence, entry: original.entry,
            createdAt: Timestamp(milliseconds: original.createdAt.milliseconds + 1), previousID: original.previousID,
            integrityHash: original.integrityHash)
        #expect(Self.chain.verify(events, head: Self.head(of: events)).brokenAt == original.id)
    }

    @Test func findsADeletedEvent() {
        var events = Self.longChain(5)
        let next = events[3]
        events.remove(at: 2)
        let result = Self.chain.verify(events, head: Self.head(of: events))
        #expect(!result.valid && result.brokenAt == next.id)
    }

    @Test func findsReorderedEvents() {
        var events = Self.longChain(5)
        events.swapAt(1, 2)
        let result = Self.chain.verify(events, head: Self.head(of: events))
        #expect(!result.valid && result.brokenAt == events[1].id)
    }

    @Test func findsAnInsertedEvent() {
        var events = Self.longChain(4)
        let forged = AuditChain(key: SymmetricKey(size: .bits256)).seal(
            Self.entry("secret.delete"), after: Self.head(of: Array(events[0..<2])))
        events.insert(forged, at: 2)
        let result = Self.chain.verify(events, head: Self.head(of: events))
        #expect(!result.valid && result.brokenAt == forged.id)
    }

    @Test func findsATruncatedTail() {
        let events = Self.longChain(5)
        let head = Self.head(of: events)
        let result = Self.chain.verify(Array(events.dropLast(2)), head: head)
        #expect(!result.valid && result.brokenAt == events[4].id)
        #expect(result.eventsVerified == 3)
        #expect(!Self.chain.verify(events, head: nil).valid, "events without a head were inserted")
        #expect(Self.chain.verify([], head: nil).valid)
    }
}

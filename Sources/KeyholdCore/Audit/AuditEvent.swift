import Crypto
import Foundation

/// Who did something, as audit events record it.
public enum ActorType: String, Sendable, Codable {
    case user, agent, anonymous
    /// An operator's command on the server itself (`keyhold keys …`).
    case system
}

/// What a request wants recorded, before the storage transaction gives it a place in its org's chain.
/// `details` never holds a secret value, password, key or token: only ids, paths, versions, outcomes and reasons.
public struct AuditEntry: Sendable, Hashable {
    public let orgID: UUID
    public let actorType: ActorType
    public let actorID: String?
    public let action: String
    public let resourceType: String
    public let resourceID: String?
    public let details: [String: JSONValue]
    /// `details` as stored and as hashed, written once per entry (both the chain's MAC and the row need it).
    public let detailsJSON: String
    public let ipAddress: String?

    public init(
        orgID: UUID, actorType: ActorType, actorID: String?, action: String, resourceType: String,
        resourceID: String?, details: [String: JSONValue] = [:], ipAddress: String?
    ) {
        self.orgID = orgID
        self.actorType = actorType
        self.actorID = actorID
        self.action = action
        self.resourceType = resourceType
        self.resourceID = resourceID
        self.details = details
        self.detailsJSON = JSONValue.object(details).jsonString()
        self.ipAddress = ipAddress
    }

    /// Events that belong to no org (a failed login for an unknown email) go to this chain.
    public static let systemOrg = UUID(uuidString: "00000000-0000-0000-0000-000000000000")!
}

/// An event as stored: the entry, its place in the org's chain and its keyed hash.
public struct AuditEvent: Sendable, Hashable {
    public let id: UUID
    /// 1, 2, 3 … per org, without gaps.
    public let sequence: Int64
    public let entry: AuditEntry
    public let createdAt: Timestamp
    public let previousID: UUID?
    /// Hex HMAC-SHA256 over the previous event's hash and this event's fields.
    public let integrityHash: String

    public init(
        id: UUID, sequence: Int64, entry: AuditEntry, createdAt: Timestamp, previousID: UUID?, integrityHash: String
    ) {
        self.id = id
        self.sequence = sequence
        self.entry = entry
        self.createdAt = createdAt
        self.previousID = previousID
        self.integrityHash = integrityHash
    }
}

/// The head of an org's chain: the last event's id, sequence and hash.
public struct AuditHead: Sendable, Hashable {
    public let eventID: UUID
    public let sequence: Int64
    public let hash: String

    public init(eventID: UUID, sequence: Int64, hash: String) {
        self.eventID = eventID
        self.sequence = sequence
        self.hash = hash
    }
}

/// The keyed hash chain. The key lives in the keystore (sealed in storage), so someone who can edit the
/// database cannot recompute a valid chain after changing, deleting, inserting or reordering rows.
public struct AuditChain: Sendable {
    /// HMAC state with the key already absorbed; each hash starts from a copy (the key schedule showed up in
    /// profiles of the database writer).
    private let keyed: HMAC<SHA256>

    public static let algorithm = "HMAC-SHA256"

    public init(key: SymmetricKey) { keyed = HMAC<SHA256>(key: key) }

    /// Loads the chain key from storage (sealed by the keystore), creating it on first start.
    public static func load(system: any SystemStore, keystore: any Keystore) async throws -> AuditChain {
        AuditChain(key: try await keystore.serverKey("audit-hmac-key", in: system))
    }

    /// Places `entry` after `head` (nil for an org's first event).
    public func seal(_ entry: AuditEntry, after head: AuditHead?, id: UUID? = nil, at time: Timestamp = .now)
        -> AuditEvent
    {
        let sequence = (head?.sequence ?? 0) + 1
        let id = id ?? UUID(timeOrderedAt: time)
        return AuditEvent(
            id: id, sequence: sequence, entry: entry, createdAt: time, previousID: head?.eventID,
            integrityHash: hash(
                id: id, sequence: sequence, entry: entry, createdAt: time, previousID: head?.eventID,
                previousHash: head?.hash))
    }

    func hash(
        id: UUID, sequence: Int64, entry: AuditEntry, createdAt: Timestamp, previousID: UUID?, previousHash: String?
    ) -> String {
        // Each field is its UTF-8 length (4 bytes, big-endian) and bytes, or FF FF FF FF for none; all of them go
        // through the MAC in one call.
        var message: [UInt8] = []
        message.reserveCapacity(512)
        func field(_ text: String?) {
            guard let text else {
                message.append(contentsOf: [0xFF, 0xFF, 0xFF, 0xFF])
                return
            }
            let count = UInt32(text.utf8.count)
            message.append(contentsOf: [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)])
            message.append(contentsOf: text.utf8)
        }
        field("keyhold.audit.v1")
        field(previousHash)
        field(previousID?.wire)
        field(String(sequence))
        field(id.wire)
        field(entry.orgID.wire)
        field(entry.actorType.rawValue)
        field(entry.actorID)
        field(entry.action)
        field(entry.resourceType)
        field(entry.resourceID)
        field(entry.detailsJSON)
        field(entry.ipAddress)
        field(String(createdAt.milliseconds))
        var mac = keyed
        mac.update(data: message)
        return Data(mac.finalize()).hexString
    }

    /// Verifies a whole chain held in memory.
    public func verify(_ events: [AuditEvent], head: AuditHead?) -> ChainVerifier.Result {
        var verifier = ChainVerifier(chain: self)
        for event in events where !verifier.check(event) { return verifier.result }
        verifier.finish(head: head)
        return verifier.result
    }
}

/// Walks an org's events in sequence order, page by page, and stops at the first that does not follow from its
/// predecessor: a changed field, a deleted, inserted or reordered row, or a chain that ends before its recorded
/// head.
public struct ChainVerifier: Sendable {
    public struct Result: Sendable, Equatable {
        public var valid = true
        public var eventsChecked = 0
        public var eventsVerified = 0
        public var brokenAt: UUID?
        public var reason: String?
    }

    let chain: AuditChain
    public private(set) var result = Result()
    private var previous: AuditEvent?

    /// A verifier for the chain after `anchor` (nil: from its first event). The anchor is taken as given: the events
    /// after it must follow it; whether it follows its own predecessors is a verification of an earlier window.
    public init(chain: AuditChain, after anchor: AuditEvent? = nil) {
        self.chain = chain
        previous = anchor
    }

    /// Checks the next event; false once the chain is found broken.
    public mutating func check(_ event: AuditEvent) -> Bool {
        guard result.valid else { return false }
        result.eventsChecked += 1
        let expectedSequence = (previous?.sequence ?? 0) + 1
        let recomputed = chain.hash(
            id: event.id, sequence: event.sequence, entry: event.entry, createdAt: event.createdAt,
            previousID: event.previousID, previousHash: previous?.integrityHash)
        let reason: String? =
            if event.sequence != expectedSequence {
                "sequence \(event.sequence) where \(expectedSequence) was expected: an event was deleted, inserted or moved"
            } else if event.previousID != previous?.id {
                "prev_event_id does not name the event before it"
            } else if !CredentialHasher.constantTimeEqual(Data(event.integrityHash.utf8), Data(recomputed.utf8)) {
                "integrity_hash does not match the event's fields"
            } else {
                nil
            }
        if let reason {
            result.valid = false
            result.brokenAt = event.id
            result.reason = reason
            return false
        }
        result.eventsVerified += 1
        previous = event
        return true
    }

    /// After the last page: the chain must end exactly at the recorded head.
    public mutating func finish(head: AuditHead?) {
        guard result.valid else { return }
        if head?.eventID != previous?.id || head?.hash != previous?.integrityHash {
            result.valid = false
            result.brokenAt = head?.eventID ?? previous?.id
            result.reason = "the chain does not end at its recorded head: events were deleted from or added to its end"
        }
    }
}

/// An entry and the chain that will seal it inside the storage transaction.
public struct AuditRecord: Sendable {
    public let entry: AuditEntry
    public let chain: AuditChain

    public init(_ entry: AuditEntry, chain: AuditChain) {
        self.entry = entry
        self.chain = chain
    }
}

/// Filters of `GET /v1/audit/events`.
public struct AuditFilter: Sendable {
    public var action: String?
    public var actorID: String?
    public var resourceID: String?
    public var from: Timestamp?
    public var to: Timestamp?
    public var limit: Int
    public var offset: Int

    public init(
        action: String? = nil, actorID: String? = nil, resourceID: String? = nil, from: Timestamp? = nil,
        to: Timestamp? = nil, limit: Int = 100, offset: Int = 0
    ) {
        self.action = action
        self.actorID = actorID
        self.resourceID = resourceID
        self.from = from
        self.to = to
        self.limit = limit
        self.offset = offset
    }
}

extension AuditRecord {
    /// The same record with more details (facts only the storage transaction knows, such as a version number).
    public func adding(_ details: [String: JSONValue]) -> AuditRecord {
        let entry = self.entry
        return AuditRecord(
            AuditEntry(
                orgID: entry.orgID, actorType: entry.actorType, actorID: entry.actorID, action: entry.action,
                resourceType: entry.resourceType, resourceID: entry.resourceID,
                details: entry.details.merging(details) { _, new in new }, ipAddress: entry.ipAddress),
            chain: chain)
    }
}

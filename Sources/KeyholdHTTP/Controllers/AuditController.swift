import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/audit`: the org's events and the verification of their keyed hash chain.
struct AuditController {
    let audit: AuditLog
    let publicURL: String

    /// A date-time query parameter.
    static func time(_ query: Parameters, _ name: String) throws -> Timestamp? {
        guard let text = query.get(name) else { return nil }
        guard let time = Timestamp(iso8601: text) else { throw KeyholdError.badRequest("\(name) must be an ISO 8601 date-time") }
        return time
    }

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.get("/v1/audit/events") { request, context in
            let caller = try context.requireCaller()
            let query = request.uri.queryParameters
            func time(_ name: String) throws -> Timestamp? { try Self.time(query, name) }
            func integer(_ name: String, default value: Int) throws -> Int {
                guard let text = query.get(name) else { return value }
                guard let number = Int(text) else { throw KeyholdError.badRequest("\(name) must be an integer") }
                return number
            }
            let filter = AuditFilter(
                action: query.get("action"), actorID: query.get("actor_id")?.lowercased(),
                resourceID: query.get("resource_id"), from: try time("from"), to: try time("to"),
                limit: try integer("limit", default: 100), offset: try integer("offset", default: 0))
            let events = try await audit.events(for: caller.principal, filter: filter)
            return try JSONResponse.make(AuditEventListResponse(events: events.map(AuditEventResponse.init), count: events.count))
        }
        router.get("/v1/audit/verify") { request, context in
            let caller = try context.requireCaller()
            let query = request.uri.queryParameters
            let limitText = query.get("limit") ?? "1000"
            guard let limit = Int(limitText) else { throw KeyholdError.badRequest("limit must be an integer") }
            let result = try await audit.verifyRecordingFailure(
                by: caller, limit: limit, from: try Self.time(query, "from"), to: try Self.time(query, "to"))
            return try JSONResponse.make(AuditVerifyResponse(result, documentation: publicURL + "/openapi.json"))
        }
    }
}

struct AuditEventResponse: Encodable {
    let id: String
    let org_id: String
    let sequence: Int64
    let actor_type: String
    let actor_id: String?
    let action: String
    let resource_type: String
    let resource_id: String?
    let details: [String: JSONValue]
    let ip_address: String?
    let created_at: Timestamp
    /// The SDK's name for `created_at`.
    let timestamp: Timestamp
    let prev_event_id: String?
    let integrity_hash: String

    init(_ event: AuditEvent) {
        id = event.id.wire
        org_id = event.entry.orgID.wire
        sequence = event.sequence
        actor_type = event.entry.actorType.rawValue
        actor_id = event.entry.actorID
        action = event.entry.action
        resource_type = event.entry.resourceType
        resource_id = event.entry.resourceID
        details = event.entry.details
        ip_address = event.entry.ipAddress
        created_at = event.createdAt
        timestamp = event.createdAt
        prev_event_id = event.previousID?.wire
        integrity_hash = event.integrityHash
    }
}

struct AuditEventListResponse: Encodable {
    let events: [AuditEventResponse]
    let count: Int
}

struct AuditVerifyResponse: Encodable {
    struct Scheme: Encodable {
        let algorithm = AuditChain.algorithm
        let chain_structure = "per-org linear chain: each event's HMAC covers the previous event's hash and its own fields"
        let hash_field = "integrity_hash"
        let link_field = "prev_event_id"
        let documentation: String
    }

    let chain_valid: Bool
    let events_verified: Int
    let events_checked: Int
    let broken_at_event_id: String?
    let reason: String?
    let scheme: Scheme

    init(_ result: ChainVerifier.Result, documentation: String) {
        scheme = Scheme(documentation: documentation)
        chain_valid = result.valid
        events_verified = result.eventsVerified
        events_checked = result.eventsChecked
        broken_at_event_id = result.brokenAt?.wire
        reason = result.reason
    }

    enum CodingKeys: String, CodingKey {
        case chain_valid, events_verified, events_checked, broken_at_event_id, reason, scheme
    }

    /// `broken_at_event_id` and `reason` are always present (null when the chain is valid).
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(chain_valid, forKey: .chain_valid)
        try container.encode(events_verified, forKey: .events_verified)
        try container.encode(events_checked, forKey: .events_checked)
        try container.encode(broken_at_event_id, forKey: .broken_at_event_id)
        try container.encode(reason, forKey: .reason)
        try container.encode(scheme, forKey: .scheme)
    }
}

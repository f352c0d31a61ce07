import Foundation

/// Builds audit records for the services and answers the audit API.
public struct AuditLog: Sendable {
    let store: any AuditStore
    public let chain: AuditChain

    public init(store: any AuditStore, chain: AuditChain) {
        self.store = store
        self.chain = chain
    }

    /// A record of something `caller` did (with the transport, when the request came through MCP).
    public func record(
        _ caller: Caller, _ action: String, _ resourceType: String, _ resourceID: String?,
        _ details: [String: JSONValue] = [:]
    ) -> AuditRecord {
        var details = details
        if let transport = caller.context.transport { details["transport"] = .string(transport) }
        return record(
            org: caller.principal.orgID, actor: caller.principal, ip: caller.context.clientIP, action, resourceType,
            resourceID, details)
    }

    /// A record for an org, by a principal or by nobody known (`actor` nil).
    public func record(
        org: UUID, actor: Principal?, ip: IPAddress?, _ action: String, _ resourceType: String, _ resourceID: String?,
        _ details: [String: JSONValue] = [:]
    ) -> AuditRecord {
        AuditRecord(
            AuditEntry(
                orgID: org, actorType: actor.map { $0.kind == .user ? .user : .agent } ?? .anonymous,
                actorID: actor?.id.wire, action: action, resourceType: resourceType,
                resourceID: resourceID, details: details, ipAddress: ip?.description),
            chain: chain)
    }

    /// Runs `body`; a refusal (403) it throws is recorded as the attempted action's event before it is returned, so
    /// every refused attempt to change something leaves a trace.
    public func recordingDenial<T>(
        _ caller: Caller, _ action: String, _ resourceType: String, _ resourceID: String?,
        _ body: () async throws -> T
    ) async throws -> T {
        do {
            return try await body()
        } catch let error as KeyholdError where error.code == .forbidden {
            try await append(
                record(caller, action, resourceType, resourceID, ["outcome": "denied", "reason": .string(error.detail)]))
            throw error
        }
    }

    /// Appends an event that records no change (a denial, a failed or successful authentication).
    public func append(_ record: AuditRecord) async throws {
        try await store.appendAudit(record)
    }

    /// Offset paging skips rows one by one, so it is bounded; older events are reached with `to`.
    public static let maxOffset = 10_000

    /// Owners and admins read every event of their org; anyone else the events they caused.
    public func events(for caller: Principal, filter: AuditFilter) async throws -> [AuditEvent] {
        guard (1...1000).contains(filter.limit), (0...Self.maxOffset).contains(filter.offset) else {
            throw KeyholdError.badRequest(
                "limit must be between 1 and 1000 and offset between 0 and \(Self.maxOffset); narrow older pages with to")
        }
        // The log names every path and share of the org: a credential capped by scopes does not read it.
        guard !caller.isScoped else { throw KeyholdError.forbidden("A scoped API key cannot read the audit log") }
        var filter = filter
        if !caller.isOrgAdmin {
            let me = caller.id.wire
            if let asked = filter.actorID, asked != me { return [] }
            filter.actorID = me
        }
        return try await store.auditEvents(orgID: caller.orgID, filter: filter)
    }

    /// `verify`, and a broken chain recorded as an `audit.verify_failed` event (which the org's webhooks subscribed to
    /// it receive), naming the org, the first event found broken and why. It goes to the server's own chain
    /// (`AuditEntry.systemOrg`), not the org's: an event appended to a broken chain would build on what failed (and
    /// a head that no longer matches refuses it). Recording it never changes the answer: a verification that cannot
    /// write its event still reports the broken chain.
    public func verifyRecordingFailure(by caller: Caller, limit: Int, from: Timestamp? = nil, to: Timestamp? = nil)
        async throws -> ChainVerifier.Result
    {
        let result = try await verify(for: caller.principal, limit: limit, from: from, to: to)
        if !result.valid {
            var details: [String: JSONValue] = [
                "org_id": .string(caller.principal.orgID.wire), "reason": .string(result.reason ?? ""),
                "events_checked": .number(Double(result.eventsChecked)),
            ]
            if let transport = caller.context.transport { details["transport"] = .string(transport) }
            try? await append(
                record(
                    org: AuditEntry.systemOrg, actor: caller.principal, ip: caller.context.clientIP, "audit.verify_failed",
                    "audit_event", result.brokenAt?.wire, details))
        }
        return result
    }

    /// Verifies up to `limit` events of the caller's org chain, from its first event, or (with `from`) from the first
    /// event written at or after `from`, anchored on the event before it; with `to`, the events written after `to` are
    /// left out, and so is the check that the chain ends at its recorded head.
    public func verify(for caller: Principal, limit: Int, from: Timestamp? = nil, to: Timestamp? = nil) async throws
        -> ChainVerifier.Result
    {
        guard caller.isOrgAdmin, !caller.isScoped else {
            throw KeyholdError.forbidden("Only owners and admins verify the audit chain, with an unscoped credential")
        }
        guard (1...10_000).contains(limit) else { throw KeyholdError.badRequest("limit must be between 1 and 10000") }
        if let from, let to, to < from { throw KeyholdError.badRequest("to must not be before from") }
        let head = try await store.auditHead(orgID: caller.orgID)
        var anchor: AuditEvent?
        if let from {
            anchor = try await store.auditEvents(
                orgID: caller.orgID, filter: AuditFilter(to: Timestamp(milliseconds: from.milliseconds - 1), limit: 1)
            ).first
        }
        var verifier = ChainVerifier(chain: chain, after: anchor)
        var after = anchor?.sequence ?? 0
        var remaining = limit
        while remaining > 0 {
            let requested = min(1000, remaining)
            let page = try await store.auditChain(orgID: caller.orgID, afterSequence: after, limit: requested)
            for event in page {
                if let to, event.createdAt > to { return verifier.result }
                if !verifier.check(event) { return verifier.result }
            }
            remaining -= page.count
            guard page.count == requested, let last = page.last else {
                verifier.finish(head: head)
                return verifier.result
            }
            after = last.sequence
        }
        // The limit was reached: only a chain that ends here can be checked against its head.
        if (head?.sequence ?? 0) <= after { verifier.finish(head: head) }
        return verifier.result
    }
}

import Foundation
import Synchronization

/// Refusals that anyone can cause without a credential: a bad bearer token, an unknown `1ck_` or `ocv_` key, refresh
/// token or email (system chain), a deactivated agent's key, and a share link opened without what it needs (that
/// org's chain). One durable, chained event for each would let anyone make the server write and fsync at request
/// rate, so they are counted in memory per org, client address, action, method and resource, and each count is
/// written as one event (`count`, `first_at`, `last_at`) when its interval ends and at shutdown, the events of one
/// write committed together. A crash loses at most one interval of these counts. Refusals of a caller who holds a
/// valid credential (a wrong password for a known account included) are still written one by one.
public final class FailedAuthentications: Sendable {
    struct Key: Hashable {
        let org: UUID
        let address: IPAddress?
        let action: String
        let method: String
        let reason: String?
        let resourceType: String
        let resourceID: String?
    }

    struct Tally {
        var count: Int
        var first: Timestamp
        var last: Timestamp
    }

    /// Distinct tallies kept between two writes; past it, new addresses share a tally without an address, so a
    /// flood from many addresses costs bounded memory and a bounded number of events per interval.
    static let maximumKeys = 1_000

    public let interval: Duration
    private let audit: AuditLog
    private let pending = Mutex<[Key: Tally]>([:])

    public init(audit: AuditLog, interval: Duration) {
        self.audit = audit
        self.interval = interval
    }

    public func record(
        org: UUID = AuditEntry.systemOrg, action: String = "auth.failure", method: String, resourceType: String,
        resourceID: String? = nil, reason: String? = nil, ip: IPAddress?, now: Timestamp = .now
    ) {
        pending.withLock { pending in
            var key = Key(
                org: org, address: ip, action: action, method: method, reason: reason, resourceType: resourceType,
                resourceID: resourceID)
            if pending[key] == nil, pending.count >= Self.maximumKeys {
                key = Key(
                    org: org, address: nil, action: action, method: method, reason: reason, resourceType: resourceType,
                    resourceID: resourceID)
            }
            pending[key, default: Tally(count: 0, first: now, last: now)].count += 1
            pending[key]?.last = now
        }
    }

    /// Counts not yet written (for tests and shutdown).
    public var pendingCount: Int { pending.withLock { $0.values.reduce(0) { $0 + $1.count } } }

    /// Writes every pending count as one event; the events go to storage together (SQLite commits them as one
    /// group). A count that cannot be written now is kept for the next write.
    public func flush() async {
        let taken = pending.withLock { pending in
            defer { pending = [:] }
            return pending
        }
        let failed = await withTaskGroup(of: (Key, Tally)?.self) { group in
            for (key, tally) in taken {
                var details: [String: JSONValue] = [
                    "method": .string(key.method), "outcome": "denied", "count": .number(Double(tally.count)),
                    "first_at": .string(tally.first.iso8601), "last_at": .string(tally.last.iso8601),
                ]
                if let reason = key.reason { details["reason"] = .string(reason) }
                let record = audit.record(
                    org: key.org, actor: nil, ip: key.address, key.action, key.resourceType, key.resourceID, details)
                group.addTask {
                    do {
                        try await self.audit.append(record)
                        return nil
                    } catch {
                        return (key, tally)
                    }
                }
            }
            return await group.reduce(into: [(Key, Tally)]()) { if let item = $1 { $0.append(item) } }
        }
        pending.withLock { pending in
            for (key, tally) in failed {
                var merged = pending[key] ?? Tally(count: 0, first: tally.first, last: tally.last)
                merged.count += tally.count
                merged.first = min(merged.first, tally.first)
                merged.last = max(merged.last, tally.last)
                pending[key] = merged
            }
        }
    }

    /// Writes the counts every `interval` until cancelled.
    public func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            await flush()
        }
    }
}

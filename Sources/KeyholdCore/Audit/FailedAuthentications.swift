import Foundation
import Synchronization

/// Failed authentications that name no org: a bad bearer token, an unknown `1ck_` or `ocv_` key, an unknown refresh
/// token or email. One durable, chained event for each would let anyone without a credential make the server write
/// and fsync at request rate, so they are counted in memory per client address, method and resource type, and each
/// count is written as one `auth.failure` event of the system chain (`count`, `first_at`, `last_at`) when its
/// interval ends and at shutdown. A crash loses at most one interval of these counts. Failures that name an org's
/// user or agent (a wrong password, a deactivated agent) are still written, one event each, before the 401.
public final class FailedAuthentications: Sendable {
    struct Key: Hashable {
        let address: IPAddress?
        let method: String
        let resourceType: String
    }

    struct Tally {
        var count: Int
        var first: Timestamp
        var last: Timestamp
    }

    /// Distinct (address, method) pairs kept between two writes; past it, new addresses share one tally without
    /// an address, so a flood from many addresses costs bounded memory and a bounded number of events.
    static let maximumKeys = 10_000

    public let interval: Duration
    private let audit: AuditLog
    private let pending = Mutex<[Key: Tally]>([:])

    public init(audit: AuditLog, interval: Duration) {
        self.audit = audit
        self.interval = interval
    }

    public func record(method: String, resourceType: String, ip: IPAddress?, now: Timestamp = .now) {
        pending.withLock { pending in
            var key = Key(address: ip, method: method, resourceType: resourceType)
            if pending[key] == nil, pending.count >= Self.maximumKeys {
                key = Key(address: nil, method: method, resourceType: resourceType)
            }
            pending[key, default: Tally(count: 0, first: now, last: now)].count += 1
            pending[key]?.last = now
        }
    }

    /// Counts not yet written (for tests and shutdown).
    public var pendingCount: Int { pending.withLock { $0.values.reduce(0) { $0 + $1.count } } }

    /// Writes every pending count as one event. A count that cannot be written now is kept for the next write.
    public func flush() async {
        let taken = pending.withLock { pending in
            defer { pending = [:] }
            return pending
        }
        for (key, tally) in taken {
            let record = audit.record(
                org: AuditEntry.systemOrg, actor: nil, ip: key.address, "auth.failure", key.resourceType, nil,
                [
                    "method": .string(key.method), "outcome": "denied", "count": .number(Double(tally.count)),
                    "first_at": .string(tally.first.iso8601), "last_at": .string(tally.last.iso8601),
                ])
            do {
                try await audit.append(record)
            } catch {
                pending.withLock { pending in
                    var merged = pending[key] ?? Tally(count: 0, first: tally.first, last: tally.last)
                    merged.count += tally.count
                    merged.first = min(merged.first, tally.first)
                    merged.last = max(merged.last, tally.last)
                    pending[key] = merged
                }
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

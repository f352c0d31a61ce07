import Foundation
import Synchronization

/// A token bucket per key (a client address): `rate` requests per second on average, bursts up to `burst`.
public final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var last: ContinuousClock.Instant
    }

    public let rate: Double
    public let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])

    public init(rate: Double, burst: Double) {
        precondition(rate > 0 && burst >= 1)
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token for `key`; when none is left, returns how long until one is.
    public func take(_ key: String, now: ContinuousClock.Instant = .now) -> Duration? {
        buckets.withLock { buckets in
            if buckets.count > 100_000 { prune(&buckets, now: now) }
            var bucket = buckets[key] ?? Bucket(tokens: burst, last: now)
            let elapsed = now - bucket.last
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + seconds * rate)
            bucket.last = now
            defer { buckets[key] = bucket }
            guard bucket.tokens >= 1 else { return .seconds((1 - bucket.tokens) / rate) }
            bucket.tokens -= 1
            return nil
        }
    }

    /// Forgets clients whose bucket has refilled: they are indistinguishable from new ones.
    private func prune(_ buckets: inout [String: Bucket], now: ContinuousClock.Instant) {
        let refill = Duration.seconds(burst / rate)
        buckets = buckets.filter { now - $0.value.last < refill }
    }
}

/// Slows password guessing without locking the real user out for good. Per account: after 5 failures in a row,
/// each further attempt must wait 2^(n−5) seconds after the last failure (capped at 15 minutes); a success, or
/// 15 minutes without failures, clears the count. Per client address: more than 50 failures in 10 minutes refuse
/// further attempts from it until the oldest of them is 10 minutes old. Counts are kept in memory per node, and
/// entries that no longer hold anything back are pruned as the tables grow, so neither table grows without bound.
public final class LoginThrottle: Sendable {
    struct Account {
        var failures: Int
        var last: ContinuousClock.Instant
    }

    /// A table pruned of expired entries whenever it has doubled since the last pruning (amortised O(1)).
    struct Table<Value> {
        var entries: [String: Value] = [:]
        var pruneAt = Table.minimumPruneSize
        static var minimumPruneSize: Int { 1024 }

        mutating func pruneIfDue(keeping isLive: (Value) -> Bool) {
            guard entries.count >= pruneAt else { return }
            entries = entries.filter { isLive($0.value) }
            pruneAt = max(Self.minimumPruneSize, entries.count * 2)
        }
    }

    static let freeFailures = 5
    static let maximumDelay = Duration.seconds(900)
    static let forget = Duration.seconds(900)
    static let addressWindow = Duration.seconds(600)
    static let addressLimit = 50

    private let accounts = Mutex(Table<Account>())
    private let addresses = Mutex(Table<[ContinuousClock.Instant]>())

    public init() {}

    /// Entries held in memory (accounts, addresses).
    public var tableSizes: (accounts: Int, addresses: Int) {
        (accounts.withLock { $0.entries.count }, addresses.withLock { $0.entries.count })
    }

    /// Reserves an attempt: throws 429 when this account or address must wait, and otherwise counts the attempt as
    /// a failure until `succeeded` clears it. Checking and counting are one step, so concurrent guesses cannot
    /// all pass the check before any of them is counted. Without an account only the address is throttled.
    public func attempt(account: String?, address: String?, now: ContinuousClock.Instant = .now) throws {
        if let address {
            // Reserve a slot in the address's window in the same step as the check; a success gives it back.
            let wait = addresses.withLock { table -> Duration? in
                table.pruneIfDue { $0.last.map { now - $0 < Self.addressWindow } ?? false }
                var times = table.entries[address, default: []].filter { now - $0 < Self.addressWindow }
                if times.count >= Self.addressLimit, let oldest = times.first { return oldest + Self.addressWindow - now }
                times.append(now)
                table.entries[address] = times
                return nil
            }
            if let wait { throw Self.tooMany(wait) }
        }
        guard let account else { return }
        let wait = accounts.withLock { table -> Duration? in
            table.pruneIfDue { now - $0.last < Self.forget }
            var entry = table.entries[account] ?? Account(failures: 0, last: now)
            if now - entry.last >= Self.forget { entry.failures = 0 }
            if entry.failures >= Self.freeFailures {
                let ready = entry.last + min(Self.maximumDelay, .seconds(1 << min(entry.failures - Self.freeFailures, 10)))
                if ready > now { return ready - now }
            }
            entry.failures += 1
            entry.last = now
            table.entries[account] = entry
            return nil
        }
        if let wait {
            if let address { release(address) }
            throw Self.tooMany(wait)
        }
    }

    /// A successful attempt: clears the account's failures and gives back the address slot `attempt` reserved.
    public func succeeded(account: String?, address: String?) {
        if let account { _ = accounts.withLock { $0.entries.removeValue(forKey: account) } }
        if let address { release(address) }
    }

    private func release(_ address: String) {
        addresses.withLock { table in
            guard var times = table.entries[address], !times.isEmpty else { return }
            times.removeLast()
            table.entries[address] = times.isEmpty ? nil : times
        }
    }

    static func tooMany(_ wait: Duration) -> KeyholdError {
        let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
        return KeyholdError(.tooManyRequests, "Too many failed attempts; try again in \(seconds) seconds", retryAfter: seconds)
    }
}

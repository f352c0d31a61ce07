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
/// further attempts from it until the oldest of them is 10 minutes old. Counts are kept in memory per node.
public final class LoginThrottle: Sendable {
    struct Account {
        var failures: Int
        var last: ContinuousClock.Instant
    }

    static let freeFailures = 5
    static let maximumDelay = Duration.seconds(900)
    static let forget = Duration.seconds(900)
    static let addressWindow = Duration.seconds(600)
    static let addressLimit = 50

    private let accounts = Mutex<[String: Account]>([:])
    private let addresses = Mutex<[String: [ContinuousClock.Instant]]>([:])

    public init() {}

    /// Reserves an attempt: throws 429 when this account or address must wait, and otherwise counts the attempt as
    /// a failure until `recordSuccess` clears it. Checking and counting are one step, so concurrent guesses cannot
    /// all pass the check before any of them is counted.
    public func attempt(account: String, address: String?, now: ContinuousClock.Instant = .now) throws {
        if let address {
            // Reserve a slot in the address's window in the same step as the check; a success gives it back.
            let wait = addresses.withLock { addresses -> Duration? in
                var times = addresses[address, default: []].filter { now - $0 < Self.addressWindow }
                if times.count >= Self.addressLimit, let oldest = times.first { return oldest + Self.addressWindow - now }
                times.append(now)
                addresses[address] = times
                return nil
            }
            if let wait { throw Self.tooMany(wait) }
        }
        let wait = accounts.withLock { accounts -> Duration? in
            var entry = accounts[account] ?? Account(failures: 0, last: now)
            if now - entry.last >= Self.forget { entry.failures = 0 }
            if entry.failures >= Self.freeFailures {
                let ready = entry.last + min(Self.maximumDelay, .seconds(1 << min(entry.failures - Self.freeFailures, 10)))
                if ready > now { return ready - now }
            }
            entry.failures += 1
            entry.last = now
            accounts[account] = entry
            return nil
        }
        if let wait {
            if let address { release(address) }
            throw Self.tooMany(wait)
        }
    }

    /// A successful attempt: clears the account's failures and gives back the address slot `attempt` reserved.
    public func succeeded(account: String, address: String?) {
        recordSuccess(account: account)
        if let address { release(address) }
    }

    private func release(_ address: String) {
        addresses.withLock { addresses in
            guard var times = addresses[address], !times.isEmpty else { return }
            times.removeLast()
            addresses[address] = times.isEmpty ? nil : times
        }
    }

    static func tooMany(_ wait: Duration) -> KeyholdError {
        let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
        return KeyholdError(.tooManyRequests, "Too many failed attempts; try again in \(seconds) seconds", retryAfter: seconds)
    }

    /// Throws 429 with `Retry-After` when this account or address must wait.
    public func check(account: String, address: String?, now: ContinuousClock.Instant = .now) throws {
        if let wait = accountWait(account, now: now) ?? address.flatMap({ addressWait($0, now: now) }) {
            let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
            throw KeyholdError(
                .tooManyRequests, "Too many failed attempts; try again in \(seconds) seconds", retryAfter: seconds)
        }
    }

    public func recordFailure(account: String, address: String?, now: ContinuousClock.Instant = .now) {
        accounts.withLock { accounts in
            if accounts.count > 100_000 { accounts = accounts.filter { now - $0.value.last < Self.forget } }
            var entry = accounts[account] ?? Account(failures: 0, last: now)
            if now - entry.last >= Self.forget { entry.failures = 0 }
            entry.failures += 1
            entry.last = now
            accounts[account] = entry
        }
        guard let address else { return }
        addresses.withLock { addresses in
            if addresses.count > 100_000 { addresses = addresses.filter { now - ($0.value.last ?? now) < Self.addressWindow } }
            var times = addresses[address, default: []].filter { now - $0 < Self.addressWindow }
            times.append(now)
            addresses[address] = Array(times.suffix(Self.addressLimit + 1))
        }
    }

    public func recordSuccess(account: String) {
        _ = accounts.withLock { $0.removeValue(forKey: account) }
    }

    private func accountWait(_ account: String, now: ContinuousClock.Instant) -> Duration? {
        accounts.withLock { accounts in
            guard let entry = accounts[account], entry.failures >= Self.freeFailures,
                now - entry.last < Self.forget
            else { return nil }
            let delay = min(Self.maximumDelay, .seconds(1 << min(entry.failures - Self.freeFailures, 10)))
            let ready = entry.last + delay
            return ready > now ? ready - now : nil
        }
    }

    private func addressWait(_ address: String, now: ContinuousClock.Instant) -> Duration? {
        addresses.withLock { addresses in
            let recent = (addresses[address] ?? []).filter { now - $0 < Self.addressWindow }
            guard recent.count >= Self.addressLimit, let oldest = recent.first else { return nil }
            return oldest + Self.addressWindow - now
        }
    }
}

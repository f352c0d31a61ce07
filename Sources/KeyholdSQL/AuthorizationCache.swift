import Foundation
import KeyholdCore
import Synchronization

/// A counter the backend moves once a commit may have changed what authorization reads (`AuthorizationCache`), and
/// before anyone learns of that commit.
public final class AuthorizationClock: Sendable {
    private let tick = Atomic<UInt64>(0)

    public init() {}

    public var now: UInt64 { tick.load(ordering: .acquiring) }

    public func advance() { tick.add(1, ordering: .acquiringAndReleasing) }
}

/// Authorization state in memory, exact: the token subjects, vaults with the caller's policies, and org IP rules that
/// every request reads, for a backend through which every change passes (SQLite). Each entry is tagged with the
/// clock read before its rows were; it serves only while the clock has not moved since. The backend moves the
/// clock after a commit that wrote any table these lookups read (and after another process committed), before the
/// commit's caller is answered, so a revocation holds on the very next request.
///
/// What a request was served is recorded in its `AuthorizationObservation`; each of its transactions checks, on the
/// writer's connection, that those rows are still what storage holds if the clock moved since (or an earlier
/// transaction of the same group changed authorization), and fails with `AuthorizationObservation.changed` if not.
/// A row that no longer verifies fails there as it would on a fresh read (503), so an edit made to the database
/// from outside is refused by the first request whose transaction follows it.
final class AuthorizationCache: Sendable {
    enum Key: Hashable, Sendable {
        case subject(PrincipalKind, UUID, tokenID: String)
        case vault(UUID, orgID: UUID, PrincipalKind, UUID)
        case ipRules(orgID: UUID)
    }

    /// A lookup's decoded answer and the rows it came from (compared at commit).
    struct Loaded<Value: Sendable>: Sendable {
        let value: Value
        let rows: [[SQLValue]]
    }

    private struct Entry {
        let tick: UInt64
        let value: any Sendable
        let rows: [[SQLValue]]
    }

    let clock: AuthorizationClock
    private let entries = Mutex<[Key: Entry]>([:])
    /// Past this many entries the cache starts again empty (one entry per live token, vault × caller, org).
    static let capacity = 10_000

    init(clock: AuthorizationClock) { self.clock = clock }

    /// The answer for `key`: from memory when current, otherwise from `load` (a plain read). Inside a request's
    /// observation it is recorded there; outside one, storage is always read and nothing is kept.
    func value<Value: Sendable>(_ key: Key, load: () async throws -> Loaded<Value>) async throws -> Value {
        guard let observation = AuthorizationObservation.current else { return try await load().value }
        let tick = clock.now
        if let entry = entries.withLock({ $0[key] }), entry.tick == tick, let value = entry.value as? Value {
            observation.record(.init(key: key, rows: entry.rows, tick: tick))
            return value
        }
        let loaded = try await load()
        entries.withLock {
            if $0.count >= Self.capacity { $0.removeAll(keepingCapacity: true) }
            $0[key] = Entry(tick: tick, value: loaded.value, rows: loaded.rows)
        }
        observation.record(.init(key: key, rows: loaded.rows, tick: tick))
        return loaded.value
    }
}

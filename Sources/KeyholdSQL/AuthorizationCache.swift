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

/// How a backend knows whether what authorization read may have changed.
public enum AuthorizationSource: Sendable {
    /// Every change passes through this process (SQLite): its writer moves the clock after such a commit, and each
    /// transaction of a request checks what the request was served (on the writer, where that costs no round trip).
    case clock(AuthorizationClock)
    /// Many nodes share the database (PostgreSQL): triggers set `authorization_epoch` to a new random value in the
    /// transaction of every such change, and each request reads it once, before its first lookup, in place of the
    /// lookups' own reads.
    case epoch
}

/// Authorization state in memory, exact: the token subjects, vaults with the caller's policies, and org IP rules that
/// every request reads. Each entry is tagged with the source's tick read before its rows were, and serves a request
/// only while the tick that request reads is the same.
///
/// - With a clock (SQLite), the writer moves it after a commit that wrote any table these lookups read (and after
///   another process committed), before the commit's caller is answered, so a revocation holds on the very next
///   request. What a request was served is recorded in its `AuthorizationObservation`; each of its transactions
///   checks, on the writer's connection, that those rows are still what storage holds if the clock moved since (or
///   an earlier transaction of the same group changed authorization), and fails with
///   `AuthorizationObservation.changed` if not. A row that no longer verifies then fails as it would on a fresh
///   read (503), so an edit made to the database from outside is refused by the first request whose transaction
///   follows it.
/// - With the epoch (PostgreSQL), a change committed on any node (or with psql) is in the epoch the next request
///   reads on every node, so that request reads storage afresh: one round trip per request instead of three.
final class AuthorizationCache: Sendable {
    enum Key: Hashable, Sendable {
        case subject(PrincipalKind, UUID, tokenID: String)
        case vault(UUID, orgID: UUID, PrincipalKind, UUID)
        case ipRules(orgID: UUID)

        /// Whether an answer with no rows is kept. Not for a vault: a caller names any id it likes, and a vault it
        /// cannot see must cost the same whether it exists, is another org's, or was asked for before (nor may
        /// made-up ids push everyone's entries out).
        var keepsAbsence: Bool {
            if case .vault = self { false } else { true }
        }
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

    let source: AuthorizationSource
    private let database: any SQLDatabase
    private let entries = Mutex<[Key: Entry]>([:])
    /// Past this many entries the cache starts again empty (one entry per live token, vault × caller, org).
    static let capacity = 10_000

    init(source: AuthorizationSource, database: any SQLDatabase) {
        self.source = source
        self.database = database
    }

    /// The tick a lookup of this request compares entries with: the clock's, or the epoch the request read first.
    private func tick(_ observation: AuthorizationObservation) async throws -> UInt64 {
        switch source {
        case .clock(let clock): return clock.now
        case .epoch:
            return try await observation.epoch {
                try await self.database.reading { db in
                    guard let row = try await db.first("SELECT epoch FROM authorization_epoch WHERE id = 1") else {
                        throw StoredDataError(table: "authorization_epoch", column: "epoch", problem: "missing")
                    }
                    return UInt64(bitPattern: try StoredFields(row, table: "authorization_epoch").int("epoch"))
                }
            }
        }
    }

    /// The answer for `key`: from memory when current, otherwise from `load` (a plain read). Inside a request's
    /// observation it is recorded there; outside one, storage is always read and nothing is kept.
    func value<Value: Sendable>(_ key: Key, load: () async throws -> Loaded<Value>) async throws -> Value {
        guard let observation = AuthorizationObservation.active else { return try await load().value }
        let tick = try await tick(observation)
        if let entry = entries.withLock({ $0[key] }), entry.tick == tick, let value = entry.value as? Value {
            observation.record(.init(key: key, rows: entry.rows, tick: tick))
            return value
        }
        let loaded = try await load()
        if !loaded.rows.isEmpty || key.keepsAbsence {
            entries.withLock {
                if $0.count >= Self.capacity { $0.removeAll(keepingCapacity: true) }
                $0[key] = Entry(tick: tick, value: loaded.value, rows: loaded.rows)
            }
        }
        observation.record(.init(key: key, rows: loaded.rows, tick: tick))
        return loaded.value
    }
}

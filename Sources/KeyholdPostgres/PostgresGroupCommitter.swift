import Foundation
import KeyholdCore
import KeyholdSQL
import Logging
import PostgresNIO
import Synchronization

/// Group commit on PostgreSQL, as the SQLite writer does it: the transactions that arrive while a group commits wait
/// for the next one, and each group is one PostgreSQL transaction on one pooled connection, each member in a
/// savepoint of its own (a member that throws rolls back alone). An org's audit chain head is locked once per group
/// and written once, just before COMMIT.
///
/// Why: every audited transaction locks its org's head row until it commits, so before this one org's transactions
/// ran one at a time, each holding the lock across its own commit and WAL flush (seen: 12 of 16 connections waiting
/// on that row, 385 audited reads/s). A group pays the lock and the flush once for all its members.
///
/// A member that PostgreSQL aborts as a deadlock victim or serialization failure (another node's group holding what
/// it needs) is rolled back to its savepoint and run again alone, after the group, as `alone` runs it.
final class PostgresGroupCommitter: Sendable {
    struct Member: Sendable {
        let work: @Sendable (any SQLConnection) async throws -> any Sendable
        let finish: @Sendable (Result<any Sendable, any Error>) -> Void
    }

    private struct Queue {
        var pending: [Member] = []
        var draining = false
    }

    private let queue = Mutex(Queue())
    private let client: PostgresClient
    private let logger: Logger
    /// The most members one group takes, so that one group's latency stays bounded.
    static let maximumGroup = 128

    init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Runs `body` in the next group; returns once that group has committed, or throws what `body` threw (after its
    /// savepoint was rolled back) or why the group did not commit.
    func run<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit(
                Member(
                    work: { try await body($0) },
                    finish: { result in
                        // The value is what `body` returned: a `T`.
                        continuation.resume(with: result.map { $0 as! T })
                    }))
        }
    }

    private func submit(_ member: Member) {
        let start = queue.withLock { queue -> Bool in
            queue.pending.append(member)
            guard !queue.draining else { return false }
            queue.draining = true
            return true
        }
        if start { Task { await self.drain() } }
    }

    /// Commits groups until nothing is pending.
    private func drain() async {
        while let group = nextGroup() { await commit(group) }
    }

    private func nextGroup() -> [Member]? {
        queue.withLock { queue in
            guard !queue.pending.isEmpty else {
                queue.draining = false
                return nil
            }
            let group = Array(queue.pending.prefix(Self.maximumGroup))
            queue.pending.removeFirst(group.count)
            return group
        }
    }

    private func commit(_ group: [Member]) async {
        let logger = self.logger
        let outcomes = Outcomes(count: group.count)
        do {
            try await client.withConnection { connection in
                let db = GroupConnection(db: DB(connection: connection, logger: logger))
                try await db.db.execute("BEGIN")
                do {
                    for (index, member) in group.enumerated() {
                        try await db.db.execute("SAVEPOINT keyhold")
                        let heads = db.heads.state
                        do {
                            let value = try await member.work(db)
                            try await db.db.execute("RELEASE SAVEPOINT keyhold")
                            outcomes.results[index] = .success(value)
                        } catch {
                            try await db.db.execute("ROLLBACK TO SAVEPOINT keyhold")
                            try await db.db.execute("RELEASE SAVEPOINT keyhold")
                            db.heads.state = heads
                            let cause = PostgresStorage.unwrap(error)
                            if PostgresDatabase.isRetryable(cause) {
                                outcomes.again.append(index)
                            } else {
                                outcomes.results[index] = .failure(PostgresStorage.translate(cause))
                            }
                        }
                    }
                    try await db.writeHeads()
                    try await db.db.execute("COMMIT")
                } catch {
                    try? await db.db.execute("ROLLBACK")
                    throw error
                }
            }
        } catch {
            // Nothing of the group committed: a cause another attempt may not meet again is retried member by
            // member; any other fails them all.
            let cause = PostgresStorage.unwrap(error)
            if PostgresDatabase.isRetryable(cause) {
                for member in group { await alone(member) }
            } else {
                let failure = PostgresStorage.translate(cause)
                for member in group { member.finish(.failure(failure)) }
            }
            return
        }
        for (index, member) in group.enumerated() {
            if let result = outcomes.results[index] { member.finish(result) }
        }
        for index in outcomes.again { await alone(group[index]) }
    }

    /// What each member of a group came to: filled by the connection's closure, which runs one member at a time,
    /// and read after it returned.
    private final class Outcomes: @unchecked Sendable {
        var results: [Result<any Sendable, any Error>?]
        /// Members to run again alone.
        var again: [Int] = []

        init(count: Int) { results = Array(repeating: nil, count: count) }
    }

    /// A member in a transaction of its own (with the deadlock retries of `PostgresDatabase.alone`).
    private func alone(_ member: Member) async {
        do {
            member.finish(.success(try await PostgresDatabase.alone(client: client, logger: logger, member.work)))
        } catch {
            member.finish(.failure(error))
        }
    }
}

/// The audit chain heads a group has locked, with the value each has reached in the group; written back once.
final class GroupAuditHeads: @unchecked Sendable {
    struct State {
        /// Locked in this group: the org's head (nil: the org has no event yet).
        var locked: [UUID: AuditHead?] = [:]
        var changed: Set<UUID> = []
    }

    var state = State()
}

/// A member's connection: the group's, with the org heads kept for the group (see `GroupAuditHeads`).
struct GroupConnection: SQLConnection {
    let db: DB
    let heads = GroupAuditHeads()

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [StoredRow] { try await db.query(sql, binds) }
    var forUpdate: String { db.forUpdate }
    func forUpdate(of alias: String) -> String { db.forUpdate(of: alias) }
    var forKeyShare: String { db.forKeyShare }
    func forUpdateSkipLocked(of alias: String) -> String { db.forUpdateSkipLocked(of: alias) }
    func lock(_ key: String) async throws { try await db.lock(key) }

    func lockAuditHead(orgID: UUID) async throws -> AuditHead? {
        if let head = heads.state.locked[orgID] { return head }
        let head = try await db.lockAuditHead(orgID: orgID)
        heads.state.locked[orgID] = .some(head)
        return head
    }

    func setAuditHead(orgID: UUID, to head: AuditHead) async throws {
        heads.state.locked[orgID] = .some(head)
        heads.state.changed.insert(orgID)
    }

    /// Writes every head the group moved (before its COMMIT).
    func writeHeads() async throws {
        for org in heads.state.changed.sorted(by: { $0.wire < $1.wire }) {
            guard let head = heads.state.locked[org] ?? nil else { continue }
            try await db.setAuditHead(orgID: org, to: head)
        }
    }
}

import CoreMetrics
import Foundation
import KeyholdCore
import KeyholdSQL
import NIOCore
import NIOPosix
import SQLiteNIO
import Synchronization

/// The single writer of an SQLite database: a thread of its own takes every transaction submitted since its last
/// group and runs them together, each in a savepoint, under one `BEGIN IMMEDIATE … COMMIT` (one fsync per group).
/// A dedicated thread rather than jobs on a pool: between two groups it only checks its queue, so a group that
/// arrived while the previous one committed starts at once (no task or thread-pool hand-off between groups).
///
/// Transaction bodies are async (the same code drives PostgreSQL's connections), so the thread is also a
/// `TaskExecutor`: a group runs as one task that prefers this executor, and since SQLite calls never suspend, the
/// whole group runs straight through on this thread, as one job.
final class GroupCommitter: TaskExecutor, @unchecked Sendable {
    typealias Work = @Sendable (SQLiteDB) async throws -> Void
    typealias Completion = @Sendable ((any Error)?) -> Void
    typealias Group = [(Work, Completion)]

    /// Guards `queue`, `jobs`, `groupRunning` and `stopped`; the writer thread waits on it when there is nothing to do.
    private let condition = NSCondition()
    private var queue: Group = []
    private var jobs: [UnownedJob] = []
    private var groupRunning = false
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)
    private let connection: SQLiteDB
    let clock = AuthorizationClock()
    /// Transactions per commit, and how long each commit takes (its audit events are written in it): through the
    /// process's metrics system (a no-op unless `--metrics` bootstrapped one).
    private let groupSizes = Recorder(label: "keyhold_sqlite_group_commit_transactions", aggregate: true)
    private let commitDurations = Timer(label: "keyhold_storage_commit_duration_seconds", dimensions: [("backend", "sqlite")])
    /// The most transactions one group takes, so one group's latency stays bounded.
    static let maximumGroup = 256

    init(connection: SQLiteDB) {
        self.connection = connection
        Thread { [self] in
            // Named from inside: a name given before start is not applied on Linux, which also keeps at most 15 bytes.
            Thread.current.name = "keyhold-writer"
            run()
        }.start()
    }

    func submit(_ work: @escaping Work, completion: @escaping Completion) {
        condition.lock()
        guard !stopped else {
            condition.unlock()
            completion(KeyholdError(.unavailable, "The database is closing"))
            return
        }
        queue.append((work, completion))
        condition.signal()
        condition.unlock()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the queued transactions finish, then ends the writer thread.
    func stop() async {
        guard markStopped() else { return }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.finished.wait()
                done.resume()
            }
        }
    }

    /// True the first time: the writer will end once its queue is empty.
    private func markStopped() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let first = !stopped
        stopped = true
        condition.signal()
        return first
    }

    private enum Next {
        case jobs([UnownedJob])
        case group(Group)
        case end
    }

    private func next() -> Next {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if !jobs.isEmpty {
                defer { jobs.removeAll(keepingCapacity: true) }
                return .jobs(jobs)
            }
            if !groupRunning, !queue.isEmpty {
                let group = Array(queue.prefix(Self.maximumGroup))
                queue.removeFirst(group.count)
                groupRunning = true
                return .group(group)
            }
            if stopped, !groupRunning, queue.isEmpty { return .end }
            condition.wait()
        }
    }

    private func run() {
        let executor = asUnownedTaskExecutor()
        while true {
            switch next() {
            case .jobs(let jobs):
                for job in jobs { job.runSynchronously(on: executor) }
            case .group(let group):
                let db = connection
                let (sizes, durations) = (groupSizes, commitDurations)
                Task(executorPreference: self) {
                    let start = ContinuousClock.now
                    let outcomes = await Self.commit(group.map(\.0), on: db, clock: self.clock)
                    durations.record(since: start)
                    sizes.record(group.count)
                    self.groupEnded()
                    for (index, (_, completion)) in group.enumerated() { completion(outcomes[index]) }
                }
            case .end:
                // Closed here, not when the last reference goes: whoever stopped the store may open the file next.
                connection.close()
                finished.signal()
                return
            }
        }
    }

    private func groupEnded() {
        condition.lock()
        groupRunning = false
        condition.unlock()
    }

    /// One transaction for the whole group; a body that throws is rolled back to its savepoint alone. (Statements
    /// go through the connection's prepared-statement cache: no SQL is parsed per transaction.)
    ///
    /// The authorization clock moves when another process has committed since the last group (seen at BEGIN, before
    /// any body runs), and after a group that wrote a table authorization reads (before any caller is answered).
    private static func commit(_ works: [Work], on db: SQLiteDB, clock: AuthorizationClock) async -> [(any Error)?] {
        var outcomes = [(any Error)?](repeating: nil, count: works.count)
        defer {
            if db.changedAuthorization {
                clock.advance()
                db.changedAuthorization = false
            }
        }
        do {
            try db.run("BEGIN IMMEDIATE")
            let version = try db.rows("PRAGMA data_version").first?.values.first
            guard case .integer(let number) = version else { throw StorageError.backend("no data_version") }
            if db.dataVersion != number {
                db.dataVersion = number
                clock.advance()
            }
            try db.auditHeads.begin(db)
        } catch {
            try? db.run("ROLLBACK")
            db.auditHeads.discard()
            return outcomes.map { _ in error }
        }
        for (index, work) in works.enumerated() {
            let heads = db.auditHeads
            do {
                try db.run("SAVEPOINT keyhold")
                do {
                    try await work(db)
                    try db.run("RELEASE keyhold")
                } catch {
                    try? db.run("ROLLBACK TO keyhold")
                    try? db.run("RELEASE keyhold")
                    db.auditHeads = heads
                    outcomes[index] = error
                }
            } catch {
                db.auditHeads = heads
                outcomes[index] = error
            }
        }
        do {
            do {
                try db.auditHeads.write(db)
            } catch {
                throw KeyholdError.auditUnavailable
            }
            try db.run("COMMIT")
        } catch {
            try? db.run("ROLLBACK")
            db.auditHeads.discard()
            return outcomes.map { $0 ?? error }
        }
        return outcomes
    }
}

/// Reader connections, one per job that needs one (at most the thread pool's size at once).
final class ReaderPool: Sendable {
    private let path: String
    private let idle = Mutex<[SQLiteDB]>([])

    init(path: String) { self.path = path }

    func take() throws -> SQLiteDB {
        if let db = idle.withLock({ $0.popLast() }) { return db }
        return try SQLiteDB(path: path)
    }

    func put(_ db: SQLiteDB) { idle.withLock { $0.append(db) } }

    func close() {
        idle.withLock {
            for db in $0 { db.close() }
            $0.removeAll()
        }
    }
}

/// The result of one transaction: set by its body, released to the caller only when the group has committed.
///
/// The waiting task is resumed on the event loop it submitted from (its connection's loop): resumed from the writer
/// thread it would go to whichever loop comes next, and its response would then cross to its connection's loop.
final class Outcome<T: Sendable>: Sendable {
    private struct State {
        var value: T?
        var done: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }

    private let state = Mutex(State())
    private let home: (any EventLoop)? = MultiThreadedEventLoopGroup.currentEventLoop

    func set(_ value: T) { state.withLock { $0.value = value } }

    func finish(_ error: (any Error)?) {
        let (waiter, result) = state.withLock { state -> (CheckedContinuation<T, any Error>?, Result<T, any Error>) in
            let result: Result<T, any Error> =
                if let error { .failure(error) } else if let value = state.value { .success(value) } else {
                    .failure(KeyholdError.internalError("A transaction finished without a result"))
                }
            state.done = result
            defer { state.waiter = nil }
            return (state.waiter, result)
        }
        guard let waiter else { return }
        if let home { home.execute { waiter.resume(with: result) } } else { waiter.resume(with: result) }
    }

    func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let done = state.withLock { state -> Result<T, any Error>? in
                if let done = state.done { return done }
                state.waiter = continuation
                return nil
            }
            if let done { continuation.resume(with: done) }
        }
    }
}

import Foundation
import KeyholdCore
import NIOPosix
import SQLiteNIO
import Synchronization

/// The single writer of an SQLite database: one task takes every transaction submitted since its last group and
/// runs them together, each in a savepoint, under one `BEGIN IMMEDIATE … COMMIT` (one fsync per group), as one job
/// on the storage's thread pool.
final class GroupCommitter: Sendable {
    typealias Work = @Sendable (SQLiteDB) throws -> Void
    typealias Completion = @Sendable ((any Error)?) -> Void
    typealias Group = [(Work, Completion)]

    private struct State {
        var queue: Group = []
        var waiting: CheckedContinuation<Group, Never>?
        var stopped = false
    }

    private let state = Mutex(State())
    private let connection: SQLiteDB
    private let threadPool: NIOThreadPool
    private let loop = Mutex<Task<Void, Never>?>(nil)
    /// The most transactions one group takes, so one group's latency stays bounded.
    static let maximumGroup = 256

    init(connection: SQLiteDB, threadPool: NIOThreadPool) {
        self.connection = connection
        self.threadPool = threadPool
        let task = Task { [self] in await run() }
        loop.withLock { $0 = task }
    }

    func submit(_ work: @escaping Work, completion: @escaping Completion) {
        enum Action {
            case queued
            case wake(CheckedContinuation<Group, Never>, Group)
            case refused
        }
        let action = state.withLock { state -> Action in
            guard !state.stopped else { return .refused }
            state.queue.append((work, completion))
            guard let waiting = state.waiting else { return .queued }
            state.waiting = nil
            return .wake(waiting, Self.take(&state.queue))
        }
        switch action {
        case .queued: break
        case .wake(let waiting, let group): waiting.resume(returning: group)
        case .refused: completion(KeyholdError(.unavailable, "The database is closing"))
        }
    }

    /// Lets the queued transactions finish, then ends the writer loop.
    func stop() async {
        let waiting = state.withLock { state -> CheckedContinuation<Group, Never>? in
            state.stopped = true
            defer { state.waiting = nil }
            return state.waiting
        }
        waiting?.resume(returning: [])
        await loop.withLock { $0 }?.value
    }

    private static func take(_ queue: inout Group) -> Group {
        let group = Array(queue.prefix(maximumGroup))
        queue.removeFirst(group.count)
        return group
    }

    private func next() async -> Group {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Group? in
                if !state.queue.isEmpty || state.stopped { return Self.take(&state.queue) }
                state.waiting = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func run() async {
        while true {
            let group = await next()
            if group.isEmpty {
                if state.withLock({ $0.stopped && $0.queue.isEmpty }) { return }
                continue
            }
            let connection = self.connection
            let works = group.map(\.0)
            let outcomes: [(any Error)?]
            do {
                outcomes = try await threadPool.runIfActive { Self.commit(works, on: connection) }
            } catch {
                outcomes = Array(repeating: error, count: group.count)
            }
            for (index, (_, completion)) in group.enumerated() { completion(outcomes[index]) }
        }
    }

    /// One transaction for the whole group; a body that throws is rolled back to its savepoint alone. (Statements
    /// go through the connection's prepared-statement cache: no SQL is parsed per transaction.)
    private static func commit(_ works: [Work], on db: SQLiteDB) -> [(any Error)?] {
        var outcomes = [(any Error)?](repeating: nil, count: works.count)
        do {
            try db.run("BEGIN IMMEDIATE")
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
                    try work(db)
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
                throw KeyholdError(.unavailable, "The audit log could not be written, so the request was not carried out")
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

    func close() { idle.withLock { $0.removeAll() } }
}

/// The result of one transaction: set by its body, released to the caller only when the group has committed.
final class Outcome<T: Sendable>: Sendable {
    private struct State {
        var value: T?
        var done: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }

    private let state = Mutex(State())

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
        waiter?.resume(with: result)
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

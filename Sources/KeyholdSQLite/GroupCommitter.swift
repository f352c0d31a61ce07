import Foundation
import KeyholdCore
import SQLiteNIO
import Synchronization

/// The single writer of an SQLite database: one task takes every transaction submitted since its last group and
/// runs them together, each in a savepoint, under one `BEGIN IMMEDIATE … COMMIT` (one fsync per group).
final class GroupCommitter: Sendable {
    typealias Work = @Sendable (SQLiteConnection) async throws -> Void
    typealias Completion = @Sendable ((any Error)?) -> Void

    private struct State {
        var queue: [(Work, Completion)] = []
        var waiting: CheckedContinuation<[(Work, Completion)], Never>?
        var stopped = false
    }

    private let state = Mutex(State())
    private let connection: SQLiteConnection
    private let loop = Mutex<Task<Void, Never>?>(nil)
    /// The most transactions one group takes, so one group's latency stays bounded.
    static let maximumGroup = 256

    init(connection: SQLiteConnection) {
        self.connection = connection
        let task = Task { [self] in await run() }
        loop.withLock { $0 = task }
    }

    func submit(_ work: @escaping Work, completion: @escaping Completion) {
        enum Action {
            case queued
            case wake(CheckedContinuation<[(Work, Completion)], Never>, [(Work, Completion)])
            case refused
        }
        let action = state.withLock { state -> Action in
            guard !state.stopped else { return .refused }
            state.queue.append((work, completion))
            guard let waiting = state.waiting else { return .queued }
            state.waiting = nil
            let group = Array(state.queue.prefix(Self.maximumGroup))
            state.queue.removeFirst(group.count)
            return .wake(waiting, group)
        }
        switch action {
        case .queued: break
        case .wake(let waiting, let group): waiting.resume(returning: group)
        case .refused: completion(KeyholdError(.unavailable, "The database is closing"))
        }
    }

    /// Lets the queued transactions finish, then ends the writer loop.
    func stop() async {
        let waiting = state.withLock { state -> CheckedContinuation<[(Work, Completion)], Never>? in
            state.stopped = true
            defer { state.waiting = nil }
            return state.waiting
        }
        waiting?.resume(returning: [])
        await loop.withLock { $0 }?.value
    }

    private func next() async -> [(Work, Completion)] {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [(Work, Completion)]? in
                if !state.queue.isEmpty || state.stopped {
                    let batch = Array(state.queue.prefix(Self.maximumGroup))
                    state.queue.removeFirst(batch.count)
                    return batch
                }
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
            await commit(group)
        }
    }

    private func commit(_ group: [(Work, Completion)]) async {
        var outcomes = [(any Error)?](repeating: nil, count: group.count)
        do {
            _ = try await connection.query("BEGIN IMMEDIATE", [])
        } catch {
            group.forEach { $0.1(error) }
            return
        }
        for (index, (work, _)) in group.enumerated() {
            do {
                _ = try await connection.query("SAVEPOINT keyhold", [])
                do {
                    try await work(connection)
                    _ = try await connection.query("RELEASE keyhold", [])
                } catch {
                    _ = try? await connection.query("ROLLBACK TO keyhold", [])
                    _ = try? await connection.query("RELEASE keyhold", [])
                    outcomes[index] = error
                }
            } catch {
                outcomes[index] = error
            }
        }
        do {
            _ = try await connection.query("COMMIT", [])
        } catch {
            _ = try? await connection.query("ROLLBACK", [])
            outcomes = outcomes.map { $0 ?? error }
        }
        for (index, (_, completion)) in group.enumerated() { completion(outcomes[index]) }
    }
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

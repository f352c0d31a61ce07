import Foundation
import Synchronization

/// What one request learned about authorization state (token subjects, vaults with policies, IP rules) from a
/// backend's in-memory copy, so that the request's transactions can check it is still true when they commit.
///
/// A backend serves its copy only to a request running inside an active observation (`active`); without one, it
/// reads storage. SQLite's transactions check the request's facts against storage; PostgreSQL records here the
/// epoch the request read first. The HTTP layer opens one per authenticated request and runs the request again (at
/// most twice) when a transaction finds that what it relied on changed before anything of it committed.
public final class AuthorizationObservation: Sendable {
    @TaskLocal public static var current: AuthorizationObservation?

    /// One fact served to the request: the backend's key for it, the stored rows it was decoded from, and the tick
    /// (SQLite's clock, PostgreSQL's epoch) it was served under.
    public struct Fact: Sendable {
        public let key: any Sendable
        public let rows: [[SQLValue]]
        public let tick: UInt64

        public init(key: any Sendable, rows: [[SQLValue]], tick: UInt64) {
            self.key = key
            self.rows = rows
            self.tick = tick
        }
    }

    private struct State {
        var facts: [Fact] = []
        var committed = false
        var epoch: UInt64?
        var ended = false
    }

    /// The observation of the request this task serves, while that request runs. A task the request started that
    /// outlives it (a background job) inherits the task-local but gets nil once the request has ended: it reads
    /// storage afresh and its transactions check nothing of the request's.
    public static var active: AuthorizationObservation? {
        guard let current, !current.state.withLock({ $0.ended }) else { return nil }
        return current
    }

    /// Called by whoever opened the observation once the request is answered.
    public func end() { state.withLock { $0.ended = true } }

    private let state = Mutex(State())

    public init() {}

    /// The backend's epoch as this request first read it (`read`, once); later lookups of the request compare with it.
    public func epoch(_ read: () async throws -> UInt64) async throws -> UInt64 {
        if let epoch = state.withLock({ $0.epoch }) { return epoch }
        let epoch = try await read()
        state.withLock { $0.epoch = epoch }
        return epoch
    }

    public func record(_ fact: Fact) { state.withLock { $0.facts.append(fact) } }

    public var facts: [Fact] { state.withLock { $0.facts } }

    /// Set once one of the request's transactions has committed: running the request again would repeat it.
    public var committed: Bool { state.withLock { $0.committed } }

    public func markCommitted() { state.withLock { $0.committed = true } }

    /// Thrown by a transaction when a fact the request relied on is no longer what storage holds.
    public static let changed = KeyholdError(
        .unavailable, "Access rules changed while the request was served; send it again", type: "authorization_changed")
}

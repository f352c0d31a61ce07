import Foundation
import KeyholdCore
import Testing

@Suite struct ThrottleTests {
    @Test func bucketsAllowTheBurstThenTheRate() {
        let limiter = RateLimiter(rate: 10, burst: 20)
        let start = ContinuousClock.now
        for _ in 0..<20 { #expect(limiter.take("a", now: start) == nil) }
        let wait = limiter.take("a", now: start)
        #expect(wait != nil && wait! <= .milliseconds(100))
        #expect(limiter.take("b", now: start) == nil, "clients have their own buckets")
        #expect(limiter.take("a", now: start + .milliseconds(150)) == nil, "a token refills after 1/rate")
        #expect(limiter.take("a", now: start + .milliseconds(160)) != nil)
    }

    @Test func accountsSlowDownAfterFiveFailuresAndRecover() throws {
        let throttle = LoginThrottle()
        let start = ContinuousClock.now
        for _ in 0..<5 {
            try throttle.check(account: "ada@example.com", address: "10.0.0.1", now: start)
            throttle.recordFailure(account: "ada@example.com", address: "10.0.0.1", now: start)
        }
        #expect(throws: KeyholdError(.tooManyRequests, "")) {
            try throttle.check(account: "ada@example.com", address: "10.0.0.2", now: start)
        }
        try throttle.check(account: "ada@example.com", address: "10.0.0.2", now: start + .seconds(1))
        try throttle.check(account: "grace@example.com", address: "10.0.0.1", now: start)
        for n in 0..<10 { throttle.recordFailure(account: "ada@example.com", address: nil, now: start + .seconds(n)) }
        do {
            try throttle.check(account: "ada@example.com", address: nil, now: start + .seconds(10))
            Issue.record("expected a wait")
        } catch let error as KeyholdError {
            #expect(error.retryAfter != nil && error.retryAfter! <= 900, "never more than 15 minutes")
        }
        try throttle.check(account: "ada@example.com", address: nil, now: start + .seconds(10 + 901))
        throttle.recordSuccess(account: "ada@example.com")
        try throttle.check(account: "ada@example.com", address: nil, now: start + .seconds(11))
    }

    @Test func oneAddressCannotGuessAcrossManyAccounts() throws {
        let throttle = LoginThrottle()
        let start = ContinuousClock.now
        for n in 0..<50 { throttle.recordFailure(account: "user\(n)@example.com", address: "192.0.2.9", now: start) }
        #expect(throws: KeyholdError(.tooManyRequests, "")) {
            try throttle.check(account: "fresh@example.com", address: "192.0.2.9", now: start)
        }
        try throttle.check(account: "fresh@example.com", address: "192.0.2.10", now: start)
        try throttle.check(account: "fresh@example.com", address: "192.0.2.9", now: start + .seconds(601))
    }

    @Test func concurrentAttemptsAreCountedBeforeTheyAreChecked() async {
        let throttle = LoginThrottle()
        let passed = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<20 {
                group.addTask { (try? throttle.attempt(account: "race@example.com", address: nil)) != nil }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(passed == 5)
    }
}

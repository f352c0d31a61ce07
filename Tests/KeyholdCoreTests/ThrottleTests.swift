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
        for _ in 0..<5 { try throttle.attempt(account: "ada@example.com", address: "10.0.0.1", now: start) }
        #expect(throws: KeyholdError(.tooManyRequests, "")) {
            try throttle.attempt(account: "ada@example.com", address: "10.0.0.2", now: start)
        }
        try throttle.attempt(account: "ada@example.com", address: "10.0.0.2", now: start + .seconds(1))
        try throttle.attempt(account: "grace@example.com", address: "10.0.0.1", now: start)
        var waited = 0
        for n in 0..<12 {
            do {
                try throttle.attempt(account: "ada@example.com", address: nil, now: start + .seconds(2 + n))
            } catch let error as KeyholdError {
                waited += 1
                #expect(error.retryAfter != nil && error.retryAfter! <= 900, "never more than 15 minutes")
            }
        }
        #expect(waited > 0)
        try throttle.attempt(account: "ada@example.com", address: nil, now: start + .seconds(14 + 901))
        throttle.succeeded(account: "ada@example.com", address: nil)
        for _ in 0..<5 { try throttle.attempt(account: "ada@example.com", address: nil, now: start + .seconds(14 + 902)) }
    }

    @Test func oneAddressCannotGuessAcrossManyAccounts() throws {
        let throttle = LoginThrottle()
        let start = ContinuousClock.now
        for n in 0..<50 { try throttle.attempt(account: "user\(n)@example.com", address: "192.0.2.9", now: start) }
        #expect(throws: KeyholdError(.tooManyRequests, "")) {
            try throttle.attempt(account: "fresh@example.com", address: "192.0.2.9", now: start)
        }
        #expect(throws: KeyholdError(.tooManyRequests, ""), "sign-up throttles the address alone") {
            try throttle.attempt(account: nil, address: "192.0.2.9", now: start)
        }
        try throttle.attempt(account: "fresh@example.com", address: "192.0.2.10", now: start)
        try throttle.attempt(account: "fresh@example.com", address: "192.0.2.9", now: start + .seconds(601))
    }

    @Test func successGivesTheAddressSlotBack() throws {
        let throttle = LoginThrottle()
        let start = ContinuousClock.now
        for _ in 0..<200 {
            try throttle.attempt(account: nil, address: "192.0.2.7", now: start)
            throttle.succeeded(account: nil, address: "192.0.2.7")
        }
        #expect(throttle.tableSizes.addresses == 0)
    }

    @Test func expiredEntriesArePrunedAsTheTablesGrow() throws {
        let throttle = LoginThrottle()
        let start = ContinuousClock.now
        for n in 0..<5_000 { try throttle.attempt(account: "a\(n)@example.com", address: "10.1.\(n / 256).\(n % 256)", now: start) }
        #expect(throttle.tableSizes == (accounts: 5_000, addresses: 5_000))
        // Fifteen minutes later every entry has expired: the tables shrink instead of growing on.
        let later = start + .seconds(901)
        for n in 0..<5_000 { try throttle.attempt(account: "b\(n)@example.com", address: "10.2.\(n / 256).\(n % 256)", now: later) }
        let sizes = throttle.tableSizes
        #expect(sizes.accounts < 10_000 && sizes.addresses < 10_000)
        #expect(sizes.accounts <= 5_000 + 1024 && sizes.addresses <= 5_000 + 1024, "\(sizes)")
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

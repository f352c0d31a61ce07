import Foundation
import KeyholdCore
import KeyholdSQL
import Testing

/// Webhooks and their outbox (`WebhookStore`) on every backend: a change queues its deliveries in its own transaction
/// (both commit or neither does), only for the org's active webhooks subscribed to the event; concurrent claimers
/// never take the same delivery; attempts retry, fail for good, and deactivate a webhook failing for a day.
extension StorageConformanceTests {
    func webhook(_ f: Fixture, events: [String], active: Bool = true, orgID: UUID? = nil) async throws -> Webhook {
        let now = Timestamp.now
        let id = UUID()
        let hook = Webhook(
            id: id, orgID: orgID ?? f.org.id, url: "https://hooks.example.com/\(id.wire)", events: events,
            description: nil, isActive: active, sealedSecret: Data("sealed-\(id.wire)".utf8), createdBy: f.owner.id,
            createdAt: now, updatedAt: now)
        try await f.storage.createWebhook(hook, audit: testAudit)
        return hook
    }

    /// A record in the fixture's org (so it may queue deliveries), as a service would build it.
    func change(_ f: Fixture, _ action: String, _ details: [String: JSONValue] = [:], orgID: UUID? = nil,
                resourceID: String = "db/password") -> AuditRecord {
        AuditRecord(
            AuditEntry(
                orgID: orgID ?? f.org.id, actorType: .user, actorID: f.owner.id.wire, action: action,
                resourceType: "secret", resourceID: resourceID, details: details, ipAddress: nil),
            chain: testChain)
    }

    func queue(_ f: Fixture, _ record: AuditRecord) async throws {
        try await (f.storage as! SQLStore).database.inTransaction { try await $0.append(record) }
    }

    @Test(arguments: Backend.enabled)
    func webhooksAreStoredPerOrg(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            var hook = try await webhook(f, events: ["secret.created", "secret.deleted"])
            let other = try await otherOrg(f)
            #expect(try await f.storage.webhook(id: hook.id, orgID: f.org.id) == hook)
            #expect(try await f.storage.webhook(id: hook.id, orgID: other.org.id) == nil)
            #expect(try await f.storage.webhooks(orgID: f.org.id) == [hook])
            #expect(try await f.storage.webhooks(orgID: other.org.id).isEmpty)
            hook.events = ["*"]
            hook.isActive = false
            hook.description = "all"
            #expect(try await f.storage.updateWebhook(hook, audit: testAudit))
            #expect(try await f.storage.webhook(id: hook.id, orgID: f.org.id) == hook)
            let stranger = Webhook(
                id: hook.id, orgID: other.org.id, url: hook.url, events: hook.events, description: nil, isActive: true,
                sealedSecret: hook.sealedSecret, createdBy: hook.createdBy, createdAt: hook.createdAt, updatedAt: .now)
            #expect(try await !f.storage.updateWebhook(stranger, audit: testAudit))
            #expect(try await !f.storage.deleteWebhook(id: hook.id, orgID: other.org.id, audit: testAudit))
            #expect(try await f.storage.deleteWebhook(id: hook.id, orgID: f.org.id, audit: testAudit))
            #expect(try await f.storage.webhook(id: hook.id, orgID: f.org.id) == nil)
        }
    }

    @Test(arguments: Backend.enabled)
    func aChangeQueuesDeliveriesForSubscribedActiveWebhooksOfItsOrgOnly(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let updates = try await webhook(f, events: ["secret.updated", "secret.created"])
            let star = try await webhook(f, events: ["*"])
            let inactive = try await webhook(f, events: ["*"], active: false)
            let deletes = try await webhook(f, events: ["secret.deleted"])
            let other = try await otherOrg(f)
            let foreign = try await webhook(f, events: ["*"], orgID: other.org.id)

            try await write(f, "db/password")
            try await queue(f, change(f, "secret.read", ["version": .number(1)]))  // not an event
            try await queue(f, change(f, "secret.write", ["version": .number(1), "outcome": "denied"]))  // a refusal
            #expect(try await f.storage.webhookDeliveries(webhookID: updates.id, limit: 10).map(\.event) == [])
            try await f.storage.writeVersion(
                newVersion(f, path: "db/password"),
                audit: change(f, "secret.write", ["vault_id": .string(f.vault.id.wire)])
            ) { _ in Data("sealed".utf8) }
            let queued = try await f.storage.webhookDeliveries(webhookID: updates.id, limit: 10)
            // Version 2 of the path (the first write was recorded in another org's chain, queuing nothing).
            #expect(queued.map(\.event) == ["secret.updated"])
            #expect(queued.map(\.status) == [.pending] && queued.map(\.attempts) == [0])
            #expect(try await f.storage.webhookDeliveries(webhookID: star.id, limit: 10).map(\.event) == ["secret.updated"])
            #expect(try await f.storage.webhookDeliveries(webhookID: inactive.id, limit: 10).isEmpty)
            #expect(try await f.storage.webhookDeliveries(webhookID: deletes.id, limit: 10).isEmpty)
            #expect(try await f.storage.webhookDeliveries(webhookID: foreign.id, limit: 10).isEmpty)

            // A test event goes to the webhook it names, whatever it subscribes to.
            let testID = try await f.storage.queueWebhookTest(
                audit: change(f, "webhook.test", resourceID: deletes.id.wire))
            let tests = try await f.storage.webhookDeliveries(webhookID: deletes.id, limit: 10)
            #expect(tests.map(\.event) == ["webhook.test"] && tests.map(\.id) == [testID])
            #expect(try await f.storage.webhookDeliveries(webhookID: star.id, limit: 10).count == 1)
        }
    }

    @Test(arguments: Backend.enabled)
    func aChangeAndItsDeliveriesCommitOrRollBackTogether(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let hook = try await webhook(f, events: ["*"])
            struct Abandoned: Error {}
            await #expect(throws: Abandoned.self) {
                try await (f.storage as! SQLStore).database.inTransaction { db in
                    try await db.append(self.change(f, "policy.create"))
                    throw Abandoned()
                }
            }
            #expect(try await f.storage.webhookDeliveries(webhookID: hook.id, limit: 10).isEmpty)
            // A write whose value cannot be sealed stores nothing: no version, no event, no delivery.
            struct Unsealable: Error {}
            await #expect(throws: Unsealable.self) {
                try await f.storage.writeVersion(newVersion(f, path: "nope"), audit: self.change(f, "secret.write")) { _ in
                    throw Unsealable()
                }
            }
            #expect(try await f.storage.webhookDeliveries(webhookID: hook.id, limit: 10).isEmpty)
            try await queue(f, change(f, "policy.create"))
            #expect(try await f.storage.webhookDeliveries(webhookID: hook.id, limit: 10).map(\.event) == ["policy.changed"])
        }
    }

    @Test(arguments: Backend.enabled)
    func concurrentClaimersNeverClaimTheSameDelivery(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let hooks = [try await webhook(f, events: ["*"]), try await webhook(f, events: ["policy.changed"])]
            for _ in 0..<20 { try await queue(f, change(f, "policy.update")) }
            let storage = f.storage
            let now = Timestamp.now
            let claimed = try await withThrowingTaskGroup(of: [UUID].self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        var mine: [UUID] = []
                        while true {
                            let batch = try await storage.claimWebhookDeliveries(
                                now: now, leaseUntil: now.adding(seconds: 60), limit: 3)
                            if batch.isEmpty { return mine }
                            mine += batch.map(\.delivery.id)
                        }
                    }
                }
                return try await group.reduce(into: [UUID]()) { $0 += $1 }
            }
            #expect(claimed.count == 40)
            #expect(Set(claimed).count == 40)
            // Leased: nobody claims them again until the lease runs out; then each is claimed once more.
            #expect(try await storage.claimWebhookDeliveries(now: now, leaseUntil: now.adding(seconds: 60), limit: 50).isEmpty)
            let later = now.adding(seconds: 61)
            let again = try await storage.claimWebhookDeliveries(now: later, leaseUntil: later.adding(seconds: 60), limit: 50)
            #expect(Set(again.map(\.delivery.id)) == Set(claimed))
            #expect(Set(again.map(\.delivery.attempts)) == [2])
            for hook in hooks {
                #expect(try await storage.webhookDeliveries(webhookID: hook.id, limit: 50).allSatisfy { $0.attempts == 2 })
            }
        }
    }

    @Test(arguments: Backend.enabled)
    func attemptsRetryFailAndAWebhookFailingForADayIsDeactivated(_ backend: Backend) async throws {
        try await withFixture(backend) { (f: Fixture) async throws in
            let hook = try await webhook(f, events: ["policy.changed"])
            try await queue(f, change(f, "policy.delete"))
            try await queue(f, change(f, "policy.create"))
            let start = Timestamp.now
            let claimed = try await f.storage.claimWebhookDeliveries(now: start, leaseUntil: start.adding(seconds: 60), limit: 10)
            #expect(claimed.count == 2)
            #expect(claimed.allSatisfy { $0.url == hook.url && $0.sealedSecret == hook.sealedSecret && $0.orgID == f.org.id })
            #expect(Set(claimed.map(\.audit.entry.action)) == ["policy.delete", "policy.create"])
            let (first, second) = (claimed[0].delivery, claimed[1].delivery)
            let deactivation = change(f, "webhook.deactivate", resourceID: hook.id.wire)

            // A failure with a next attempt stays pending, due then (not before).
            let retryAt = start.adding(seconds: 2)
            #expect(try await !f.storage.recordWebhookAttempt(
                WebhookAttemptOutcome(
                    webhookID: hook.id, eventID: first.eventID, delivered: false, statusCode: 500, error: "HTTP 500",
                    at: start, nextAttemptAt: retryAt),
                deactivation: deactivation))
            var listed = try await f.storage.webhookDeliveries(webhookID: hook.id, limit: 10)
            let retried = try #require(listed.first { $0.eventID == first.eventID })
            #expect(retried.status == .pending && retried.attempts == 1 && retried.lastStatusCode == 500)
            #expect(retried.lastError == "HTTP 500" && retried.nextAttemptAt == retryAt)
            #expect(try await f.storage.claimWebhookDeliveries(now: start.adding(seconds: 1), leaseUntil: start.adding(seconds: 61), limit: 10).isEmpty)
            // Out of retries: failed for good, never claimed again.
            #expect(try await !f.storage.recordWebhookAttempt(
                WebhookAttemptOutcome(
                    webhookID: hook.id, eventID: first.eventID, delivered: false, statusCode: nil,
                    error: "the connection failed", at: start.adding(seconds: 3), nextAttemptAt: nil),
                deactivation: deactivation))
            // The second is delivered: the webhook's failure clock stops.
            #expect(try await !f.storage.recordWebhookAttempt(
                WebhookAttemptOutcome(
                    webhookID: hook.id, eventID: second.eventID, delivered: true, statusCode: 204, error: nil,
                    at: start.adding(seconds: 4), nextAttemptAt: nil),
                deactivation: deactivation))
            listed = try await f.storage.webhookDeliveries(webhookID: hook.id, limit: 10)
            #expect(listed.first { $0.eventID == first.eventID }?.status == .failed)
            let delivered = try #require(listed.first { $0.eventID == second.eventID })
            #expect(delivered.status == .delivered && delivered.deliveredAt == start.adding(seconds: 4) && delivered.lastError == nil)
            #expect(try await f.storage.claimWebhookDeliveries(now: start.adding(days: 2), leaseUntil: start.adding(days: 3), limit: 10).isEmpty)

            // Failing from then on: still active within a day of the first failure, deactivated (with its event) after.
            try await queue(f, change(f, "policy.update"))
            let t0 = start.adding(seconds: 10)
            let third = try #require(
                try await f.storage.claimWebhookDeliveries(now: t0, leaseUntil: t0.adding(seconds: 60), limit: 10).first)
            func fail(at time: Timestamp) async throws -> Bool {
                try await f.storage.recordWebhookAttempt(
                    WebhookAttemptOutcome(
                        webhookID: hook.id, eventID: third.delivery.eventID, delivered: false, statusCode: 503,
                        error: "HTTP 503", at: time, nextAttemptAt: time.adding(seconds: 3600)),
                    deactivation: deactivation)
            }
            #expect(try await !fail(at: t0))
            #expect(try await !fail(at: t0.adding(seconds: 24 * 3600 - 1)))
            #expect(try await f.storage.webhook(id: hook.id, orgID: f.org.id)?.isActive == true)
            #expect(try await fail(at: t0.adding(seconds: 24 * 3600 + 1)))
            #expect(try await f.storage.webhook(id: hook.id, orgID: f.org.id)?.isActive == false)
            #expect(try await f.storage.auditEvents(orgID: f.org.id, filter: AuditFilter(action: "webhook.deactivate")).count == 1)
            // An inactive webhook's pending deliveries are not claimed.
            let much = t0.adding(days: 2)
            #expect(try await f.storage.claimWebhookDeliveries(now: much, leaseUntil: much.adding(seconds: 60), limit: 10).isEmpty)
            // Purging: the delivered and the failed one go, the pending one stays.
            #expect(try await f.storage.purgeWebhookDeliveries(before: start.adding(seconds: -3600)) == 0)
            #expect(try await f.storage.purgeWebhookDeliveries(before: much) == 2)
            #expect(try await f.storage.webhookDeliveries(webhookID: hook.id, limit: 10).map(\.eventID) == [third.delivery.eventID])
        }
    }
}

extension Timestamp {
    fileprivate func adding(days: Int64) -> Timestamp { adding(seconds: days * 86_400) }
}

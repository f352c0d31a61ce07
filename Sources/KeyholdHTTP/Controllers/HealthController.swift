import Foundation
import Hummingbird
import KeyholdCore
import Synchronization

/// `GET /v1/health` (liveness: 200 while the process answers, `healthy` or `degraded` as 1Claw's spec says),
/// `GET /v1/health/ready` (readiness: 503 while storage or the keystore does not answer, for load balancers and
/// orchestrators) and `GET /v1/health/hsm`. Each check is bounded (2 s), so a database that hangs makes the server
/// degraded, not the probe stuck, and its answer is reused for a second, so probes in a burst cost one storage read
/// and one keystore check.
struct HealthController {
    let storage: any Storage
    let keystore: any Keystore
    let recent = RecentChecks()

    final class RecentChecks: Sendable {
        let last = Mutex<(at: ContinuousClock.Instant, checks: Checks)?>(nil)
    }

    struct Checks: Encodable, Sendable {
        let storage: String
        let keystore: String
        var ready: Bool { storage == "ok" && keystore == "ok" }
    }

    func register(on router: Router<KeyholdRequestContext>) {
        router.get("/v1/health") { _, _ in
            let checks = await check()
            return try JSONResponse.make(
                HealthResponse(status: checks.ready ? "healthy" : "degraded", version: Keyhold.version, checks: checks))
        }
        router.get("/v1/health/ready") { _, _ in
            let checks = await check()
            guard checks.ready else {
                let failing = [("storage", checks.storage), ("keystore", checks.keystore)].filter { $0.1 != "ok" }.map(\.0)
                throw KeyholdError(.unavailable, "Not ready: \(failing.joined(separator: " and ")) unavailable")
            }
            return try JSONResponse.make(HealthResponse(status: "ready", version: Keyhold.version, checks: checks))
        }
        router.get("/v1/health/hsm") { _, _ in try JSONResponse.make(await HSMHealthResponse(keystore)) }
    }

    func check() async -> Checks {
        let now = ContinuousClock.now
        if let last = recent.last.withLock({ $0 }), now - last.at < .seconds(1) { return last.checks }
        let checks = await checkNow()
        recent.last.withLock { $0 = (now, checks) }
        return checks
    }

    private func checkNow() async -> Checks {
        let (storage, keystore) = (self.storage, self.keystore)
        async let stored = Self.bounded { _ = try await storage.systemValue("keyhold.health"); return true }
        async let keys = Self.bounded { await keystore.health()?.available ?? true }
        return Checks(storage: await stored ? "ok" : "unavailable", keystore: await keys ? "ok" : "unavailable")
    }

    /// The check's answer, or false when it throws or takes over 2 seconds.
    static func bounded(_ check: @escaping @Sendable () async throws -> Bool) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await check()) ?? false }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

struct HealthResponse: Encodable {
    let status: String
    let version: String
    let checks: HealthController.Checks
}

import Foundation
import Hummingbird
import KeyholdCore
import Metrics
import Prometheus
import Synchronization

/// `/metrics` in Prometheus's text format (`--metrics`), on the API's listener or with `--metrics-listen` on one of
/// its own. Every series is labelled by fixed names only — the route template (`/v1/vaults/{vault_id}/secrets/**`),
/// the method, the status, an operation or an outcome — never a path, a secret's name, an email or a token.
///
/// The process's metrics system is Prometheus's, bootstrapped once by `keyhold serve` (`ServerMetrics.bootstrap`);
/// storage, keystore and webhook code record through swift-metrics, and a scrape adds the gauges read at that time
/// (what is stored, the process's memory and open files).
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// The stored counts, read at most once a minute (a count over a large table is not free, and figures that move
    /// with each request would tell a scraper what others do).
    private let counted = Mutex<(at: ContinuousClock.Instant, statistics: StorageStatistics)?>(nil)

    /// Installs Prometheus as the process's metrics system (once per process).
    public static func bootstrap() -> ServerMetrics {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["keyhold_sqlite_group_commit_transactions"] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        MetricsSystem.bootstrap(factory)
        return ServerMetrics(registry: registry)
    }

    private init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    private func statistics(_ storage: any Storage) async -> StorageStatistics? {
        let now = ContinuousClock.now
        if let last = counted.withLock({ $0 }), now - last.at < .seconds(60) { return last.statistics }
        guard let fresh = try? await storage.statistics() else { return nil }
        counted.withLock { $0 = (now, fresh) }
        return fresh
    }

    /// The text of a scrape: the gauges read now, then everything recorded.
    func scrape(storage: any Storage) async -> [UInt8] {
        if let statistics = await statistics(storage) {
            for (name, value) in [
                ("keyhold_orgs", statistics.orgs), ("keyhold_vaults", statistics.vaults),
                ("keyhold_secrets", statistics.secrets), ("keyhold_secret_versions", statistics.secretVersions),
                ("keyhold_audit_events", statistics.auditEvents),
            ] {
                registry.makeGauge(name: name, help: "How many are stored").set(to: Double(value))
            }
            registry.makeGauge(name: "keyhold_storage_up", help: "1 when storage answered the scrape's count").set(to: 1)
        } else {
            registry.makeGauge(name: "keyhold_storage_up", help: "1 when storage answered the scrape's count").set(to: 0)
        }
        let process = ProcessFigures.read()
        registry.makeGauge(name: "process_resident_memory_bytes", help: "Resident memory").set(to: Double(process.residentBytes))
        registry.makeGauge(name: "process_virtual_memory_bytes", help: "Virtual memory").set(to: Double(process.virtualBytes))
        registry.makeGauge(name: "process_open_fds", help: "Open file descriptors").set(to: Double(process.openFiles))
        return registry.emitToBuffer()
    }

    /// The scrape, for a request with `Authorization: Bearer <token>` when a token is set (401 otherwise).
    func response(_ request: Request, storage: any Storage, token: String?) async throws -> Response {
        if let token {
            let sent = AuthenticationMiddleware.bearer(request) ?? ""
            guard CredentialHasher.constantTimeEqual(Data(sent.utf8), Data(token.utf8)) else {
                throw KeyholdError(.unauthorized, "Metrics need the scrape token as a bearer token")
            }
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: await scrape(storage: storage))))
    }
}

/// One counter and one latency histogram per request, by method, route template and status.
struct RequestMetricsMiddleware: RouterMiddleware {
    typealias Context = KeyholdRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        let route = context.endpointPath ?? "unmatched"
        let method = request.method.rawValue
        var status = 500
        defer {
            Counter(label: "keyhold_http_requests_total", dimensions: [("method", method), ("route", route), ("status", String(status))])
                .increment()
            Metrics.Timer(label: "keyhold_http_request_duration_seconds", dimensions: [("method", method), ("route", route)])
                .record(since: start)
        }
        let response = try await next(request, context)
        status = response.status.code
        return response
    }
}

/// The process's memory and open files, from `/proc/self` (zero where it cannot be read).
struct ProcessFigures {
    var residentBytes = 0
    var virtualBytes = 0
    var openFiles = 0

    static func read() -> ProcessFigures {
        var figures = ProcessFigures()
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        if let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = text.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if fields.count >= 2 { (figures.virtualBytes, figures.residentBytes) = (fields[0] * page, fields[1] * page) }
        }
        figures.openFiles = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return figures
    }
}

import Foundation
import Hummingbird
import HummingbirdCore
import KeyholdCore
import Logging
import ServiceLifecycle

public enum Keyhold {
    public static let version = "0.1.0"
}

/// What both the server and the operator commands need: storage, keystore, audit log and vaults. The executable
/// opens the concrete storage and keystore the configuration names (`KeyholdServer`) and hands them in here.
public struct KeyholdRuntime: Sendable {
    public let storage: any Storage
    public let keystore: any Keystore
    public let audit: AuditLog
    public let vaults: VaultService
    public let authorizer = Authorizer()

    public init(storage: any Storage, keystore: any Keystore) async throws {
        self.storage = storage
        self.keystore = keystore
        try await storage.sealGrants(with: GrantSeal.load(system: storage, keystore: keystore))
        audit = AuditLog(store: storage, chain: try await AuditChain.load(system: storage, keystore: keystore))
        vaults = VaultService(store: storage, policies: storage, keystore: keystore, authorizer: Authorizer(), audit: audit)
    }

    public var keys: KeyService {
        KeyService(store: storage, vaultStore: storage, vaults: vaults, keystore: keystore, audit: audit)
    }
}

/// Builds the services and the router over the storage and keystore in `runtime`.
public func buildApplication(
    configuration: KeyholdConfiguration, runtime: KeyholdRuntime, logger: Logger, metrics: ServerMetrics? = nil
) async throws -> some ApplicationProtocol {
    let (storage, keystore, audit, vaults, authorizer) =
        (runtime.storage, runtime.keystore, runtime.audit, runtime.vaults, runtime.authorizer)
    let tokens = try await TokenService.load(system: storage, keystore: keystore)
    let credentialHasher = try await CredentialHasher.load(system: storage, keystore: keystore)
    let failures = FailedAuthentications(audit: audit, interval: .seconds(configuration.authFailureInterval))
    let ipRules = IPRuleService(store: storage, audit: audit, failures: failures)
    let auth = AuthService(
        identities: storage, agents: storage, credentials: storage, tokens: tokens, hasher: credentialHasher,
        audit: audit, failures: failures, ipRules: ipRules)
    let console = ConsoleSession(
        key: credentialHasher.derivedKey(for: "console csrf"), secureCookies: configuration.publicURL.hasPrefix("https://"))
    let consoleFiles = try ConsoleFiles(directory: configuration.consoleDirectory)
    let authentication = AuthenticationMiddleware(auth: auth, console: console)
    let passwords = PasswordHasher(cost: UInt8(configuration.bcryptCost))

    let router = Router(context: KeyholdRequestContext.self)
    // First: the client's address (the socket's peer, or behind a trusted proxy the forwarded one) for everything after.
    router.add(middleware: ClientAddressMiddleware(trustedProxies: configuration.trustedProxies))
    router.add(middleware: RequestLogMiddleware())
    router.add(middleware: SecurityHeadersMiddleware(https: configuration.publicURL.hasPrefix("https://")))
    if metrics != nil { router.add(middleware: RequestMetricsMiddleware()) }
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: RequestShapeMiddleware())
    if configuration.rateLimit > 0 {
        router.add(middleware: RateLimitMiddleware(limiter: RateLimiter(rate: configuration.rateLimit, burst: configuration.rateBurst)))
    }
    // Every route registered on `authenticated` runs after the bearer check; the rest are public (health, the
    // documents, sign-up and the token endpoints (MFA's verify among them), a link share, and /mcp, whose tool calls come back through here).
    let authenticated = router.group().add(middleware: authentication)
    let throttle = LoginThrottle()
    HealthController(storage: storage, keystore: keystore).register(on: router)
    if let metrics, configuration.metricsListen == nil {
        router.get("/metrics") { request, _ in
            try await metrics.response(request, storage: storage, token: configuration.metricsToken)
        }
    }
    let openAPI = try OpenAPIDocument.load()
    router.get("/openapi.json") { _, _ in
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: openAPI)))
    }
    let mfa = MFAService(
        store: storage, identities: storage, hasher: credentialHasher, audit: audit, throttle: throttle,
        failures: failures, secretKey: try await MFAService.loadSecretKey(system: storage, keystore: keystore))
    MFAController(mfa: mfa, auth: auth).register(on: router, authenticated: authenticated)
    let accounts = AccountService(
        store: storage, hasher: passwords, credentials: credentialHasher, audit: audit, throttle: throttle,
        failures: failures)
    ConsoleController(
        files: consoleFiles, session: console, accounts: accounts, auth: auth, mfa: mfa, authentication: authentication
    ).register(on: router)
    AuthController(
        accounts: accounts,
        auth: auth, mfa: mfa, tokens: tokens, authentication: authentication, signupOpen: configuration.signup == .open,
        issuer: configuration.publicURL
    ).register(on: router, authenticated: authenticated)
    VaultController(vaults: vaults).register(on: authenticated)
    CMEKController(
        cmek: CMEKService(store: storage, vaults: vaults, keystore: keystore, authorizer: Authorizer(), audit: audit)
    ).register(on: authenticated)
    let policies = PolicyService(
        policies: storage, identities: storage, agents: storage, vaults: vaults, authorizer: authorizer, audit: audit)
    let approvals = ApprovalService(
        store: storage, agents: storage, identities: storage, vaults: vaults, policies: policies, audit: audit,
        passwords: passwords, mfa: mfa, throttle: throttle, quickKey: credentialHasher.derivedKey(for: "quick decide"))
    let secrets = SecretService(
        store: storage, vaults: vaults, keystore: keystore, authorizer: authorizer, audit: audit,
        cursors: ListCursor(key: credentialHasher.derivedKey(for: "list cursor")), approvals: approvals)
    SecretController(secrets: secrets).register(on: authenticated)
    ShareController(
        shares: ShareService(
            shares: storage, identities: storage, agents: storage, secrets: secrets, passwords: passwords,
            credentials: credentialHasher, audit: audit, failures: failures, throttle: throttle),
        authentication: authentication, publicURL: configuration.publicURL, console: consoleFiles
    ).register(on: router, authenticated: authenticated)
    PolicyController(policies: policies).register(on: authenticated)
    let agents = AgentService(agents: storage, vaults: vaults, secrets: secrets, hasher: credentialHasher, audit: audit)
    AgentController(agents: agents, approvals: approvals).register(on: router, authenticated: authenticated)
    ApprovalController(approvals: approvals, agents: agents, publicURL: configuration.publicURL)
        .register(on: router, authenticated: authenticated)
    OrgController(org: OrgService(identities: storage, hasher: credentialHasher, audit: audit)).register(on: authenticated)
    AuditController(audit: audit, publicURL: configuration.publicURL).register(on: authenticated)
    IPRuleController(rules: ipRules).register(on: authenticated)
    EnvVarController(
        envVars: EnvVarService(
            store: storage, agents: storage, vaults: vaults, keystore: keystore, authorizer: authorizer, audit: audit,
            sharedKey: try await EnvVarService.loadSharedKey(system: storage, keystore: keystore))
    ).register(on: authenticated)
    let webhooks = WebhookService(
        store: storage, audit: audit,
        secretKey: try await WebhookService.loadSecretKey(system: storage, keystore: keystore),
        allowPrivate: configuration.webhookAllowPrivate)
    WebhookController(webhooks: webhooks).register(on: authenticated)
    let outbound = Outbound(allowPrivate: configuration.webhookAllowPrivate, caFile: configuration.outboundCAFile)
    LeaseController(
        leases: LeaseService(
            store: storage, identities: storage, agents: storage, secrets: secrets, audit: audit,
            rootKey: try await LeaseService.loadRootKey(system: storage, keystore: keystore),
            allowPrivate: configuration.webhookAllowPrivate),
        outbound: outbound
    ).register(on: authenticated)
    authenticated.post("/v1/vaults/:vault_id/rotate-key") { _, context in
        let kek = try await runtime.keys.rotate(vaultID: try context.vaultID(), by: try context.requireCaller())
        return try JSONResponse.make(["vault_id": try context.vaultID().wire, "kek_id": kek.id])
    }
    let mcpResponder = MCPController.ResponderBox()
    MCPController(responder: mcpResponder, reveal: !configuration.mcpNoReveal).register(on: router)
    mcpResponder.responder.withLock { $0 = router.buildResponder() }

    let tls = try configuration.tlsCertificate.map { certificate in
        try TLSContextSource(
            files: .init(certificate: certificate, key: configuration.tlsKey ?? "", clientCA: configuration.tlsClientCA))
    }
    if tls == nil, !configuration.isLoopback {
        logger.warning(
            "Listening without TLS on a non-loopback address: tokens, passwords and secret values cross the network in the clear. Use --tls-cert and --tls-key, or a TLS-terminating proxy on this machine",
            metadata: ["keyhold.host": .string(configuration.host)])
    }
    // A connection with nothing to read for 30 s is closed (idle keep-alives, stalled handshakes, slow senders), so
    // idle sockets cannot pile up to the file-descriptor limit.
    let http1 = HTTP1Channel.Configuration(idleTimeout: .seconds(30))
    var app = Application(
        router: router,
        server: tls.map { .reloadableTLS($0, configuration: http1) } ?? .http1(configuration: http1),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
        onServerRunning: { channel in
            logger.notice(
                "Keyhold is listening",
                metadata: [
                    "keyhold.url": .string(
                        "\(tls == nil ? "http" : "https")://\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"),
                    "keyhold.keystore": .string(keystore.kind),
                    "keyhold.data_dir": .string(configuration.dataDirectory),
                ])
        },
        logger: logger)
    if let tls { app.addServices(TLSReloadService(source: tls, logger: logger)) }
    if let metrics, let listen = configuration.metricsListen {
        // `/metrics` alone on a listener of its own (plain HTTP: bind it to an address only the scraper reaches).
        let metricsRouter = Router()
        metricsRouter.get("/metrics") { request, _ in
            try await metrics.response(request, storage: storage, token: configuration.metricsToken)
        }
        app.addServices(
            Application(
                router: metricsRouter,
                configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: nil),
                onServerRunning: { channel in
                    logger.notice(
                        "Metrics are served",
                        metadata: ["keyhold.metrics_url": .string("http://\(listen.host):\(channel.localAddress?.port ?? listen.port)/metrics")])
                }, logger: logger))
    }
    app.addServices(StorageService(storage: storage, failures: failures, approvals: approvals))
    // Added after the storage service, so graceful shutdown stops it first (services stop in reverse order).
    app.addServices(
        WebhookDeliveryService(
            dispatcher: WebhookDispatcher(
                service: webhooks, store: storage,
                transport: HTTPWebhookTransport(outbound: outbound), logger: logger,
                extras: { approvals.quickDecideLinks(event: $0, audit: $1, publicURL: configuration.publicURL) })))
    return app
}

/// Keyhold's OpenAPI 3.1 document (`Resources/openapi.json`), served at `/openapi.json`.
enum OpenAPIDocument {
    static func load() throws -> Data {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
            let data = try? Data(contentsOf: url)
        else { throw KeyholdError.internalError("The OpenAPI document is missing from the build") }
        return data
    }
}

/// `GET /v1/health/hsm`: `ok` with the token label and its key count when the token answers, `unavailable`
/// otherwise; the software keystore has no HSM and says so.
struct HSMHealthResponse: Encodable {
    let status: String
    let keystore: String
    let token_label: String?
    let secret_keys: Int?

    init(_ keystore: any Keystore) async {
        self.keystore = keystore.kind
        if let health = await keystore.health() {
            status = health.available ? "ok" : "unavailable"
            token_label = health.tokenLabel
            secret_keys = health.available ? health.secretKeys : nil
        } else {
            status = "ok"
            token_label = nil
            secret_keys = nil
        }
    }
}

/// Sends the webhook deliveries the outbox holds, until graceful shutdown (a send in flight is abandoned; its lease
/// runs out and the delivery goes out again, from this node after a restart or from another one).
struct WebhookDeliveryService: Service, CustomStringConvertible {
    /// What service-lifecycle logs: the name, never the fields (keys among them).
    var description: String { "WebhookDeliveryService" }
    let dispatcher: WebhookDispatcher

    func run() async throws {
        await cancelWhenGracefulShutdown { await dispatcher.run() }
    }
}

/// Writes the counted failed authentications every interval and records expired approvals every 5 seconds; on
/// graceful shutdown (SIGTERM), writes the failures once more after the HTTP server has drained, then closes the
/// database.
struct StorageService: Service, CustomStringConvertible {
    var description: String { "StorageService" }
    let storage: any Storage
    let failures: FailedAuthentications
    let approvals: ApprovalService

    func run() async throws {
        await cancelWhenGracefulShutdown {
            async let sweeps: Void = approvals.runSweeps(every: .seconds(5))
            await failures.run()
            await sweeps
        }
        await failures.flush()
        try await storage.close()
    }
}

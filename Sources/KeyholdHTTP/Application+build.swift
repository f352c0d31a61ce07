import Foundation
import Hummingbird
import KeyholdCore
import KeyholdSQLite
import Logging
import ServiceLifecycle

public enum Keyhold {
    public static let version = "0.1.0"
}

/// The composition root: picks the concrete storage and keystore, builds the services and the router.
public func buildApplication(
    configuration: KeyholdConfiguration, logger: Logger
) async throws -> some ApplicationProtocol {
    try FileSecurity.ensurePrivateDirectory(configuration.dataDirectory)
    let keystore = try SoftwareKeystore.open(
        directory: configuration.dataDirectory, environmentKey: configuration.masterKey)
    let storage = try await SQLiteStorage.open(path: configuration.dataDirectory + "/keyhold.sqlite", logger: logger)
    let tokens = try await TokenService.load(system: storage, keystore: keystore)
    let credentialHasher = try await CredentialHasher.load(system: storage, keystore: keystore)
    let audit = AuditLog(store: storage, chain: try await AuditChain.load(system: storage, keystore: keystore))
    let authorizer = Authorizer()
    let vaults = VaultService(
        store: storage, policies: storage, keystore: keystore, authorizer: authorizer, audit: audit)
    let auth = AuthService(
        identities: storage, agents: storage, credentials: storage, tokens: tokens, hasher: credentialHasher,
        audit: audit)
    let authenticator = Authenticator(auth: auth)
    let passwords = PasswordHasher(cost: UInt8(configuration.bcryptCost))

    let router = Router(context: KeyholdRequestContext.self)
    router.add(middleware: RequestLogMiddleware())
    router.add(middleware: ProblemMiddleware())
    router.get("/v1/health") { _, _ in try JSONResponse.make(HealthResponse(status: "ok", version: Keyhold.version)) }
    AuthController(
        accounts: AccountService(store: storage, hasher: passwords, credentials: credentialHasher, audit: audit),
        auth: auth, tokens: tokens, authenticator: authenticator, signupOpen: configuration.signup == .open,
        issuer: configuration.publicURL
    ).register(on: router)
    VaultController(vaults: vaults, authenticator: authenticator).register(on: router)
    let secrets = SecretService(
        store: storage, vaults: vaults, keystore: keystore, authorizer: authorizer, audit: audit)
    SecretController(secrets: secrets, authenticator: authenticator).register(on: router)
    ShareController(
        shares: ShareService(
            shares: storage, identities: storage, agents: storage, secrets: secrets, passwords: passwords,
            audit: audit),
        authenticator: authenticator, publicURL: configuration.publicURL
    ).register(on: router)
    PolicyController(
        policies: PolicyService(
            policies: storage, identities: storage, agents: storage, vaults: vaults, authorizer: authorizer,
            audit: audit),
        authenticator: authenticator
    ).register(on: router)
    AgentController(
        agents: AgentService(agents: storage, vaults: vaults, hasher: credentialHasher, audit: audit),
        authenticator: authenticator
    ).register(on: router)
    OrgController(
        org: OrgService(identities: storage, hasher: credentialHasher, audit: audit), authenticator: authenticator
    ).register(on: router)
    AuditController(audit: audit, authenticator: authenticator).register(on: router)

    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
        onServerRunning: { channel in
            logger.notice(
                "Keyhold is listening",
                metadata: [
                    "keyhold.url": .string("http://\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"),
                    "keyhold.keystore": .string(keystore.kind),
                    "keyhold.data_dir": .string(configuration.dataDirectory),
                ])
        },
        logger: logger)
    app.addServices(StorageService(storage: storage))
    return app
}

/// Closes the database after the HTTP server has drained, on graceful shutdown (SIGTERM).
struct StorageService: Service {
    let storage: any Storage

    func run() async throws {
        try? await gracefulShutdown()
        try await storage.close()
    }
}

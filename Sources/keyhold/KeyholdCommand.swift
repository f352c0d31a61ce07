import ArgumentParser
import CKeyholdShims
import Foundation
import KeyholdHTTP
import KeyholdServer
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

@main
struct KeyholdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyhold",
        abstract: "A self-hosted secrets vault for people and AI agents, speaking the 1Claw API.",
        version: Keyhold.version,
        subcommands: [
            Serve.self, Keys.self, Login.self, Logout.self, Whoami.self, VaultCommand.self, SecretCommand.self,
            EnvCommand.self, RunCommand.self, LeaseCommand.self, MCPCommand.self, BackupCommand.self, RestoreCommand.self,
            VerifyBackupCommand.self,
        ])
}

/// The server's settings as flags; every one also has a `KEYHOLD_*` variable (read in `KeyholdConfiguration`).
struct ServerOptions: ParsableArguments {
    @Option(help: "Address to listen on (KEYHOLD_HOST, default 127.0.0.1).") var host: String?
    @Option(help: "Port to listen on (KEYHOLD_PORT, default 8443).") var port: Int?
    @Option(help: "Directory for the database and keys (KEYHOLD_DATA_DIR, default ./keyhold-data).")
    var dataDir: String?
    @Option(help: "Whether anyone may sign up: open or closed (KEYHOLD_SIGNUP, default open).") var signup: String?
    @Option(help: "Log level (KEYHOLD_LOG_LEVEL, default info; debug adds one line per request).") var logLevel: String?
    @Option(help: "Log format: text or json, one object per line (KEYHOLD_LOG_FORMAT, default text).") var logFormat: String?
    @Option(help: "URL clients use to reach this server (KEYHOLD_PUBLIC_URL).") var publicURL: String?
    @Option(
        help: "PostgreSQL instead of SQLite: postgres://user:password@host:port/db (KEYHOLD_DATABASE_URL; the password may come from KEYHOLD_DATABASE_PASSWORD_FILE instead)."
    ) var databaseURL: String?
    @Option(help: "Where keys live: software or pkcs11 (KEYHOLD_KEYSTORE, default software).") var keystore: String?
    @Option(help: "PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so (KEYHOLD_PKCS11_MODULE).") var pkcs11Module: String?
    @Option(
        help: "Label of the PKCS#11 token (KEYHOLD_PKCS11_TOKEN_LABEL). The PIN comes only from KEYHOLD_PKCS11_PIN or KEYHOLD_PKCS11_PIN_FILE."
    ) var pkcs11TokenLabel: String?
    @Flag(name: .customLong("mcp-no-reveal"), help: "Serve /mcp in value-free mode: no tool returns a secret value (KEYHOLD_MCP_NO_REVEAL).")
    var mcpNoReveal = false
    @Flag(
        name: .customLong("webhook-allow-private"),
        help: "Let webhooks reach loopback, private and link-local addresses, and plain http to them (KEYHOLD_WEBHOOK_ALLOW_PRIVATE).")
    var webhookAllowPrivate = false
    @Option(
        name: .customLong("trusted-proxy"),
        help: "A reverse proxy (address or CIDR) whose X-Forwarded-For is believed; repeatable (KEYHOLD_TRUSTED_PROXIES, comma-separated).")
    var trustedProxies: [String] = []
    @Option(
        help: "Serve the web console from this folder, read at each request, instead of the built-in copy (KEYHOLD_CONSOLE_DIR; for working on the console)."
    ) var consoleDir: String?
    @Flag(name: .customLong("metrics"), help: "Serve Prometheus metrics at /metrics (KEYHOLD_METRICS).") var metrics = false
    @Option(help: "Serve /metrics on this HOST:PORT alone instead of the API's listener (KEYHOLD_METRICS_LISTEN).")
    var metricsListen: String?
    @Option(help: "TLS certificate chain, PEM (KEYHOLD_TLS_CERT); reloaded with the key on SIGHUP.") var tlsCert: String?
    @Option(help: "TLS private key, PEM (KEYHOLD_TLS_KEY).") var tlsKey: String?
    @Option(help: "Require client certificates signed by this CA, PEM (KEYHOLD_TLS_CLIENT_CA): mTLS.") var tlsClientCa: String?

    func configuration() throws -> KeyholdConfiguration {
        do {
            return try KeyholdConfiguration(
                flags: .init(
                    host: host, port: port, dataDirectory: dataDir, signup: signup, logLevel: logLevel,
                    publicURL: publicURL, databaseURL: databaseURL, keystore: keystore, pkcs11Module: pkcs11Module,
                    pkcs11TokenLabel: pkcs11TokenLabel, mcpNoReveal: mcpNoReveal, trustedProxies: trustedProxies,
                    webhookAllowPrivate: webhookAllowPrivate, consoleDirectory: consoleDir, logFormat: logFormat,
                    tlsCertificate: tlsCert, tlsKey: tlsKey, tlsClientCA: tlsClientCa, metrics: metrics,
                    metricsListen: metricsListen))
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Keyhold server.")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        // Swift Concurrency's jobs run on NIO's event loops (the ones Hummingbird serves on) instead of a separate
        // pool, so a request's handler does not hop between threads. Installed before the server starts any task.
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        // glibc hands free memory at the top of a thread's heap back to the kernel (madvise) once more than 128 KiB
        // is free there. The SQLite writer's savepoint journals are freed and allocated again around that mark, which
        // under load cost one madvise per request (seen with perf: ~10,000/s, each a TLB shootdown on every CPU).
        keyhold_set_malloc_trim_threshold(1 << 20)
        let configuration = try options.configuration()
        LoggingSystem.bootstrap { label in
            switch configuration.logFormat {
            case .json: return JSONLogHandler(label: label, level: configuration.logLevel)
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = configuration.logLevel
                return handler
            }
        }
        var logger = Logger(label: "keyhold")
        logger.logLevel = configuration.logLevel
        logger.info("Starting Keyhold", metadata: ["keyhold.config": .string(configuration.description)])
        let metrics = configuration.metrics ? ServerMetrics.bootstrap() : nil
        let app = try await buildServer(configuration: configuration, logger: logger, metrics: metrics)
        // SIGTERM or SIGINT: stop accepting, let requests in flight finish (at most 30 s), stop the background
        // services, close storage; whatever is still running after that is cancelled (at most 10 s more).
        var lifecycle = ServiceGroupConfiguration(
            services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        lifecycle.maximumGracefulShutdownDuration = .seconds(30)
        lifecycle.maximumCancellationDuration = .seconds(10)
        try await ServiceGroup(configuration: lifecycle).run()
        logger.notice("Keyhold stopped")
    }
}


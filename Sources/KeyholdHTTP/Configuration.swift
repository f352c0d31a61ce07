import Foundation
import KeyholdCore
import Logging

/// Every setting of the server, read in one place: command-line flags first, then `KEYHOLD_*` environment
/// variables, then defaults. Secrets (the master key) come from the environment only and are never printed.
public struct KeyholdConfiguration: Sendable, CustomStringConvertible {
    public enum SignupMode: String, Sendable { case open, closed }

    public var host: String
    public var port: Int
    public var dataDirectory: String
    public var signup: SignupMode
    public var bcryptCost: Int
    public var logLevel: Logger.Level
    public enum LogFormat: String, Sendable { case text, json }
    /// `text` (swift-log's lines) or `json` (one object per line, `JSONLogHandler`).
    public var logFormat: LogFormat
    /// The URL clients reach the server at (the issuer in discovery documents).
    public var publicURL: String
    /// Base64 or hex; from `KEYHOLD_MASTER_KEY` only.
    public var masterKey: String?
    /// `postgres://user:password@host:port/db`: PostgreSQL instead of SQLite in the data dir. The password may
    /// instead come from `KEYHOLD_DATABASE_PASSWORD_FILE`.
    public var databaseURL: String?
    public enum KeystoreKind: String, Sendable { case software, pkcs11 }
    public var keystore: KeystoreKind
    public var pkcs11Module: String?
    public var pkcs11TokenLabel: String?
    /// From `KEYHOLD_PKCS11_PIN` or `KEYHOLD_PKCS11_PIN_FILE` only, never a flag (flags show in `ps`).
    public var pkcs11PIN: String?
    /// Requests per second per client address (token bucket), and the burst; a rate of 0 turns limiting off.
    public var rateLimit: Double
    public var rateBurst: Double
    /// Seconds between writes of the counted failed authentications that name no org (1–3600).
    public var authFailureInterval: Int
    /// `/mcp` in value-free mode: no MCP tool returns a secret value.
    public var mcpNoReveal: Bool
    /// Reverse proxies whose `X-Forwarded-For` is believed (the client is the right-most address that is not one
    /// of them); empty: the header is ignored and the client is the socket's peer.
    public var trustedProxies: [CIDR]
    /// Webhooks may reach loopback, private, link-local and metadata addresses, and use plain http to them (tests,
    /// receivers on the operator's own network).
    public var webhookAllowPrivate: Bool
    /// A PEM file of CA certificates that outgoing TLS (webhooks, the lease proxy) trusts besides the system's
    /// (`KEYHOLD_OUTBOUND_CA_FILE`): a private CA of the operator's network, or a test's.
    public var outboundCAFile: String?
    /// A folder to serve the web console from, read at each request, instead of the copy built into the server
    /// (for working on the console); nil: the built-in copy.
    public var consoleDirectory: String?
    /// TLS: the certificate chain and private key (PEM files), and the CA whose client certificates are required
    /// (mTLS); without a certificate the server speaks plain HTTP.
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var tlsClientCA: String?
    public var usesTLS: Bool { tlsCertificate != nil }
    /// `/metrics` (Prometheus) is served: on the API's listener, or on `metricsListen` (host and port) alone.
    public var metrics: Bool
    public var metricsListen: (host: String, port: Int)?
    /// The bearer token a scrape must send (`KEYHOLD_METRICS_TOKEN`, environment only); required to serve `/metrics`
    /// on the API's listener, optional on a metrics listener of its own.
    public var metricsToken: String?

    /// Flags as given on the command line (nil when absent).
    public struct Flags: Sendable {
        public var host: String?
        public var port: Int?
        public var dataDirectory: String?
        public var signup: String?
        public var logLevel: String?
        public var logFormat: String?
        public var publicURL: String?
        public var databaseURL: String?
        public var keystore: String?
        public var pkcs11Module: String?
        public var pkcs11TokenLabel: String?
        public var mcpNoReveal: Bool
        /// `--trusted-proxy CIDR`, repeatable; when given, replaces `KEYHOLD_TRUSTED_PROXIES`.
        public var trustedProxies: [String]
        public var webhookAllowPrivate: Bool
        public var consoleDirectory: String?
        public var tlsCertificate: String?
        public var tlsKey: String?
        public var tlsClientCA: String?
        public var metrics: Bool
        public var metricsListen: String?

        public init(
            host: String? = nil, port: Int? = nil, dataDirectory: String? = nil, signup: String? = nil,
            logLevel: String? = nil, publicURL: String? = nil, databaseURL: String? = nil, keystore: String? = nil,
            pkcs11Module: String? = nil, pkcs11TokenLabel: String? = nil, mcpNoReveal: Bool = false,
            trustedProxies: [String] = [], webhookAllowPrivate: Bool = false, consoleDirectory: String? = nil,
            logFormat: String? = nil, tlsCertificate: String? = nil, tlsKey: String? = nil, tlsClientCA: String? = nil,
            metrics: Bool = false, metricsListen: String? = nil
        ) {
            self.metrics = metrics
            self.metricsListen = metricsListen
            self.tlsCertificate = tlsCertificate
            self.tlsKey = tlsKey
            self.tlsClientCA = tlsClientCA
            self.logFormat = logFormat
            self.consoleDirectory = consoleDirectory
            self.webhookAllowPrivate = webhookAllowPrivate
            self.trustedProxies = trustedProxies
            self.mcpNoReveal = mcpNoReveal
            self.databaseURL = databaseURL
            self.keystore = keystore
            self.pkcs11Module = pkcs11Module
            self.pkcs11TokenLabel = pkcs11TokenLabel
            self.host = host
            self.port = port
            self.dataDirectory = dataDirectory
            self.signup = signup
            self.logLevel = logLevel
            self.publicURL = publicURL
        }
    }

    public init(flags: Flags = .init(), environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        func env(_ name: String) -> String? {
            guard let value = environment["KEYHOLD_" + name], !value.isEmpty else { return nil }
            return value
        }
        host = flags.host ?? env("HOST") ?? "127.0.0.1"
        let port = flags.port ?? env("PORT").map { Int($0) ?? -1 } ?? 8443
        guard (0...65535).contains(port) else {
            throw KeyholdError.badRequest("port must be between 0 and 65535")
        }
        self.port = port
        dataDirectory = flags.dataDirectory ?? env("DATA_DIR") ?? "./keyhold-data"
        guard let signup = SignupMode(rawValue: flags.signup ?? env("SIGNUP") ?? "open") else {
            throw KeyholdError.badRequest("signup must be open or closed")
        }
        self.signup = signup
        guard let cost = Int(env("BCRYPT_COST") ?? "12"), (10...16).contains(cost) else {
            throw KeyholdError.badRequest("KEYHOLD_BCRYPT_COST must be between 10 and 16")
        }
        bcryptCost = cost
        guard let level = Logger.Level(rawValue: flags.logLevel ?? env("LOG_LEVEL") ?? "info") else {
            throw KeyholdError.badRequest("log level must be one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = level
        guard let format = LogFormat(rawValue: flags.logFormat ?? env("LOG_FORMAT") ?? "text") else {
            throw KeyholdError.badRequest("log format must be text or json")
        }
        logFormat = format
        tlsCertificate = flags.tlsCertificate ?? env("TLS_CERT")
        tlsKey = flags.tlsKey ?? env("TLS_KEY")
        tlsClientCA = flags.tlsClientCA ?? env("TLS_CLIENT_CA")
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            throw KeyholdError.badRequest("--tls-cert and --tls-key go together")
        }
        guard tlsClientCA == nil || tlsCertificate != nil else {
            throw KeyholdError.badRequest("--tls-client-ca needs --tls-cert and --tls-key")
        }
        switch env("METRICS") {
        case nil, "0", "false": metrics = flags.metrics
        case "1", "true": metrics = true
        default: throw KeyholdError.badRequest("KEYHOLD_METRICS must be true or false")
        }
        if let listen = flags.metricsListen ?? env("METRICS_LISTEN") {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                (0...65535).contains(port), colon != listen.startIndex
            else { throw KeyholdError.badRequest("--metrics-listen must be HOST:PORT, e.g. 127.0.0.1:9464") }
            var host = String(listen[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            metricsListen = (host, port)
            metrics = true
        }
        metricsToken = env("METRICS_TOKEN")
        if let token = metricsToken, token.utf8.count < 16 {
            throw KeyholdError.badRequest("KEYHOLD_METRICS_TOKEN must be at least 16 characters")
        }
        if metrics, metricsListen == nil, metricsToken == nil {
            throw KeyholdError.badRequest(
                "--metrics on the API's listener needs KEYHOLD_METRICS_TOKEN (scrapes send it as a bearer token), or use --metrics-listen")
        }
        let scheme = tlsCertificate == nil ? "http" : "https"
        publicURL = flags.publicURL ?? env("PUBLIC_URL") ?? "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        masterKey = env("MASTER_KEY")
        guard let keystore = KeystoreKind(rawValue: flags.keystore ?? env("KEYSTORE") ?? "software") else {
            throw KeyholdError.badRequest("keystore must be software or pkcs11")
        }
        self.keystore = keystore
        pkcs11Module = flags.pkcs11Module ?? env("PKCS11_MODULE")
        pkcs11TokenLabel = flags.pkcs11TokenLabel ?? env("PKCS11_TOKEN_LABEL")
        if let file = env("PKCS11_PIN_FILE") {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw KeyholdError.badRequest("KEYHOLD_PKCS11_PIN_FILE cannot be read")
            }
            pkcs11PIN = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            pkcs11PIN = env("PKCS11_PIN")
        }
        if keystore == .pkcs11, pkcs11Module == nil || pkcs11TokenLabel == nil || pkcs11PIN == nil {
            throw KeyholdError.badRequest(
                "--keystore pkcs11 needs --pkcs11-module, --pkcs11-token-label and KEYHOLD_PKCS11_PIN (or KEYHOLD_PKCS11_PIN_FILE)")
        }
        guard let rate = Double(env("RATE_LIMIT") ?? "100"), rate >= 0, let burst = Double(env("RATE_BURST") ?? "200"),
            burst >= 1
        else { throw KeyholdError.badRequest("KEYHOLD_RATE_LIMIT must be ≥ 0 and KEYHOLD_RATE_BURST ≥ 1") }
        rateLimit = rate
        rateBurst = burst
        guard let interval = Int(env("AUTH_FAILURE_INTERVAL") ?? "10"), (1...3600).contains(interval) else {
            throw KeyholdError.badRequest("KEYHOLD_AUTH_FAILURE_INTERVAL must be between 1 and 3600 seconds")
        }
        authFailureInterval = interval
        switch env("MCP_NO_REVEAL") {
        case nil, "0", "false": mcpNoReveal = flags.mcpNoReveal
        case "1", "true": mcpNoReveal = true
        default: throw KeyholdError.badRequest("KEYHOLD_MCP_NO_REVEAL must be true or false")
        }
        switch env("WEBHOOK_ALLOW_PRIVATE") {
        case nil, "0", "false": webhookAllowPrivate = flags.webhookAllowPrivate
        case "1", "true": webhookAllowPrivate = true
        default: throw KeyholdError.badRequest("KEYHOLD_WEBHOOK_ALLOW_PRIVATE must be true or false")
        }
        outboundCAFile = env("OUTBOUND_CA_FILE")
        if let file = outboundCAFile, !FileManager.default.isReadableFile(atPath: file) {
            throw KeyholdError.badRequest("KEYHOLD_OUTBOUND_CA_FILE '\(file)' cannot be read")
        }
        consoleDirectory = flags.consoleDirectory ?? env("CONSOLE_DIR")
        if let directory = consoleDirectory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory + "/index.html", isDirectory: &isDirectory),
                !isDirectory.boolValue
            else { throw KeyholdError.badRequest("the console directory '\(directory)' has no index.html") }
        }
        let proxies = flags.trustedProxies.isEmpty
            ? (env("TRUSTED_PROXIES")?.split(separator: ",").map(String.init) ?? []) : flags.trustedProxies
        trustedProxies = try proxies.map { text in
            let text = text.trimmingCharacters(in: .whitespaces)
            guard !text.contains("%"), let cidr = CIDR(text) else {
                throw KeyholdError.badRequest("trusted proxy '\(text)' is not an IPv4 or IPv6 address or CIDR network")
            }
            return cidr
        }
        databaseURL = flags.databaseURL ?? env("DATABASE_URL")
        if let file = env("DATABASE_PASSWORD_FILE") {
            guard let url = databaseURL else {
                throw KeyholdError.badRequest("KEYHOLD_DATABASE_PASSWORD_FILE needs a database URL")
            }
            guard let data = FileManager.default.contents(atPath: file) else {
                throw KeyholdError.badRequest("KEYHOLD_DATABASE_PASSWORD_FILE cannot be read")
            }
            let password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
            databaseURL = try Self.url(url, withPassword: password)
        }
    }

    /// Whether the listening address is only reachable from this machine.
    public var isLoopback: Bool { ["127.0.0.1", "::1", "localhost"].contains(host) || host.hasPrefix("127.") }

    /// The URL with its password replaced (percent-encoded), for `KEYHOLD_DATABASE_PASSWORD_FILE`.
    static func url(_ url: String, withPassword password: String) throws -> String {
        guard var components = URLComponents(string: url), components.host != nil else {
            throw KeyholdError.badRequest("The database URL is not a postgres:// URL")
        }
        components.password = password
        guard let result = components.string else { throw KeyholdError.badRequest("The database password cannot be used") }
        return result
    }

    /// The database URL without its password, for logs.
    public var redactedDatabaseURL: String? {
        guard let databaseURL else { return nil }
        guard var components = URLComponents(string: databaseURL) else { return "<unparseable>" }
        if components.password != nil { components.password = "REDACTED" }
        return components.string ?? "<unparseable>"
    }

    public var description: String {
        "host=\(host) port=\(port) data_dir=\(dataDirectory) signup=\(signup.rawValue) bcrypt_cost=\(bcryptCost) "
            + "log_format=\(logFormat.rawValue) "
            + "public_url=\(publicURL) master_key=\(masterKey == nil ? "file" : "<REDACTED>") "
            + "database=\(redactedDatabaseURL ?? "sqlite") keystore=\(keystore.rawValue)"
            + (keystore == .pkcs11 ? " pkcs11_module=\(pkcs11Module ?? "") pkcs11_token=\(pkcs11TokenLabel ?? "")" : "")
            + (webhookAllowPrivate ? " webhook_allow_private=true" : "")
            + (consoleDirectory.map { " console_dir=\($0)" } ?? "")
            + (metrics ? " metrics=" + (metricsListen.map { "\($0.host):\($0.port)" } ?? "api-listener")
                + (metricsToken == nil ? "" : " metrics_token=<REDACTED>") : "")
            + (tlsCertificate.map { " tls_cert=\($0)" } ?? "") + (tlsClientCA.map { " tls_client_ca=\($0)" } ?? "")
            + (trustedProxies.isEmpty ? "" : " trusted_proxies=\(trustedProxies.map(\.description).joined(separator: ","))")
    }
}

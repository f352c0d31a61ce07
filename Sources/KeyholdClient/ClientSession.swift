import Foundation

/// What `keyhold login` saves: `$XDG_CONFIG_HOME/keyhold/config.json` (or `~/.config/keyhold/config.json`), the file
/// 0600 in a 0700 folder, written whole to a temporary file and renamed over the old one.
public struct ClientConfig: Codable, Sendable, Equatable {
    public var url: String?
    public var vault: String?
    public var session: Session?

    public struct Session: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable { case password, apiKey = "api_key", agent }
        public var kind: Kind
        public var email: String?
        public var accessToken: String?
        public var refreshToken: String?
        /// Seconds since 1970 when the access token expires.
        public var expiresAt: Double?
        public var apiKey: String?
        public var agentID: String?
        public var agentAPIKey: String?
        /// For a password session: the random secret `keyhold run --fallback` derives its cache key from (an API
        /// or agent key serves itself).
        public var fallbackSecret: String?

        enum CodingKeys: String, CodingKey {
            case kind, email
            case accessToken = "access_token"
            case refreshToken = "refresh_token"
            case expiresAt = "expires_at"
            case apiKey = "api_key"
            case agentID = "agent_id"
            case agentAPIKey = "agent_api_key"
            case fallbackSecret = "fallback_secret"
        }

        public init(kind: Kind) { self.kind = kind }
    }

    public init() {}

    public static func file(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        let base =
            environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: environment["HOME"] ?? NSHomeDirectory()).appendingPathComponent(".config")
        return base.appendingPathComponent("keyhold").appendingPathComponent("config.json")
    }

    public static func load(from file: URL) throws -> ClientConfig {
        guard let data = FileManager.default.contents(atPath: file.path) else { return ClientConfig() }
        do {
            return try JSONDecoder().decode(ClientConfig.self, from: data)
        } catch {
            throw ClientError("the config file \(file.path) is not valid; remove it and log in again")
        }
    }

    public func save(to file: URL) throws {
        let folder = file.deletingLastPathComponent()
        let manager = FileManager.default
        try manager.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try manager.setAttributes([.posixPermissions: 0o700], ofItemAtPath: folder.path)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let temporary = folder.appendingPathComponent(".config.json.\(getpid())")
        guard manager.createFile(atPath: temporary.path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw ClientError("cannot write \(temporary.path)")
        }
        guard rename(temporary.path, file.path) == 0 else {
            unlink(temporary.path)
            throw ClientError("cannot replace \(file.path)")
        }
    }
}

/// Where a client command talks to and as whom: flags, then `KEYHOLD_*` (or 1Claw's `ONECLAW_*`) variables, then
/// the saved config. Credentials come from the environment or the config file, never from argv.
public struct ClientContext: Sendable {
    public let environment: [String: String]
    public let configFile: URL
    public var config: ClientConfig
    public let url: String

    public static let defaultURL = "http://127.0.0.1:8443"

    public init(url flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.environment = environment
        configFile = ClientConfig.file(environment: environment)
        config = try ClientConfig.load(from: configFile)
        url = flag ?? Self.variable("URL", "BASE_URL", in: environment) ?? config.url ?? Self.defaultURL
    }

    /// `KEYHOLD_<name>`, else `ONECLAW_<oneclaw>`; empty counts as unset.
    public static func variable(_ name: String, _ oneclaw: String? = nil, in environment: [String: String]) -> String? {
        for key in ["KEYHOLD_" + name, "ONECLAW_" + (oneclaw ?? name)] {
            if let value = environment[key], !value.isEmpty { return value }
        }
        return nil
    }

    public func vault(_ flag: String?) throws -> String {
        guard let vault = flag ?? Self.variable("VAULT", "VAULT_ID", in: environment) ?? config.vault else {
            throw ClientError("no vault: pass --vault, set KEYHOLD_VAULT, or run `keyhold vault use ID`")
        }
        return vault
    }

    public var anonymous: KeyholdAPI { KeyholdAPI(baseURL: url, bearer: nil) }

    /// The secret of the credentials in use that a local cache may be keyed on: the environment's token or key,
    /// else the saved session's API or agent key, else its random fallback secret.
    public func credentialSecret() throws -> String {
        let env = environment
        if let secret = Self.variable("TOKEN", in: env) ?? Self.variable("API_KEY", in: env)
            ?? Self.variable("AGENT_API_KEY", in: env) ?? config.session?.apiKey ?? config.session?.agentAPIKey
            ?? config.session?.fallbackSecret
        {
            return secret
        }
        throw ClientError("no credential to key the fallback cache with: log in again")
    }

    /// The API as the caller: environment credentials first, then the saved session (refreshed when its access
    /// token has expired, and saved again).
    public mutating func api() async throws -> KeyholdAPI {
        let env = environment
        if let token = Self.variable("TOKEN", in: env) { return anonymous.with(bearer: token) }
        if let key = Self.variable("API_KEY", in: env) { return anonymous.with(bearer: key) }
        if let agentID = Self.variable("AGENT_ID", in: env), let key = Self.variable("AGENT_API_KEY", in: env) {
            return anonymous.with(bearer: try await Self.agentToken(anonymous, agentID: agentID, key: key).token)
        }
        guard var session = config.session else {
            throw ClientError("not logged in: run `keyhold login`, or set KEYHOLD_TOKEN, KEYHOLD_API_KEY or KEYHOLD_AGENT_ID with KEYHOLD_AGENT_API_KEY")
        }
        switch session.kind {
        case .apiKey:
            guard let key = session.apiKey else { throw ClientError("the saved session is incomplete; log in again") }
            return anonymous.with(bearer: key)
        case .password, .agent:
            if let token = session.accessToken, let expiresAt = session.expiresAt,
                Date().timeIntervalSince1970 < expiresAt - 30
            {
                return anonymous.with(bearer: token)
            }
            if session.kind == .agent, let agentID = session.agentID, let key = session.agentAPIKey {
                let issued = try await Self.agentToken(anonymous, agentID: agentID, key: key)
                session.accessToken = issued.token
                session.expiresAt = issued.expiresAt
            } else if let refresh = session.refreshToken {
                let reply = try await anonymous.send("POST", "/v1/auth/refresh", json: ["refresh_token": refresh])
                guard reply.status == 200, let token = reply.object["access_token"] as? String else {
                    throw ClientError("the saved session has ended: run `keyhold login`")
                }
                session.accessToken = token
                session.refreshToken = reply.object["refresh_token"] as? String
                session.expiresAt = Self.expiry(reply.object)
            } else {
                throw ClientError("the saved session has ended: run `keyhold login`")
            }
            config.session = session
            try config.save(to: configFile)
            return anonymous.with(bearer: session.accessToken)
        }
    }

    static func expiry(_ object: JSONObject) -> Double {
        Date().timeIntervalSince1970 + ((object["expires_in"] as? Double) ?? (object["expires_in"] as? Int).map(Double.init) ?? 900)
    }

    public static func agentToken(_ api: KeyholdAPI, agentID: String, key: String) async throws -> (token: String, expiresAt: Double) {
        let reply = try await api.call("POST", "/v1/auth/agent-token", json: ["agent_id": agentID, "api_key": key])
        guard let token = reply.object["access_token"] as? String else { throw ClientError("the server sent no token") }
        return (token, expiry(reply.object))
    }
}

import AsyncHTTPClient
import Foundation
import NIOSSL
import NIOCore
import NIOFoundationCompat

/// A failure a client command reports as one line: the server's `detail` (RFC 7807) or what went wrong locally.
/// It never carries a credential or a secret value.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let status: Int?
    /// The server could not be reached at all (as opposed to answering with an error).
    public let unreachable: Bool
    /// A read that needs a person's approval first (`approval_required`): the request to wait for.
    public let approvalRequestID: String?

    public init(_ message: String, status: Int? = nil, unreachable: Bool = false, approvalRequestID: String? = nil) {
        self.message = message
        self.status = status
        self.unreachable = unreachable
        self.approvalRequestID = approvalRequestID
    }

    public var description: String { status.map { "\(message) (HTTP \($0))" } ?? message }
}

/// A JSON object as the server sent it.
public typealias JSONObject = [String: Any]

/// How requests reach the server: over the network, or (for the MCP endpoint inside `keyhold serve`) through the
/// server's own router, middlewares included.
public protocol APITransport: Sendable {
    /// `path` includes the query; `headers` are sent as they are.
    func send(method: String, path: String, headers: [(String, String)], body: Data?) async throws
        -> (status: Int, headers: [(String, String)], body: Data)
}

/// Requests over HTTP with async-http-client.
public struct HTTPTransport: APITransport {
    public let baseURL: String

    /// A client that reports a server it cannot connect to at once (the shared one retries until the request's
    /// deadline, a minute of silence for a command line). It trusts the system's certificate authorities, or those
    /// of the PEM file `SSL_CERT_FILE` names (as OpenSSL, curl and Python do), for a server with a private CA.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        if let file = ProcessInfo.processInfo.environment["SSL_CERT_FILE"], !file.isEmpty {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(file)
            configuration.tlsConfiguration = tls
        }
        configuration.timeout.connect = .seconds(10)
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    public init(baseURL: String) { self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL }

    public func send(method: String, path: String, headers: [(String, String)], body: Data?) async throws
        -> (status: Int, headers: [(String, String)], body: Data)
    {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(data: body)) }
        let response: HTTPClientResponse
        do {
            response = try await Self.client.execute(request, timeout: .seconds(60))
        } catch {
            throw ClientError("cannot reach the server at \(baseURL): \(KeyholdAPI.reason(error))", unreachable: true)
        }
        let collected = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return (Int(response.status.code), response.headers.map { ($0.name, $0.value) }, Data(buffer: collected))
    }
}

/// The Keyhold (1Claw-compatible) HTTP API, as a client uses it: one request at a time, JSON in and out.
public struct KeyholdAPI: Sendable {
    public let transport: any APITransport
    /// The Bearer credential (an access token or a `1ck_` key); nil for the public routes.
    public let bearer: String?

    public init(baseURL: String, bearer: String?) {
        self.init(transport: HTTPTransport(baseURL: baseURL), bearer: bearer)
    }

    public init(transport: any APITransport, bearer: String?) {
        self.transport = transport
        self.bearer = bearer
    }

    public func with(bearer: String?) -> KeyholdAPI { KeyholdAPI(transport: transport, bearer: bearer) }

    /// A response: its status, headers and body (raw, and parsed when it is a JSON object).
    public struct Reply: Sendable {
        public let status: Int
        public var headers: [(String, String)] = []
        public let body: Data

        /// The first value of a header (names compared case-insensitively).
        public func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }

        public var object: JSONObject {
            (try? JSONSerialization.jsonObject(with: body)) as? JSONObject ?? [:]
        }
    }

    /// Sends a request and returns the reply when its status is 2xx; otherwise throws the server's detail.
    @discardableResult
    public func call(_ method: String, _ path: String, json: Any? = nil) async throws -> Reply {
        let reply = try await send(method, path, json: json)
        guard (200..<300).contains(reply.status) else {
            let object = reply.object
            let detail = object["detail"] as? String ?? object["title"] as? String ?? "request failed"
            throw ClientError(
                detail, status: reply.status,
                approvalRequestID: object["type"] as? String == "approval_required" ? object["approval_request_id"] as? String : nil)
        }
        return reply
    }

    public func send(_ method: String, _ path: String, json: Any? = nil) async throws -> Reply {
        var headers = [("Accept", "application/json"), ("User-Agent", "keyhold-cli")]
        if let bearer { headers.append(("Authorization", "Bearer " + bearer)) }
        var body: Data?
        if let json {
            headers.append(("Content-Type", "application/json"))
            body = try JSONSerialization.data(withJSONObject: json)
        }
        let (status, fields, data) = try await transport.send(method: method, path: path, headers: headers, body: body)
        return Reply(status: status, headers: fields, body: data)
    }

    static func reason(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("refused") { return "connection refused" }
        if text.lowercased().contains("timeout") || text.contains("timed out") { return "timed out" }
        if text.contains("resolve") || text.contains("NXDOMAIN") || text.contains("lookup") { return "the host name does not resolve" }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    /// A path as a URL path: each segment percent-encoded (secret paths normally need nothing).
    public static func escape(_ path: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-_.~")
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.addingPercentEncoding(withAllowedCharacters: allowed) ?? String($0) }
            .joined(separator: "/")
    }

    /// `/v1/vaults/{vault}/{collection}/{path}` (`secrets`, `secret-versions`, `secret-rotate`, …), escaped.
    public static func route(_ collection: String, vault: String, path: String) -> String {
        "/v1/vaults/\(escape(vault))/\(collection)/\(escape(path))"
    }

    // MARK: secrets

    /// Every secret's metadata under `prefix`, following `next_cursor` to the end.
    public func listSecrets(vault: String, prefix: String?) async throws -> [JSONObject] {
        var items: [JSONObject] = []
        var cursor: String?
        repeat {
            var query = [URLQueryItem(name: "limit", value: "1000")]
            if let prefix, !prefix.isEmpty { query.append(URLQueryItem(name: "prefix", value: prefix)) }
            if let cursor { query.append(URLQueryItem(name: "cursor", value: cursor)) }
            var components = URLComponents()
            components.queryItems = query
            let page = try await call("GET", "/v1/vaults/\(Self.escape(vault))/secrets" + (components.string ?? "")).object
            items += page["secrets"] as? [JSONObject] ?? []
            cursor = page["next_cursor"] as? String
        } while cursor != nil
        return items
    }

    /// The route that reads a secret's value: its latest version, or `version`.
    public static func secretRoute(vault: String, path: String, version: Int?) -> String {
        version.map { route("secret-version", vault: vault, path: path) + "/\($0)" } ?? route("secrets", vault: vault, path: path)
    }

    public func secret(vault: String, path: String, version: Int? = nil) async throws -> JSONObject {
        try await call("GET", Self.secretRoute(vault: vault, path: path, version: version)).object
    }

    // MARK: environment variables

    /// `GET /v1/vaults/{vault}/env-vars/resolve`: the variables of one environment (an agent may pass nil for the one
    /// it is tagged with), shared < vault < branch override.
    public func resolveEnvironment(vault: String, environment: String?, gitBranch: String?) async throws -> [String: String] {
        var components = URLComponents()
        components.queryItems = [("environment", environment), ("git_branch", gitBranch)].compactMap { name, value in
            value.map { URLQueryItem(name: name, value: $0) }
        }
        let query = components.queryItems!.isEmpty ? "" : components.percentEncodedQuery.map { "?" + $0 } ?? ""
        let reply = try await call("GET", "/v1/vaults/\(Self.escape(vault))/env-vars/resolve" + query).object
        guard let vars = reply["vars"] as? [String: String] else { throw ClientError("the server's resolve reply has no vars") }
        return vars
    }
}

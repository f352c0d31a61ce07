import Foundation
import HTTPTypes
import Hummingbird
import KeyholdClient
import KeyholdCore
import KeyholdMCP
import MCP
import NIOCore
import Synchronization

/// MCP's streamable HTTP transport at `/mcp` (stateless: every POST is answered with one JSON response). The caller
/// sends its own credential as `Authorization: Bearer` (an agent JWT, a `1ck_` key, or an agent's `ocv_` key, which
/// is exchanged first) and the vault as `X-Vault-ID`. Each tool call becomes an ordinary API request that runs
/// through this server's own router, middlewares included, with the caller's address: the same authentication,
/// authorizer, audit events and rate limits as any HTTP client. MCP is never a side door.
struct MCPController {
    /// The router's responder, filled in once the router is complete (it serves the in-process requests).
    let responder: ResponderBox
    let reveal: Bool

    final class ResponderBox: Sendable {
        let responder = Mutex<RouterResponder<KeyholdRequestContext>?>(nil)
    }

    static let maxBodyBytes = 1024 * 1024

    func register(on router: Router<KeyholdRequestContext>) {
        router.post("/mcp") { request, context in try await handle(request, context) }
        for method in [HTTPRequest.Method.get, .delete] {
            router.on("/mcp", method: method) { _, _ in
                // Stateless: no server-initiated stream and no session to end.
                var headers = HTTPFields()
                headers[.allow] = "POST"
                return Response(status: .methodNotAllowed, headers: headers)
            }
        }
    }

    func handle(_ request: Request, _ context: KeyholdRequestContext) async throws -> Response {
        guard let credential = AuthenticationMiddleware.bearer(request) else { throw KeyholdError.unauthenticated }
        guard let vault = request.headers[.vaultID], UUID(fast: vault) != nil else {
            throw KeyholdError.badRequest("X-Vault-ID (a vault id) is required")
        }
        let body = try await request.body.collect(upTo: Self.maxBodyBytes)
        try RequestBody.requireUnambiguous(body)
        guard let responder = responder.responder.withLock({ $0 }) else {
            throw KeyholdError(.unavailable, "The MCP endpoint is not ready")
        }
        var inner = context
        inner.transport = "mcp-http"
        let transport = InProcessTransport(responder: responder, context: inner)
        var api = KeyholdAPI(transport: transport, bearer: credential)
        if credential.hasPrefix("ocv_") {
            let reply = try await api.with(bearer: nil).send("POST", "/v1/auth/agent-token", json: ["api_key": credential])
            guard reply.status == 200, let token = reply.object["access_token"] as? String else {
                throw KeyholdError(.unauthorized, "Invalid agent_id or api_key")
            }
            api = api.with(bearer: token)
        }
        let tools = SecretTools(credentials: CredentialSource(api: api), vault: vault, reveal: reveal)
        let server = await KeyholdMCPServer.make(tools: tools)
        let mcp = StatelessHTTPServerTransport()
        try await server.start(transport: mcp)
        defer { Task { await server.stop() } }
        var headers: [String: String] = [:]
        for field in request.headers where field.name != .authorization { headers[field.name.rawName] = field.value }
        let answer = await mcp.handleRequest(
            MCP.HTTPRequest(method: "POST", headers: headers, body: Data(buffer: body), path: "/mcp"))
        var fields = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        return Response(
            status: .init(code: answer.statusCode), headers: fields,
            body: answer.bodyData.map { .init(byteBuffer: ByteBuffer(data: $0)) } ?? .init())
    }
}

/// Requests of the MCP tools, answered by this server's router as if they had come over the caller's connection.
struct InProcessTransport: APITransport {
    let responder: RouterResponder<KeyholdRequestContext>
    let context: KeyholdRequestContext

    func send(method: String, path: String, headers: [(String, String)], body: Data?) async throws
        -> (status: Int, headers: [(String, String)], body: Data)
    {
        var fields = HTTPFields()
        for (name, value) in headers {
            if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
        }
        let head = HTTPRequest(
            method: HTTPRequest.Method(method) ?? .get, scheme: "http", authority: "keyhold.mcp", path: path,
            headerFields: fields)
        let request = Request(head: head, body: .init(buffer: ByteBuffer(data: body ?? Data())))
        let response = try await responder.respond(to: request, context: context)
        let collector = BodyCollector()
        try await response.body.write(collector)
        return (
            Int(response.status.code), response.headers.map { ($0.name.rawName, $0.value) }, collector.data.withLock { $0 }
        )
    }

    final class BodyCollector: ResponseBodyWriter, Sendable {
        let data = Mutex(Data())

        func write(_ buffer: ByteBuffer) async throws { data.withLock { $0.append(contentsOf: buffer.readableBytesView) } }

        func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}

extension HTTPField.Name {
    static let vaultID = Self("X-Vault-ID")!
}

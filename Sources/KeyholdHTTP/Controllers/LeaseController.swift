import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore
import NIOCore

/// Capability leases (issue 23): `/v1/vaults/{vault_id}/leases` to create, list and revoke them, and `/v1/proxy`,
/// where a lease's holder has Keyhold send a request with the secret injected, and gets the upstream's answer back
/// with the value (in every encoding `LeaseRedaction` knows) replaced by `[REDACTED]`.
struct LeaseController {
    let leases: LeaseService
    let outbound: Outbound

    static let connectTimeout = TimeAmount.seconds(10)
    static let readTimeout = TimeAmount.seconds(30)
    /// Until the upstream's status and headers have arrived.
    static let headTimeout = TimeAmount.seconds(60)
    /// The most an upstream's body may hold; a longer one is cut there (and the result event says so).
    static let maxResponseBytes = 16 << 20

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.post("/v1/vaults/:vault_id/leases") { request, context in
            let caller = try context.requireCaller()
            let vaultID = try context.vaultID()
            let body = try await RequestBody.decode(CreateLeaseRequest.self, from: request)
            let (lease, token) = try await leases.create(vaultID: vaultID, try body.draft(), by: caller)
            return try JSONResponse.make(LeaseResponse(lease, token: token), status: .created)
        }
        router.get("/v1/vaults/:vault_id/leases") { request, context in
            let caller = try context.requireCaller()
            let (limit, offset) = try Self.page(request)
            let list = try await leases.list(vaultID: try context.vaultID(), limit: limit, offset: offset, by: caller)
            return try JSONResponse.make(LeaseListResponse(leases: list.map { LeaseResponse($0) }))
        }
        router.delete("/v1/vaults/:vault_id/leases/:lease_id") { _, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("lease_id", notFound: LeaseService.notFound)
            _ = try await leases.revoke(vaultID: try context.vaultID(), id: id, by: caller)
            return JSONResponse.noContent()
        }
        router.post("/v1/proxy") { request, context in
            try await proxy(try await RequestBody.decode(ProxyRequestBody.self, from: request), by: try context.requireCaller())
        }
    }

    static func page(_ request: Request) throws -> (limit: Int, offset: Int) {
        let query = request.uri.queryParameters
        let limit = try query.get("limit").map { text in
            guard let value = Int(text), (1...500).contains(value) else { throw KeyholdError.badRequest("limit must be 1-500") }
            return value
        } ?? 100
        let offset = try query.get("offset").map { text in
            guard let value = Int(text), value >= 0 else { throw KeyholdError.badRequest("offset must be 0 or more") }
            return value
        } ?? 0
        return (limit, offset)
    }

    /// Checks, spends, sends, and streams the answer back redacted; the use's result is recorded once the body ends.
    func proxy(_ body: ProxyRequestBody, by caller: Caller) async throws -> Response {
        let request = try body.request()
        let (authorized, route) = try await leases.authorize(request, by: caller) { target in
            await outbound.route(scheme: target.scheme, host: target.host)
        }
        let prepared = try await leases.spend(authorized, request, by: caller)
        let client = outbound.client(for: route, connectTimeout: Self.connectTimeout, readTimeout: Self.readTimeout)
        var outgoing = HTTPClientRequest(url: prepared.url)
        outgoing.method = .init(rawValue: prepared.method)
        for (name, value) in prepared.headers { outgoing.headers.add(name: name, value: value) }
        // An encoded body could hide the value from redaction: ask for none, and refuse one sent anyway.
        outgoing.headers.replaceOrAdd(name: "Accept-Encoding", value: "identity")
        if !prepared.body.isEmpty { outgoing.body = .bytes(ByteBuffer(bytes: prepared.body)) }
        let leases = self.leases
        func fail(_ reason: String, status: Int? = nil) async throws -> KeyholdError {
            try? await client.shutdown()
            try await leases.recordResult(
                prepared, status: status, bytesSent: prepared.body.count, bytesReceived: 0, redacted: 0, error: reason,
                by: caller)
            return KeyholdError(.badGateway, "The upstream request failed: \(reason)")
        }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(outgoing, timeout: Self.headTimeout)
        } catch {
            throw try await fail(Outbound.describe(error, timeout: Self.headTimeout))
        }
        let status = Int(response.status.code)
        if let encoding = response.headers.first(name: "Content-Encoding"), encoding.lowercased() != "identity" {
            throw try await fail("the upstream sent an encoded body (\(encoding.prefix(20))), which cannot be checked for the value", status: status)
        }
        if let length = response.headers.first(name: "Content-Length").flatMap(Int.init), length > Self.maxResponseBytes {
            throw try await fail("the upstream's body is larger than \(Self.maxResponseBytes) bytes", status: status)
        }
        var headers = HTTPFields()
        var headerRedactions = 0
        for (name, value) in response.headers where !Self.hopByHop.contains(name.lowercased()) {
            guard let field = HTTPField.Name(name) else { continue }
            var redactor = StreamRedactor(patterns: prepared.redactions)
            let clean = redactor.feed(Array(value.utf8)) + redactor.finish()
            headerRedactions += redactor.count
            headers.append(HTTPField(name: field, value: String(decoding: clean, as: UTF8.self)))
        }
        headers[Self.upstreamHeader] = "upstream"
        let upstream = response.body
        let patterns = prepared.redactions
        let redactedInHeaders = headerRedactions
        return Response(
            status: .init(code: status), headers: headers,
            body: ResponseBody { writer in
                var redactor = StreamRedactor(patterns: patterns)
                var received = 0
                var failure: String?
                do {
                    for try await chunk in upstream {
                        received += chunk.readableBytes
                        if received > Self.maxResponseBytes {
                            failure = "the upstream's body was cut at \(Self.maxResponseBytes) bytes"
                            break
                        }
                        let clean = redactor.feed(chunk.readableBytesView)
                        if !clean.isEmpty { try await writer.write(ByteBuffer(bytes: clean)) }
                    }
                    // A body cut at the cap ends without the held-back tail: it could be the start of the value.
                    let rest = failure == nil ? redactor.finish() : []
                    if !rest.isEmpty { try await writer.write(ByteBuffer(bytes: rest)) }
                } catch {
                    failure = failure ?? Outbound.describe(error, timeout: Self.readTimeout)
                }
                // The result is recorded before the answer ends (a caller that has its answer finds the event); the
                // upstream connection is closed after.
                try? await leases.recordResult(
                    prepared, status: status, bytesSent: prepared.body.count, bytesReceived: received,
                    redacted: redactedInHeaders + redactor.count, error: failure, by: caller)
                var finishing: (any Error)?
                do { try await writer.finish(nil) } catch { finishing = error }
                try? await client.shutdown()
                if let finishing { throw finishing }
            })
    }

    /// Marks a response as the upstream's (Keyhold's own refusals are problem documents without it).
    static let upstreamHeader = HTTPField.Name("Keyhold-Proxy")!

    /// Connection-level headers, and the body's length (redaction changes it): not passed on.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
        "upgrade", "content-length",
    ]
}

/// `POST /v1/vaults/{vault_id}/leases`.
struct CreateLeaseRequest: Decodable {
    let path: String
    let principal_type: String?
    let principal_id: String?
    let scheme: String?
    let host: String
    let port: Int?
    let methods: [String]
    let path_prefix: String?
    let injection: JSONValue
    let max_uses: Int?
    let expires_at: Timestamp?
    let ttl_seconds: Int?
    let description: String?

    static let defaultTTL = 3600

    func draft() throws -> LeaseService.CreateRequest {
        let principal: (kind: PrincipalKind, id: UUID)?
        switch (principal_type, principal_id) {
        case (nil, nil): principal = nil
        case (let type?, let id?):
            guard let kind = PrincipalKind(rawValue: type) else {
                throw KeyholdError.badRequest("principal_type must be user or agent")
            }
            guard let uuid = UUID(uuidString: id) else { throw KeyholdError.badRequest("principal_id must be a UUID") }
            principal = (kind, uuid)
        default: throw KeyholdError.badRequest("principal_type and principal_id go together")
        }
        let host = host.lowercased()
        guard LeaseRules.isHostPattern(host) else {
            throw KeyholdError.badRequest("host must be a DNS name or IPv4 address, or *. and a DNS suffix")
        }
        if let port, !(1...65535).contains(port) { throw KeyholdError.badRequest("port must be 1-65535") }
        guard !methods.isEmpty, methods.count <= 16, methods.allSatisfy(LeaseRules.isMethod) else {
            throw KeyholdError.badRequest("methods must list 1-16 upper-case HTTP methods")
        }
        let prefix = path_prefix ?? "/"
        guard LeaseRules.isPathPrefix(prefix) else {
            throw KeyholdError.badRequest("path_prefix must be / or /-separated segments without dot segments or escapes")
        }
        if let description, description.count > 500 { throw KeyholdError.badRequest("description must be at most 500 characters") }
        let expiresAt: Timestamp
        switch (expires_at, ttl_seconds) {
        case (let at?, nil): expiresAt = at
        case (nil, let ttl):
            let ttl = ttl ?? Self.defaultTTL
            guard ttl >= 1, Int64(ttl) <= LeaseService.maxLifetimeSeconds else {
                throw KeyholdError.badRequest("ttl_seconds must be between 1 and \(LeaseService.maxLifetimeSeconds)")
            }
            expiresAt = Timestamp.now.adding(seconds: Int64(ttl))
        default: throw KeyholdError.badRequest("give expires_at or ttl_seconds, not both")
        }
        return LeaseService.CreateRequest(
            path: try SecretPath(validating: path), principal: principal, scheme: (scheme ?? "https").lowercased(),
            host: host, port: port, methods: Set(methods), pathPrefix: prefix, injection: try LeaseInjection(json: injection),
            maxUses: max_uses, expiresAt: expiresAt, description: description)
    }
}

struct LeaseResponse: Encodable {
    let id: String
    let vault_id: String
    let path: String
    let principal_type: String
    let principal_id: String
    let scheme: String
    let host: String
    let port: WireNullable<Int>
    let methods: [String]
    let path_prefix: String
    let injection: JSONValue
    let max_uses: WireNullable<Int>
    let uses: Int
    let status: String
    let expires_at: Timestamp
    let revoked_at: WireNullable<Timestamp>
    let description: WireNullable<String>
    let created_by: String
    let created_by_type: String
    let created_at: Timestamp
    /// The lease's first token: in the create response only.
    let token: String?

    init(_ lease: CapabilityLease, token: String? = nil) {
        id = lease.id.wire
        vault_id = lease.vaultID.wire
        path = lease.path
        principal_type = lease.principalKind.rawValue
        principal_id = lease.principalID.wire
        scheme = lease.scheme
        host = lease.host
        port = WireNullable(lease.port)
        methods = lease.methods.sorted()
        path_prefix = lease.pathPrefix
        injection = lease.injection.json
        max_uses = WireNullable(lease.maxUses)
        uses = lease.uses
        let now = Timestamp.now
        status =
            lease.revokedAt != nil ? "revoked"
            : now >= lease.expiresAt ? "expired" : lease.maxUses.map { lease.uses >= $0 } == true ? "exhausted" : "active"
        expires_at = lease.expiresAt
        revoked_at = WireNullable(lease.revokedAt)
        description = WireNullable(lease.description)
        created_by = lease.createdBy.wire
        created_by_type = lease.createdByType.rawValue
        created_at = lease.createdAt
        self.token = token
    }
}

struct LeaseListResponse: Encodable {
    let leases: [LeaseResponse]
}

/// `POST /v1/proxy`: the request to send (`body` as text, or `body_base64` for bytes).
struct ProxyRequestBody: Decodable {
    let lease: String
    let method: String
    let url: String
    let headers: [String: String]?
    let body: String?
    let body_base64: String?

    func request() throws -> LeaseService.ProxyRequest {
        let bytes: Data
        switch (body, body_base64) {
        case (nil, nil): bytes = Data()
        case (let text?, nil): bytes = Data(text.utf8)
        case (nil, let encoded?):
            guard let decoded = Data(base64Encoded: encoded) else { throw KeyholdError.badRequest("body_base64 must be base64") }
            bytes = decoded
        default: throw KeyholdError.badRequest("give body or body_base64, not both")
        }
        guard (headers?.count ?? 0) <= 64 else { throw KeyholdError.badRequest("headers may hold at most 64 fields") }
        return LeaseService.ProxyRequest(
            token: lease, method: method, url: url, headers: (headers ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
            body: bytes)
    }
}

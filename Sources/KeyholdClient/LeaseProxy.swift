import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// `keyhold run --proxy`: a forward proxy on 127.0.0.1 for the child, which sees only placeholders. A request that
/// carries `keyhold-lease:<lease id>` (in a header, or as a query parameter's value) is sent through the server's
/// `POST /v1/proxy` with that lease's token, without the placeholder: the server injects the secret where the lease
/// says, and the answer comes back redacted. Every other request is forwarded as it is. HTTPS is terminated here with
/// a certificate per host from a CA made for this run (its key never leaves memory), which the child trusts through
/// the file `caBundle` names.
public final class LeaseProxy: Sendable {
    public let port: Int
    /// The run's CA certificate (PEM).
    public let caPEM: String
    /// The proxy's URL with its per-run credential (`http://keyhold:<random>@127.0.0.1:<port>`): without it, another
    /// local user's process that finds the port is refused (407), so it cannot spend this run's leases.
    public let url: String
    let channel: any Channel

    public static let placeholderPrefix = "keyhold-lease:"
    /// The largest request or response body the proxy holds.
    static let maxBody = 16 << 20

    init(port: Int, caPEM: String, password: String, channel: any Channel) {
        self.port = port
        self.caPEM = caPEM
        url = "http://keyhold:\(password)@127.0.0.1:\(port)"
        self.channel = channel
    }

    /// Starts listening on a free port of 127.0.0.1. `tokens` maps each lease's id to its token.
    public static func start(api: KeyholdAPI, tokens: [UUID: String]) async throws -> LeaseProxy {
        let state = try ProxyState(api: api, tokens: tokens)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try ProxyRequestHandler.install(on: channel.pipeline.syncOperations, state: state, tunnel: nil)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else { throw ClientError("the lease proxy has no port") }
        return LeaseProxy(port: port, caPEM: state.authority.caPEM, password: state.password, channel: channel)
    }

    public func stop() async { try? await channel.close() }

    /// The lease id a token names (its first part), or nil when it is not a lease token.
    public static func leaseID(ofToken token: String) -> UUID? {
        guard token.hasPrefix("khl_"), let first = token.dropFirst(4).split(separator: ".").first,
            let bytes = Data(base64URL: String(first)), bytes.count == 16
        else { return nil }
        return bytes.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
    }

    /// `token` with one more caveat, signed as the server will check it (`s_i = HMAC-SHA256(s_{i-1}, caveat)`): how a
    /// holder hands on less than it holds without asking the server.
    public static func attenuate(_ token: String, with caveat: String) throws -> String {
        var parts = token.dropFirst(4).split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard token.hasPrefix("khl_"), leaseID(ofToken: token) != nil, parts.count >= 2,
            let signature = Data(base64URL: parts[parts.count - 1]), signature.count == 32
        else { throw ClientError("not a lease token (khl_…)") }
        let next = HMAC<SHA256>.authenticationCode(for: Data(caveat.utf8), using: SymmetricKey(data: signature))
        parts.removeLast()
        parts += [Data(caveat.utf8).base64URL, Data(next).base64URL]
        return "khl_" + parts.joined(separator: ".")
    }

    /// The first `keyhold-lease:<uuid>` in `text`.
    static func placeholder(in text: String) -> UUID? {
        guard let range = text.range(of: placeholderPrefix) else { return nil }
        return UUID(uuidString: String(text[range.upperBound...].prefix(36)))
    }
}

/// The run's certificate authority: a P-256 key made at start, a CA certificate valid for a day, and a leaf
/// certificate per host, made on first use.
final class RunAuthority: Sendable {
    let key = P256.Signing.PrivateKey()
    let name: DistinguishedName
    let caPEM: String
    private let contexts = Mutex<[String: NIOSSLContext]>([:])

    init() throws {
        name = try DistinguishedName { CommonName("Keyhold run --proxy CA \(UUID().uuidString.prefix(8))") }
        let now = Date()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: publicKey, notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(86_400), issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: .init(key))
        caPEM = try ca.serializeAsPEM().pemString
    }

    /// A TLS server context presenting a certificate for `host` (a DNS name or an IP address).
    func context(for host: String) throws -> NIOSSLContext {
        if let known = contexts.withLock({ $0[host] }) { return known }
        let leafKey = P256.Signing.PrivateKey()
        let now = Date()
        let name: GeneralName =
            if let address = IPv4Address(host) { .ipAddress(ASN1OctetString(contentBytes: ArraySlice(address.rawValue))) }
            else { .dnsName(host) }
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(leafKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(86_400),
            issuer: self.name, subject: try DistinguishedName { CommonName(String(host.prefix(64))) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([name])
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(key.publicKey)).keyIdentifier)
            },
            issuerPrivateKey: .init(key))
        var serializer = DER.Serializer()
        try serializer.serialize(leaf)
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(leafKey.pemRepresentation.utf8), format: .pem)))
        let context = try NIOSSLContext(configuration: configuration)
        contexts.withLock { $0[host] = context }
        return context
    }
}

/// A dotted IPv4 address's four bytes.
struct IPv4Address {
    let rawValue: [UInt8]

    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard let byte = UInt8(part), String(byte) == part else { return nil }
            bytes.append(byte)
        }
        rawValue = bytes
    }
}

/// What every connection of the proxy shares: the API, the lease tokens, the run's CA and a client for requests
/// that carry no placeholder.
final class ProxyState: Sendable {
    let api: KeyholdAPI
    let tokens: [UUID: String]
    let authority: RunAuthority
    let direct: HTTPClient
    /// The proxy's per-run password, and the `Proxy-Authorization` value a client sends with it.
    let password = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) }.map { String(format: "%02x", $0) }.joined()
    var proxyAuthorization: String { "Basic " + Data("keyhold:\(password)".utf8).base64EncodedString() }

    init(api: KeyholdAPI, tokens: [UUID: String]) throws {
        self.api = api
        self.tokens = tokens
        authority = try RunAuthority()
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.decompression = .disabled
        if let file = ProcessInfo.processInfo.environment["SSL_CERT_FILE"], !file.isEmpty {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(file)
            configuration.tlsConfiguration = tls
        }
        direct = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    struct Answer: Sendable {
        var status: Int
        var headers: [(String, String)]
        var body: Data

        static func refusal(_ status: Int, _ text: String) -> Answer {
            Answer(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Data((text + "\n").utf8))
        }
    }

    /// Headers that belong to one connection, or that the proxy sets.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "host",
    ]

    /// Answers one request of the child: through the lease proxy when it carries a placeholder, else directly.
    func answer(method: String, url: String, headers: [(String, String)], body: Data) async -> Answer {
        var placeholder: UUID?
        var kept: [(String, String)] = []
        for (name, value) in headers where !Self.hopByHop.contains(name.lowercased()) {
            if let id = LeaseProxy.placeholder(in: value) {
                placeholder = placeholder ?? id
                continue
            }
            kept.append((name, value))
        }
        var target = url
        if var components = URLComponents(string: url), let items = components.percentEncodedQueryItems,
            let index = items.firstIndex(where: { ($0.value?.removingPercentEncoding).flatMap(LeaseProxy.placeholder(in:)) != nil })
        {
            placeholder = placeholder ?? (items[index].value?.removingPercentEncoding).flatMap(LeaseProxy.placeholder(in:))
            components.percentEncodedQueryItems = items.enumerated().filter { $0.offset != index }.map(\.element)
            if components.percentEncodedQueryItems?.isEmpty == true { components.percentEncodedQuery = nil }
            target = components.string ?? url
        }
        guard let id = placeholder else { return await forward(method: method, url: url, headers: headers, body: body) }
        guard let token = tokens[id] else {
            return .refusal(403, "keyhold run --proxy: no token for keyhold-lease:\(id.uuidString.lowercased()) (give it in KEYHOLD_LEASES or --lease-file)")
        }
        var fields: [String: String] = [:]
        for (name, value) in kept where name.lowercased() != "accept-encoding" {
            fields[name] = fields[name].map { $0 + ", " + value } ?? value
        }
        var request: [String: Any] = ["lease": token, "method": method, "url": target, "headers": fields]
        if !body.isEmpty { request["body_base64"] = body.base64EncodedString() }
        do {
            let reply = try await api.send("POST", "/v1/proxy", json: request)
            return Answer(
                status: reply.status, headers: reply.headers.filter { !Self.hopByHop.contains($0.0.lowercased()) },
                body: reply.body)
        } catch {
            return .refusal(502, "keyhold run --proxy: the Keyhold server cannot be reached")
        }
    }

    /// Sends a request without a placeholder on as it is (certificates verified, no redirects).
    func forward(method: String, url: String, headers: [(String, String)], body: Data) async -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        for (name, value) in headers where !Self.hopByHop.contains(name.lowercased()) {
            request.headers.add(name: name, value: value)
        }
        if !body.isEmpty { request.body = .bytes(ByteBuffer(data: body)) }
        do {
            let response = try await direct.execute(request, timeout: .seconds(60))
            let collected = try await response.body.collect(upTo: LeaseProxy.maxBody)
            return Answer(
                status: Int(response.status.code),
                headers: response.headers.map { ($0.name, $0.value) }.filter { !Self.hopByHop.contains($0.0.lowercased()) },
                body: Data(buffer: collected))
        } catch {
            return .refusal(502, "keyhold run --proxy: the request to \(URLComponents(string: url)?.host ?? "the host") failed")
        }
    }
}

/// One connection's HTTP/1 requests: `CONNECT host:port` turns the connection into a TLS tunnel terminated here
/// (with the host's certificate), `GET http://…` is a plain proxy request, and a request inside a tunnel goes to
/// the tunnel's host.
final class ProxyRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let state: ProxyState
    let tunnel: (host: String, port: Int)?
    var head: HTTPRequestHead?
    var body = ByteBuffer()
    var tooLarge = false

    init(state: ProxyState, tunnel: (host: String, port: Int)?) {
        self.state = state
        self.tunnel = tunnel
    }

    static let names = ["keyhold.encoder", "keyhold.decoder", "keyhold.pipelining", "keyhold.proxy"]

    static func install(
        on pipeline: ChannelPipeline.SynchronousOperations, state: ProxyState, tunnel: (host: String, port: Int)?
    ) throws {
        try pipeline.addHandler(HTTPResponseEncoder(), name: names[0])
        try pipeline.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)), name: names[1])
        try pipeline.addHandler(HTTPServerPipelineHandler(), name: names[2])
        try pipeline.addHandler(ProxyRequestHandler(state: state, tunnel: tunnel), name: names[3])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
            tooLarge = false
        case .body(var chunk):
            if body.readableBytes + chunk.readableBytes > LeaseProxy.maxBody { tooLarge = true } else { body.writeBuffer(&chunk) }
        case .end:
            guard let head else { return }
            self.head = nil
            // A tunnel was authenticated by its CONNECT; outside one, every request carries the run's credential.
            if tunnel == nil, !CredentialCheck.equal(head.headers.first(name: "Proxy-Authorization") ?? "", state.proxyAuthorization) {
                var answer = ProxyState.Answer.refusal(407, "keyhold run --proxy: proxy credentials required")
                answer.headers.append(("Proxy-Authenticate", "Basic realm=\"keyhold\""))
                Self.respond(context.channel, answer, version: head.version, keepAlive: false)
                return
            }
            if head.method == .CONNECT, tunnel == nil {
                connect(context: context, head: head)
                return
            }
            let channel = context.channel
            let keepAlive = head.isKeepAlive
            guard !tooLarge, let url = url(for: head) else {
                Self.respond(
                    channel, .refusal(tooLarge ? 413 : 400, "keyhold run --proxy: the request cannot be proxied"),
                    version: head.version, keepAlive: false)
                return
            }
            Self.serve(
                state: state, channel: channel, method: head.method.rawValue, url: url,
                headers: head.headers.map { ($0.name, $0.value) }, body: Data(buffer: body), version: head.version,
                keepAlive: keepAlive)
        }
    }

    static func serve(
        state: ProxyState, channel: any Channel, method: String, url: String, headers: [(String, String)], body: Data,
        version: HTTPVersion, keepAlive: Bool
    ) {
        Task {
            let answer = await state.answer(method: method, url: url, headers: headers, body: body)
            respond(channel, answer, version: version, keepAlive: keepAlive)
        }
    }

    /// The absolute URL of a request: a plain proxy request names it; inside a tunnel, the tunnel's host does.
    func url(for head: HTTPRequestHead) -> String? {
        if let tunnel {
            guard head.uri.hasPrefix("/") else { return nil }
            let authority = tunnel.port == 443 ? tunnel.host : "\(tunnel.host):\(tunnel.port)"
            return "https://\(authority)\(head.uri)"
        }
        return head.uri.lowercased().hasPrefix("http://") ? head.uri : nil
    }

    static func respond(_ channel: any Channel, _ answer: ProxyState.Answer, version: HTTPVersion, keepAlive: Bool) {
        var headers = HTTPHeaders(answer.headers)
        headers.replaceOrAdd(name: "Content-Length", value: String(answer.body.count))
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: version, status: .init(statusCode: answer.status), headers: headers)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(data: answer.body))), promise: nil)
        let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
    }

    /// `CONNECT host:port`: 200, then the connection speaks TLS with the host's certificate from the run's CA, and
    /// its requests are read by a new handler that knows the host.
    func connect(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let parts = head.uri.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port), !parts[0].isEmpty,
            let tls = try? state.authority.context(for: String(parts[0]).lowercased())
        else {
            Self.respond(context.channel, .refusal(400, "keyhold run --proxy: CONNECT needs host:port"), version: head.version, keepAlive: false)
            return
        }
        let host = String(parts[0]).lowercased()
        let channel = context.channel
        let state = self.state
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).flatMap {
            EventLoopFuture.andAllSucceed(Self.names.map { channel.pipeline.removeHandler(name: $0) }, on: channel.eventLoop)
        }.flatMapThrowing {
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(NIOSSLServerHandler(context: tls))
            try Self.install(on: pipeline, state: state, tunnel: (host, port))
        }.whenFailure { _ in channel.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension Data {
    /// Base64url without padding, as lease tokens spell their parts.
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init?(base64URL text: String) {
        var text = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        text += String(repeating: "=", count: (4 - text.count % 4) % 4)
        self.init(base64Encoded: text)
    }
}

/// Comparing a presented credential in constant time.
enum CredentialCheck {
    static func equal(_ presented: String, _ expected: String) -> Bool {
        let (a, b) = (Array(presented.utf8), Array(expected.utf8))
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

import AsyncHTTPClient
import Foundation
import KeyholdCore
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Webhook requests over AsyncHTTPClient, behind the SSRF guard: the host is resolved here, every address it
/// resolves to is checked (`WebhookDestination.refusal`), and the connection goes to the address checked (AHC's
/// DNS override keeps the host name for TLS, SNI and `Host`), so no second lookup can be rebound. No redirects; 10 s
/// to connect and 10 s for the whole request; the response body is never read.
struct HTTPWebhookTransport: WebhookTransport {
    let allowPrivate: Bool
    static let timeout = TimeAmount.seconds(10)

    func post(url: String, headers: [(String, String)], body: Data) async -> WebhookTransportResult {
        func refused(_ reason: String) -> WebhookTransportResult { WebhookTransportResult(statusCode: nil, error: reason) }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else { return refused("the URL does not parse") }
        guard scheme == "https" || (scheme == "http" && allowPrivate) else {
            return refused("refused: only https destinations are allowed")
        }
        let literal = WebhookDestination.literalAddress(host)
        let addresses: [IPAddress]
        if let literal {
            addresses = [literal]
        } else {
            do {
                addresses = try await Self.resolve(host)
            } catch {
                return refused("the host name does not resolve")
            }
        }
        guard let target = addresses.first else { return refused("the host name has no address") }
        if !allowPrivate {
            for address in addresses {
                if let reason = WebhookDestination.refusal(address) {
                    return refused("refused: the host resolves to \(reason) (\(address)); see --webhook-allow-private")
                }
            }
        }
        if scheme == "http", addresses.contains(where: { WebhookDestination.refusal($0) == nil }) {
            return refused("refused: plain http is allowed only to private addresses")
        }
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: Self.timeout, read: Self.timeout))
        if literal == nil { configuration.dnsOverride = [host: target.description] }
        configuration.decompression = .disabled
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let result: WebhookTransportResult
        do {
            let response = try await client.execute(request, timeout: Self.timeout)
            let code = Int(response.status.code)
            result = WebhookTransportResult(
                statusCode: code, error: (200...299).contains(code) ? nil : "HTTP \(code) \(response.status.reasonPhrase.prefix(60))")
        } catch let error as HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout:
                result = refused("timed out after \(Self.timeout.nanoseconds / 1_000_000_000) s")
            case .remoteConnectionClosed: result = refused("the connection was closed before a response")
            default: result = refused("the request failed (\(String(describing: error).prefix(80)))")
            }
        } catch {
            result = refused("the connection failed (\(String(describing: type(of: error)).prefix(60)))")
        }
        try? await client.shutdown()
        return result
    }

    /// The host's addresses (getaddrinfo, on NIO's blocking-I/O pool).
    static func resolve(_ host: String) async throws -> [IPAddress] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            #else
            hints.ai_socktype = SOCK_STREAM
            #endif
            var list: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &list) == 0 else { throw KeyholdError.badRequest("unresolved") }
            defer { freeaddrinfo(list) }
            var addresses: [IPAddress] = []
            var node = list
            while let entry = node?.pointee {
                if let sockaddr = entry.ai_addr {
                    switch Int32(sockaddr.pointee.sa_family) {
                    case AF_INET:
                        sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                            var address = $0.pointee.sin_addr
                            let bytes = withUnsafeBytes(of: &address) { Array($0) }
                            if let ip = IPAddress(bytes: bytes), !addresses.contains(ip) { addresses.append(ip) }
                        }
                    case AF_INET6:
                        sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                            var address = $0.pointee.sin6_addr
                            let bytes = withUnsafeBytes(of: &address) { Array($0) }
                            if let ip = IPAddress(bytes: bytes), !addresses.contains(ip) { addresses.append(ip) }
                        }
                    default: break
                    }
                }
                node = entry.ai_next
            }
            return addresses
        }
    }
}

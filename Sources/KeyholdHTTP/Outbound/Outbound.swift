import AsyncHTTPClient
import Foundation
import KeyholdCore
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every request Keyhold itself sends (webhook deliveries, the lease proxy), behind one SSRF guard: the host is
/// resolved here, every address it resolves to is checked (`WebhookDestination.refusal`) unless the operator allows
/// private destinations (`--webhook-allow-private`, which also allows plain `http://`, to private addresses only),
/// and the connection goes to the address checked (AHC's DNS override keeps the host name for TLS, SNI and `Host`),
/// so no second lookup can be rebound. Certificates are verified against the system's roots and, when configured,
/// the operator's CA file (`KEYHOLD_OUTBOUND_CA_FILE`). No redirects; no decompression.
struct Outbound: Sendable {
    let allowPrivate: Bool
    let caFile: String?

    /// A checked destination: where to connect.
    struct Route: Sendable {
        let host: String
        let address: IPAddress
        let literal: Bool
    }

    /// Resolves and checks `host` for `scheme`; the reason it is refused otherwise (safe to show: it names the
    /// address class, never anything secret).
    func route(scheme: String, host: String) async -> Result<Route, LeaseService.Refusal> {
        func refused(_ reason: String) -> Result<Route, LeaseService.Refusal> { .failure(.init(reason: reason)) }
        guard scheme == "https" || (scheme == "http" && allowPrivate) else {
            return refused("only https destinations are allowed")
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
                    return refused("the host resolves to \(reason) (\(address)); see --webhook-allow-private")
                }
            }
        }
        if scheme == "http", addresses.contains(where: { WebhookDestination.refusal($0) == nil }) {
            return refused("plain http is allowed only to private addresses")
        }
        return .success(Route(host: host, address: target, literal: literal != nil))
    }

    /// A client that connects to `route`'s address only. The caller shuts it down.
    func client(for route: Route, connectTimeout: TimeAmount, readTimeout: TimeAmount) -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: connectTimeout, read: readTimeout))
        if !route.literal { configuration.dnsOverride = [route.host: route.address.description] }
        // A refused connection is an answer: report it, rather than retrying until the deadline (10 s of silence).
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.additionalTrustRoots = [.file(caFile)]
            configuration.tlsConfiguration = tls
        }
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// A failure of AHC in words fit for an audit event or a problem body. Never an error's own description: AHC's
    /// can quote the request's header values, which hold an injected secret.
    static func describe(_ error: any Error, timeout: TimeAmount) -> String {
        switch error {
        case let error as HTTPClientError:
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout:
                "timed out after \(timeout.nanoseconds / 1_000_000_000) s"
            case .remoteConnectionClosed: "the connection was closed before a response"
            // AHC's bounded description, which carries no associated value.
            default: "the request failed (\(error.shortDescription))"
            }
        case is NIOSSLError, is BoringSSLError: "the TLS handshake failed"
        default: "the connection failed (\(String(describing: type(of: error)).prefix(60)))"
        }
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

import Foundation
import Hummingbird
import KeyholdCore
import NIOCore

/// The request context: Hummingbird's core storage plus the peer address (for IP conditions, rate limits and
/// audit events).
public struct KeyholdRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// The client's IP address: the socket peer's, or, when the peer is a configured trusted proxy, the right-most
    /// untrusted address of `X-Forwarded-For` (set once by `ClientAddressMiddleware`, before any other middleware
    /// reads it). Used for IP rules, policy IP conditions, share allowlists, audit events and the rate limiter.
    var clientIP: IPAddress?
    /// Whether `clientIP` has been resolved for this request (a request answered in-process for `/mcp` keeps the
    /// address its outer request resolved).
    var clientIPResolved = false
    /// How the request reached the API when not directly over HTTP: `mcp-http` for a tool call of `/mcp`, set by
    /// the server itself (never from a header), and recorded in the audit events the request causes.
    var transport: String?
    /// Who is calling, set by `AuthenticationMiddleware` on the routes of an authenticated group.
    var caller: Caller?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.clientIP = switch remoteAddress {
        case .v4(let address): withUnsafeBytes(of: address.address.sin_addr) { IPAddress(bytes: $0) }
        case .v6(let address): withUnsafeBytes(of: address.address.sin6_addr) { IPAddress(bytes: $0) }
        case .unixDomainSocket, nil: nil
        }
    }

    public var maxUploadSize: Int { RequestBody.maxBytes }

    /// The authenticated caller; a route mounted without `AuthenticationMiddleware` fails closed with the one 401.
    public func requireCaller() throws -> Caller {
        guard let caller else { throw KeyholdError.unauthenticated }
        return caller
    }

    func uuidParameter(_ name: String, notFound: KeyholdError) throws -> UUID {
        guard let text = parameters.get(name), let id = UUID(fast: text) else { throw notFound }
        return id
    }
}

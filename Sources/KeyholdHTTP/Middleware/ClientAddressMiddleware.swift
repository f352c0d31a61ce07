import HTTPTypes
import Hummingbird
import KeyholdCore

/// Resolves the client's address once, first of all middleware: the socket peer's, unless the peer is one of the
/// configured trusted proxies (`--trusted-proxy`), in which case `X-Forwarded-For` is walked from the right and the
/// first address that is not a trusted proxy is the client (`ClientAddress.resolve`). Without trusted proxies the
/// header is never read.
struct ClientAddressMiddleware: RouterMiddleware {
    typealias Context = KeyholdRequestContext
    let trustedProxies: [CIDR]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard !context.clientIPResolved else { return try await next(request, context) }
        var context = context
        context.clientIPResolved = true
        if !trustedProxies.isEmpty {
            context.clientIP = ClientAddress.resolve(
                peer: context.clientIP, forwardedFor: request.headers[values: .xForwardedFor],
                trustedProxies: trustedProxies)
        }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}

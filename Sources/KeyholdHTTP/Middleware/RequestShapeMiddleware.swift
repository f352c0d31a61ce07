import Hummingbird
import KeyholdCore

/// Refuses malformed requests before any work:
/// - headers that add up to more than `maxBytes`: 431 (headers past SwiftNIO's own parser limit, about 80 KB,
///   never reach the router: NIO answers those with 400);
/// - a path with an empty segment (`//`): 400. The router drops empty segments while secret paths are read from
///   the raw path, so such a request could be routed as one path and act on another.
struct RequestShapeMiddleware: RouterMiddleware {
    typealias Context = KeyholdRequestContext
    static let maxBytes = 16 * 1024

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var total = request.uri.description.utf8.count
        for field in request.headers {
            total += field.name.rawName.utf8.count + field.value.utf8.count + 4
            guard total <= Self.maxBytes else {
                throw KeyholdError(.requestHeaderFieldsTooLarge, "Request headers are larger than \(Self.maxBytes / 1024) KiB")
            }
        }
        var previousWasSlash = false
        for byte in request.uri.path.utf8 {
            let isSlash = byte == UInt8(ascii: "/")
            if isSlash, previousWasSlash { throw KeyholdError.badRequest("The request path has an empty segment (//)") }
            previousWasSlash = isSlash
        }
        return try await next(request, context)
    }
}

import Hummingbird
import KeyholdCore

/// Refuses requests whose headers add up to more than `maxBytes` with 431, before any work. (Headers past
/// SwiftNIO's own parser limit, about 80 KB, never reach the router: NIO answers those with 400.)
struct HeaderLimitMiddleware: RouterMiddleware {
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
        return try await next(request, context)
    }
}

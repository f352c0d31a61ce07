import Foundation
import Hummingbird
import HTTPTypes
import Logging

/// One structured line per request at `debug` level: id, method, path, status, duration. Never a header, query
/// or body, so no token or value reaches the log. Hummingbird's request id is returned as `X-Request-Id`.
/// (At the default `info` level nothing is written per request: the audit log is the record of who did what, and a
/// synchronous line on stderr for every request cost about a fifth of the server's throughput.)
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var response = try await next(request, context)
        if let requestID = context.logger[metadataKey: "hb.request.id"] {
            response.headers[.requestID] = "\(requestID)"
        }
        let elapsed = ContinuousClock.now - start
        context.logger.debug(
            "request",
            metadata: [
                "keyhold.http.method": .string(request.method.rawValue),
                "keyhold.http.path": .string(request.uri.path),
                "keyhold.http.status": .stringConvertible(response.status.code),
                "keyhold.http.duration_us": .stringConvertible(
                    elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000),
            ])
        return response
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}

import Foundation
import Hummingbird
import HTTPTypes
import Logging

/// One structured line per request at `debug` level: id, method, route (the template, `/v1/vaults/:vault_id/…`),
/// path, status, duration. Never a header, query or body, so no token or value reaches the log, and never a share
/// id (a link share's id is its credential: it is logged as `<redacted>`). The request id is the client's
/// `X-Request-Id` when it sends a plain one (1–128 letters, digits and `-_.:`), otherwise Hummingbird's; either way
/// it is on every line logged for the request and returned as `X-Request-Id`.
/// (At the default `info` level nothing is written per request: the audit log is the record of who did what, and a
/// synchronous line on stderr for every request cost about a fifth of the server's throughput.)
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var context = context
        if let sent = request.headers[.requestID], Self.isPlainRequestID(sent) {
            context.logger[metadataKey: "hb.request.id"] = .string(sent)
        }
        var response = try await next(request, context)
        if let requestID = context.logger[metadataKey: "hb.request.id"] {
            response.headers[.requestID] = "\(requestID)"
        }
        let elapsed = ContinuousClock.now - start
        context.logger.debug(
            "request",
            metadata: [
                "keyhold.http.method": .string(request.method.rawValue),
                "keyhold.http.route": .string(context.endpointPath ?? "-"),
                "keyhold.http.path": .string(Self.loggedPath(request.uri.path)),
                "keyhold.http.status": .stringConvertible(response.status.code),
                "keyhold.http.duration_us": .stringConvertible(
                    elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000),
            ])
        return response
    }

    static func isPlainRequestID(_ text: String) -> Bool {
        (1...128).contains(text.utf8.count)
            && text.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || byte == 0x2D || byte == 0x5F || byte == 0x2E || byte == 0x3A
            }
    }

    /// The path with the share id of `/v1/share/{id}…` and `/v1/shares/{id}…` replaced.
    static func loggedPath(_ path: String) -> String {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count >= 4, segments[1] == "v1", segments[2] == "share" || segments[2] == "shares",
            segments[3] != "inbound", segments[3] != "outbound"
        else { return path }
        var redacted = segments
        redacted[3] = "<redacted>"
        return redacted.joined(separator: "/")
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}

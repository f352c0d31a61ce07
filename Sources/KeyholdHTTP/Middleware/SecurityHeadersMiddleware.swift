import HTTPTypes
import Hummingbird

/// Headers every response carries, errors included: no MIME sniffing, no referrer, never framed, and a
/// Content-Security-Policy — for the console's pages its own origin only (no inline script or style, no other
/// origin), for everything else nothing at all. API responses (`/v1/…`, `/console/session`) are never stored by a
/// cache unless their handler says otherwise (the JWKS may be). When clients reach the server over https, browsers
/// are told to keep to it (`Strict-Transport-Security`, one year).
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = KeyholdRequestContext
    let https: Bool

    static let consolePolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    static let apiPolicy = "default-src 'none'; frame-ancestors 'none'"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response = try await next(request, context)
        let html = response.headers[.contentType]?.hasPrefix("text/html") == true
        let path = request.uri.path
        response.headers[.contentSecurityPolicy] = html || path.hasPrefix("/console/") ? Self.consolePolicy : Self.apiPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.referrerPolicy] = "no-referrer"
        response.headers[.xFrameOptions] = "DENY"
        if https { response.headers[.strictTransportSecurity] = "max-age=31536000" }
        if response.headers[.cacheControl] == nil, !path.hasPrefix("/console/") || path.hasPrefix("/console/session") {
            response.headers[.cacheControl] = "no-store"
        }
        return response
    }
}

extension HTTPField.Name {
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let strictTransportSecurity = Self("Strict-Transport-Security")!
}

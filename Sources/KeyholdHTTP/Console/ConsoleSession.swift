import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore

/// The web console's session: an access token in an HttpOnly, SameSite=Strict cookie (`keyhold_session`; under
/// https Secure and named `__Host-keyhold_session`, so no sibling host can plant one), a refresh token in another one
/// that only `/console/session` sees (`keyhold_refresh`, `__Secure-keyhold_refresh` under https), and a CSRF token
/// the page keeps in memory and sends as `X-CSRF-Token` with every API call. The CSRF token is an HMAC of the access
/// token under a server key, so nothing is stored for it and it changes with every token. The session routes that
/// sign in or change cookies take only same-origin requests (JSON bodies, and `Sec-Fetch-Site` / `Origin` when the
/// browser sends them), so another site cannot sign a visitor in to its own account (login CSRF).
struct ConsoleSession: Sendable {
    static let refreshPath = "/console/session"
    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!
    static let cookieNames = ["keyhold_session", "__Host-keyhold_session"]

    let key: SymmetricKey
    let secureCookies: Bool

    var accessCookie: String { secureCookies ? "__Host-keyhold_session" : "keyhold_session" }
    var refreshCookie: String { secureCookies ? "__Secure-keyhold_refresh" : "keyhold_refresh" }

    static let crossSite = KeyholdError(
        .forbidden, "The console's session routes take requests from the console's own pages only",
        type: "csrf_token_invalid")

    /// Refuses a request a browser marks as coming from another site (`Sec-Fetch-Site`), or whose `Origin` is not
    /// this server's `Host`.
    static func requireSameOrigin(_ request: Request) throws {
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!], !["same-origin", "none"].contains(site) {
            throw crossSite
        }
        if let origin = request.headers[.origin], let host = request.head.authority,
            URLComponents(string: origin).map({ components in
                (components.host ?? "") + (components.port.map { ":\($0)" } ?? "")
            }) != host
        {
            throw crossSite
        }
    }

    /// Same origin, and a JSON body (an HTML form can send only form and plain-text bodies without a preflight).
    static func requireSameOriginJSON(_ request: Request) throws {
        try requireSameOrigin(request)
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") else {
            throw KeyholdError(.unsupportedMediaType, "The console's session routes take application/json")
        }
    }

    static let csrfRefused = KeyholdError(
        .forbidden, "The console's CSRF token is missing or stale; reload the page", type: "csrf_token_invalid")

    func csrfToken(for accessToken: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(("keyhold.console.csrf|" + accessToken).utf8), using: key))
            .base64URLEncodedString()
    }

    /// The access token of a console request: the cookie's, when `X-CSRF-Token` matches it; nil without the cookie.
    /// A cookie without a matching CSRF token is refused (403), never used: another site's form or script can make
    /// the browser send the cookie, not the header.
    func credential(_ request: Request) throws -> String? {
        guard let token = request.cookies[accessCookie]?.value, !token.isEmpty else { return nil }
        guard let sent = request.headers[Self.csrfHeader], sent.utf8.count < 128,
            CredentialHasher.constantTimeEqual(Data(sent.utf8), Data(csrfToken(for: token).utf8))
        else { throw Self.csrfRefused }
        return token
    }

    /// Whether the request carries console credentials to check (the cookie with a CSRF header); a cookie alone
    /// is ignored by routes whose credentials are optional.
    static func isPresented(_ request: Request) -> Bool {
        cookieNames.contains { request.cookies[$0] != nil } && request.headers[csrfHeader] != nil
    }

    func cookies(access: String, expiresIn: Int64, refresh: String?) -> [Cookie] {
        var cookies = [
            Cookie(
                name: accessCookie, value: access, maxAge: Int(expiresIn), path: "/", secure: secureCookies,
                httpOnly: true, sameSite: .strict)
        ]
        if let refresh {
            cookies.append(
                Cookie(
                    name: refreshCookie, value: refresh, maxAge: Int(AuthService.refreshLifetime),
                    path: Self.refreshPath, secure: secureCookies, httpOnly: true, sameSite: .strict))
        }
        return cookies
    }

    var cleared: [Cookie] {
        [
            Cookie(name: accessCookie, value: "", maxAge: 0, path: "/", secure: secureCookies, httpOnly: true, sameSite: .strict),
            Cookie(
                name: refreshCookie, value: "", maxAge: 0, path: Self.refreshPath, secure: secureCookies,
                httpOnly: true, sameSite: .strict),
        ]
    }
}

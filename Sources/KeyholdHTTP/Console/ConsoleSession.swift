import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore

/// The web console's session: an access token in an HttpOnly, SameSite=Strict cookie (`keyhold_session`, Secure
/// when the public URL is https), a refresh token in another one that only `/console/session` sees, and a CSRF
/// token the page keeps in memory and sends as `X-CSRF-Token` with every API call. The CSRF token is an HMAC of the
/// access token under a server key, so nothing is stored for it and it changes with every token.
struct ConsoleSession: Sendable {
    static let accessCookie = "keyhold_session"
    static let refreshCookie = "keyhold_refresh"
    static let refreshPath = "/console/session"
    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!

    let key: SymmetricKey
    let secureCookies: Bool

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
        guard let token = request.cookies[Self.accessCookie]?.value, !token.isEmpty else { return nil }
        guard let sent = request.headers[Self.csrfHeader], sent.utf8.count < 128,
            CredentialHasher.constantTimeEqual(Data(sent.utf8), Data(csrfToken(for: token).utf8))
        else { throw Self.csrfRefused }
        return token
    }

    /// Whether the request carries console credentials to check (the cookie with a CSRF header); a cookie alone
    /// is ignored by routes whose credentials are optional.
    static func isPresented(_ request: Request) -> Bool {
        request.cookies[accessCookie] != nil && request.headers[csrfHeader] != nil
    }

    func cookies(access: String, expiresIn: Int64, refresh: String?) -> [Cookie] {
        var cookies = [
            Cookie(
                name: Self.accessCookie, value: access, maxAge: Int(expiresIn), path: "/", secure: secureCookies,
                httpOnly: true, sameSite: .strict)
        ]
        if let refresh {
            cookies.append(
                Cookie(
                    name: Self.refreshCookie, value: refresh, maxAge: Int(AuthService.refreshLifetime),
                    path: Self.refreshPath, secure: secureCookies, httpOnly: true, sameSite: .strict))
        }
        return cookies
    }

    var cleared: [Cookie] {
        [
            Cookie(name: Self.accessCookie, value: "", maxAge: 0, path: "/", secure: secureCookies, httpOnly: true, sameSite: .strict),
            Cookie(
                name: Self.refreshCookie, value: "", maxAge: 0, path: Self.refreshPath, secure: secureCookies,
                httpOnly: true, sameSite: .strict),
        ]
    }
}

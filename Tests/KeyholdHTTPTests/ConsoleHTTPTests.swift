import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import KeyholdHTTP
import NIOCore
import Testing

/// The web console's server side through the real application builder: its files and headers, and its session
/// (cookies, CSRF token, refresh, sign-out).
extension HTTPTests {
    struct RawReply {
        let status: HTTPResponse.Status
        let headers: HTTPFields
        let body: String
    }

    func raw(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, headers extra: [String: String] = [:],
        body: String? = nil
    ) async throws -> RawReply {
        var headers = HTTPFields()
        if body != nil { headers[.contentType] = "application/json" }
        for (name, value) in extra { headers[HTTPField.Name(name)!] = value }
        return try await client.execute(
            uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }
        ) { response in
            RawReply(status: response.status, headers: response.headers, body: String(buffer: response.body))
        }
    }

    /// The value each `Set-Cookie` of `reply` gives its cookie, by name.
    func setCookies(_ reply: RawReply) -> [String: (value: String, attributes: String)] {
        var cookies: [String: (String, String)] = [:]
        for line in reply.headers[values: .setCookie] {
            let (pair, attributes) = (line.prefix { $0 != ";" }, line.drop { $0 != ";" })
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            cookies[String(parts[0])] = (parts.count > 1 ? String(parts[1]) : "", String(attributes))
        }
        return cookies
    }

    @Test func theConsoleIsServedWithAStrictPolicy() async throws {
        try await withApp { client in
            let page = try await raw(client, .get, "/")
            #expect(page.status == .ok)
            #expect(page.headers[.contentType] == "text/html; charset=utf-8")
            #expect(page.body.contains("<script type=\"module\" src=\"/console/"))
            let policy = try #require(page.headers[.contentSecurityPolicy])
            for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
                #expect(policy.contains(directive))
            }
            #expect(!policy.contains("unsafe"))
            #expect(page.headers[.xContentTypeOptions] == "nosniff")
            #expect(page.headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
            #expect(page.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            #expect(page.headers[.cacheControl] == "no-store")
            // A quick-decide link lands on the page too.
            #expect(try await raw(client, .get, "/approvals/\(UUID().uuidString.lowercased())").status == .ok)
            let index = try await raw(client, .get, "/console/index.html")
            #expect(index.status == .ok && index.body == page.body)
            // Nothing outside the console's folder, nothing hidden, nothing of an unknown type.
            for path in [
                "/console/../Package.swift", "/console/%2e%2e/openapi.json", "/console/.hidden.js", "/console/js/",
                "/console/nothing.js", "/console/index.exe",
            ] {
                let reply = try await raw(client, .get, path)
                #expect(reply.status == .notFound, "\(path)")
                #expect(reply.headers[.contentType] == "application/problem+json", "\(path)")
            }
            // An empty segment is refused before routing.
            #expect(try await raw(client, .get, "/console//index.html").status == .badRequest)
            // API answers get a policy that allows nothing and are never cached.
            let health = try await raw(client, .get, "/v1/health")
            #expect(health.headers[.contentSecurityPolicy] == "default-src 'none'; frame-ancestors 'none'")
            #expect(health.headers[.cacheControl] == "no-store" && health.headers[.xContentTypeOptions] == "nosniff")
            let missing = try await raw(client, .get, "/v1/vaults")
            #expect(missing.status == .unauthorized && missing.headers[.cacheControl] == "no-store")
        }
    }

    @Test func theConsoleSessionLivesInCookiesAndNeedsItsCSRFToken() async throws {
        try await withApp { client in
            _ = try await signup(client, email: "console@example.com")
            let login = #"{"email":"console@example.com","password":"\#(Self.password)"}"#
            let wrong = try await raw(client, .post, "/console/session", body: #"{"email":"console@example.com","password":"nope-nope-nope"}"#)
            #expect(wrong.status == .unauthorized && wrong.headers[values: .setCookie].isEmpty)
            let signedIn = try await raw(client, .post, "/console/session", body: login)
            #expect(signedIn.status == .ok && signedIn.headers[.cacheControl] == "no-store")
            let cookies = setCookies(signedIn)
            let access = try #require(cookies["keyhold_session"])
            let refresh = try #require(cookies["keyhold_refresh"])
            for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] { #expect(access.attributes.contains(attribute)) }
            #expect(refresh.attributes.contains("Path=/console/session") && refresh.attributes.contains("HttpOnly"))
            #expect(!access.attributes.contains("Secure"))  // plain http here; https public URLs add Secure
            let session = try #require(try JSONSerialization.jsonObject(with: Data(signedIn.body.utf8)) as? [String: Any])
            let csrf = try #require(session["csrf_token"] as? String)
            #expect((session["user"] as? [String: Any])?["email"] as? String == "console@example.com")
            // The page never holds the token: it is in neither the body nor anything but the cookie.
            #expect(!signedIn.body.contains(access.value) && !signedIn.body.contains(refresh.value))

            let cookie = "keyhold_session=\(access.value)"
            // The cookie alone (what another site's form can make the browser send) is refused, and so is a wrong token.
            let bare = try await raw(client, .post, "/v1/vaults", headers: ["Cookie": cookie], body: #"{"name":"forged"}"#)
            #expect(bare.status == .forbidden && bare.body.contains("csrf_token_invalid"))
            let forged = try await raw(
                client, .post, "/v1/vaults", headers: ["Cookie": cookie, "X-CSRF-Token": String(csrf.reversed())],
                body: #"{"name":"forged"}"#)
            #expect(forged.status == .forbidden)
            // With its token it is the person's session.
            let made = try await raw(
                client, .post, "/v1/vaults", headers: ["Cookie": cookie, "X-CSRF-Token": csrf], body: #"{"name":"mine"}"#)
            #expect(made.status == .created)
            let listed = try await raw(client, .get, "/v1/vaults", headers: ["Cookie": cookie, "X-CSRF-Token": csrf])
            #expect(listed.body.contains("\"mine\"") && !listed.body.contains("forged"))
            // Who is signed in, from the cookie: the same CSRF token.
            let current = try await raw(client, .get, "/console/session", headers: ["Cookie": cookie])
            #expect(current.status == .ok && current.body.contains(csrf))
            #expect(try await raw(client, .get, "/console/session").status == .noContent)

            // Refresh: new cookies, a new CSRF token; the old refresh token is spent.
            let refreshed = try await raw(
                client, .post, "/console/session/refresh", headers: ["Cookie": "keyhold_refresh=\(refresh.value)"])
            #expect(refreshed.status == .ok)
            let renewed = try #require(setCookies(refreshed)["keyhold_session"])
            #expect(renewed.value != access.value && !refreshed.body.contains(csrf))
            // A page loaded with only a refresh cookie resumes the session through it.
            let resumed = try await raw(client, .get, "/console/session", headers: ["Cookie": "keyhold_refresh=\(try #require(setCookies(refreshed)["keyhold_refresh"]).value)"])
            #expect(resumed.status == .ok && setCookies(resumed)["keyhold_session"] != nil)
            let again = try await raw(
                client, .post, "/console/session/refresh", headers: ["Cookie": "keyhold_refresh=\(refresh.value)"])
            #expect(again.status == .unauthorized)

            // Sign-out revokes the token and clears both cookies.
            let newCSRF = try #require(
                (try JSONSerialization.jsonObject(with: Data(refreshed.body.utf8)) as? [String: Any])?["csrf_token"] as? String)
            let renewedCookie = "keyhold_session=\(renewed.value)"
            let out = try await raw(client, .delete, "/console/session", headers: ["Cookie": renewedCookie, "X-CSRF-Token": newCSRF])
            #expect(out.status == .noContent)
            #expect(setCookies(out)["keyhold_session"]?.value == "" && setCookies(out)["keyhold_refresh"]?.value == "")
            #expect(setCookies(out)["keyhold_session"]?.attributes.contains("Max-Age=0") == true)
            let after = try await raw(client, .get, "/v1/vaults", headers: ["Cookie": renewedCookie, "X-CSRF-Token": newCSRF])
            #expect(after.status == .unauthorized)
        }
    }

    @Test func anotherSiteCannotSignAVisitorInOrTurnTheCookieIntoAToken() async throws {
        try await withApp { client in
            _ = try await signup(client, email: "mallory@example.com")
            let login = #"{"email":"mallory@example.com","password":"\#(Self.password)"}"#
            // A form's plain-text body that happens to be JSON, a cross-site fetch, another origin: refused, no cookie.
            var headers = ["Content-Type": "text/plain"]
            let plain = try await raw(client, .post, "/console/session", headers: headers, body: login)
            #expect(plain.status == .unsupportedMediaType && plain.headers[values: .setCookie].isEmpty)
            for (name, value) in [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Site", "same-site"), ("Origin", "http://evil.example")] {
                headers = [name: value]
                let refused = try await raw(client, .post, "/console/session", headers: headers, body: login)
                #expect(refused.status == .forbidden && refused.headers[values: .setCookie].isEmpty, "\(name): \(value)")
            }
            let signedIn = try await raw(client, .post, "/console/session", headers: ["Sec-Fetch-Site": "same-origin"], body: login)
            #expect(signedIn.status == .ok)
            let access = try #require(setCookies(signedIn)["keyhold_session"]).value
            let csrf = try #require(
                (try JSONSerialization.jsonObject(with: Data(signedIn.body.utf8)) as? [String: Any])?["csrf_token"] as? String)
            // The cookie never becomes a bearer token, even with its CSRF token.
            let exchanged = try await raw(
                client, .post, "/v1/auth/refresh", headers: ["Cookie": "keyhold_session=\(access)", "X-CSRF-Token": csrf])
            #expect(exchanged.status == .unauthorized && !exchanged.body.contains("access_token"))
            #expect(signedIn.headers[HTTPField.Name("Strict-Transport-Security")!] == nil)  // plain http here
        }
    }

    @Test func aBrowserOpeningAShareLinkGetsThePageAndNothingIsCounted() async throws {
        try await withApp { client in
            let token = try await signup(client)
            let vault = try #require(try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"v"}"#).json["id"] as? String)
            let secret = try await call(client, .put, "/v1/vaults/\(vault)/secrets/db/password", token: token, body: #"{"value":"s3cret-share"}"#)
            let secretID = try #require(secret.json["id"] as? String)
            let tomorrow = ISO8601DateFormatter().string(from: Date().addingTimeInterval(86_400))
            let share = try await call(
                client, .post, "/v1/secrets/\(secretID)/share", token: token,
                body: #"{"recipient_type":"anyone_with_link","expires_at":"\#(tomorrow)","max_access_count":1,"passphrase":"open sesame please"}"#)
            let id = try #require(share.json["id"] as? String)
            let html = "text/html,application/xhtml+xml,*/*;q=0.8"
            let page = try await raw(client, .get, "/v1/share/\(id)", headers: ["Accept": html])
            #expect(page.status == .ok && page.headers[.contentType] == "text/html; charset=utf-8")
            #expect(!page.body.contains("s3cret-share"))
            // The page counted nothing: the one open the share allows is still there, with the passphrase in a header.
            let wrong = try await raw(client, .get, "/v1/share/\(id)", headers: ["X-Share-Passphrase": "not it at all"])
            #expect(wrong.status == .forbidden)
            let opened = try await raw(client, .get, "/v1/share/\(id)", headers: ["Accept": "application/json", "X-Share-Passphrase": "open sesame please"])
            #expect(opened.status == .ok && opened.body.contains("s3cret-share"))
            #expect(try await raw(client, .get, "/v1/share/\(id)", headers: ["X-Share-Passphrase": "open sesame please"]).status == .gone)
        }
    }
}

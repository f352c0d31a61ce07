import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore

/// The web console: its page at `/` (and at `/approvals/{id}`, where a quick-decide link lands, and at a share's
/// link when a browser opens it), its files under `/console/`, and its session at `/console/session` (sign in, the
/// second factor, refresh, who is signed in, sign out). Everything else it does goes through the API.
struct ConsoleController {
    let files: ConsoleFiles
    let session: ConsoleSession
    let accounts: AccountService
    let auth: AuthService
    let mfa: MFAService
    let authentication: AuthenticationMiddleware

    func register(on router: Router<KeyholdRequestContext>) {
        router.get("/") { _, _ in try page() }
        router.get("/approvals/:approval_id") { _, _ in try page() }
        router.get("/console/**") { request, _ in
            let path = String(request.uri.path.dropFirst("/console/".count))
            guard let data = files.file(path), let type = ConsoleFiles.contentType(of: path) else {
                throw KeyholdError.notFound("No such console file")
            }
            var headers = HTTPFields()
            headers[.contentType] = type
            headers[.cacheControl] = "no-cache"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        // Who is signed in: the session of the access cookie; else, with a refresh cookie, a refreshed one (new
        // cookies); else 204 and no session (signed out is not an error the page's console should show).
        router.get("/console/session") { request, context in
            if let token = request.cookies[session.accessCookie]?.value, !token.isEmpty,
                let principal = try? await auth.authenticate(bearer: token, ip: context.clientIP),
                principal.kind == .user, !principal.isScoped, let expiresAt = principal.tokenExpiresAt
            {
                return try sessionResponse(
                    token: token, expiresAt: expiresAt, user: try await accounts.user(for: principal), cookies: [])
            }
            if let refresh = request.cookies[session.refreshCookie]?.value, !refresh.isEmpty,
                let refreshed = try? await auth.refresh(token: refresh, ip: context.clientIP, consoleOnly: true)
            {
                return try signedIn(refreshed, user: try await accounts.user(for: refreshed.principal))
            }
            var response = Response(status: .noContent)
            response.headers[.cacheControl] = "no-store"
            if request.cookies[session.accessCookie] != nil || request.cookies[session.refreshCookie] != nil {
                for cookie in session.cleared { response.setCookie(cookie) }
            }
            return response
        }
        router.post("/console/session") { request, context in
            try ConsoleSession.requireSameOriginJSON(request)
            let body = try await RequestBody.decode(LoginRequest.self, from: request)
            let user = try await accounts.authenticate(email: body.email, password: body.password, ip: context.clientIP)
            if let challenge = try await mfa.challenge(for: user, ip: context.clientIP) {
                var response = try JSONResponse.make(ConsoleMFAChallenge(mfa_token: challenge))
                response.headers[.cacheControl] = "no-store"
                return response
            }
            return try signedIn(try await auth.session(for: user, ip: context.clientIP, method: "password"), user: user)
        }
        router.post("/console/session/mfa") { request, context in
            try ConsoleSession.requireSameOriginJSON(request)
            let body = try await RequestBody.decode(MFAVerifyRequest.self, from: request)
            let (user, factor) = try await mfa.verify(challenge: body.mfa_token, code: body.code, ip: context.clientIP)
            return try signedIn(
                try await auth.session(for: user, ip: context.clientIP, method: "password+" + factor), user: user)
        }
        router.post("/console/session/refresh") { request, context in
            try ConsoleSession.requireSameOrigin(request)
            guard let token = request.cookies[session.refreshCookie]?.value, !token.isEmpty else {
                throw KeyholdError(.unauthorized, "Invalid or expired refresh token")
            }
            let refreshed = try await auth.refresh(token: token, ip: context.clientIP, consoleOnly: true)
            return try signedIn(refreshed, user: try await accounts.user(for: refreshed.principal))
        }
        router.delete("/console/session") { request, context in
            try ConsoleSession.requireSameOrigin(request)
            // Signing out revokes the access token and its refresh tokens; an expired session just loses its cookies.
            do {
                try await auth.revoke(try await authentication.caller(request, context))
            } catch let error as KeyholdError where error.code == .unauthorized {}
            var response = Response(status: .noContent)
            for cookie in session.cleared { response.setCookie(cookie) }
            return response
        }
    }

    private func page() throws -> Response {
        guard let data = files.file("index.html") else { throw KeyholdError.notFound("The console is not installed") }
        return Self.page(data)
    }

    static func page(_ data: Data) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    private func signedIn(_ issued: AuthService.Session, user: User) throws -> Response {
        let access = issued.access
        return try sessionResponse(
            token: access.token, expiresAt: Timestamp.now.adding(seconds: access.expiresIn), user: user,
            cookies: session.cookies(access: access.token, expiresIn: access.expiresIn, refresh: issued.refreshToken))
    }

    private func sessionResponse(token: String, expiresAt: Timestamp, user: User, cookies: [Cookie]) throws -> Response {
        var response = try JSONResponse.make(
            ConsoleSessionResponse(
                csrf_token: session.csrfToken(for: token), expires_at: expiresAt,
                user: .init(
                    id: user.id.wire, email: user.email, org_id: user.orgID.wire, role: user.role.rawValue,
                    display_name: user.displayName)))
        response.headers[.cacheControl] = "no-store"
        for cookie in cookies { response.setCookie(cookie) }
        return response
    }
}

struct ConsoleMFAChallenge: Encodable {
    let mfa_required = true
    let mfa_token: String
}

struct ConsoleSessionResponse: Encodable {
    struct User: Encodable {
        let id: String
        let email: String
        let org_id: String
        let role: String
        let display_name: String?
    }

    let csrf_token: String
    let expires_at: Timestamp
    let user: User
}

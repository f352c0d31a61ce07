import Foundation
import Hummingbird
import KeyholdCore

/// Authenticates `Authorization: Bearer …` (or, without one, the web console's session cookie with its CSRF token)
/// once for every route of the groups it is added to, before the handler reads anything, and stores the `Caller`
/// (principal, client address, time) on the context, where handlers take it with `context.requireCaller()`. A
/// failure is the one 401 (counted by `AuthService` as a failed authentication); a console cookie without its CSRF
/// token is 403.
///
/// The request runs inside an `AuthorizationObservation`, so the storage may serve what authorization reads from
/// memory and check it in the request's transactions. When one of them finds it changed before anything of the
/// request committed, the whole request runs again (its body was kept; at most twice), with fresh lookups.
struct AuthenticationMiddleware: RouterMiddleware {
    let auth: AuthService
    let console: ConsoleSession

    func handle(
        _ request: Request, context: KeyholdRequestContext,
        next: (Request, KeyholdRequestContext) async throws -> Response
    ) async throws -> Response {
        var request = request
        var collected = false
        var attempt = 0
        while true {
            let observation = AuthorizationObservation()
            defer { observation.end() }
            do {
                return try await AuthorizationObservation.$current.withValue(observation) {
                    var context = context
                    context.caller = try await caller(request, context)
                    // Kept for a second run, and read only once the caller is known: an anonymous client cannot make
                    // the server hold a body.
                    if !collected {
                        _ = try await request.collectBody(upTo: context.maxUploadSize)
                        collected = true
                    }
                    return try await next(request, context)
                }
            } catch let error as KeyholdError where error.type == AuthorizationObservation.changed.type {
                attempt += 1
                guard attempt < 3, !observation.committed else { throw error }
            }
        }
    }

    /// The same check, for the two public routes whose credentials are optional and checked by the handler in its
    /// own order: `GET /v1/share/{id}` (only when sent, after the id) and `POST /v1/auth/refresh` (only without a
    /// refresh token in the body).
    /// `console: false` takes only `Authorization: Bearer` (`POST /v1/auth/refresh`, which hands out tokens in its
    /// body: the console's cookie must not become a bearer token).
    func caller(_ request: Request, _ context: KeyholdRequestContext, console allowsConsole: Bool = true) async throws
        -> Caller
    {
        let ip = context.clientIP
        let credential = try Self.bearer(request) ?? (allowsConsole ? console.credential(request) : nil)
        return Caller(
            try await auth.authenticate(bearer: credential, ip: ip),
            context: AccessContext(clientIP: ip, transport: context.transport))
    }

    /// Whether the request carries credentials: a bearer, or the console's cookie with a CSRF token.
    static func presentsCredentials(_ request: Request) -> Bool {
        request.headers[.authorization] != nil || ConsoleSession.isPresented(request)
    }

    static func bearer(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.utf8.count <= 8192 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        // Spaces and tabs around the credential are ignored (Foundation's `trimmingCharacters` was a visible cost).
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = parts[1].firstIndex(where: { !blank($0) }), let last = parts[1].lastIndex(where: { !blank($0) })
        else { return nil }
        return String(parts[1][first...last])
    }
}

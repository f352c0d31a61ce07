import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore

/// Sign-up, login, token exchange, refresh and revocation, personal API keys, the caller's profile, and the
/// public keys that verify Keyhold's tokens.
struct AuthController {
    let accounts: AccountService
    let auth: AuthService
    let mfa: MFAService
    let tokens: TokenService
    let authentication: AuthenticationMiddleware
    let signupOpen: Bool
    let issuer: String

    func register(on router: Router<KeyholdRequestContext>, authenticated: RouterGroup<KeyholdRequestContext>) {
        router.post("/v1/auth/signup") { request, context in try await signup(request, ip: context.clientIP) }
        router.post("/v1/auth/token") { request, context in
            let body = try await RequestBody.decode(LoginRequest.self, from: request)
            let user = try await accounts.authenticate(email: body.email, password: body.password, ip: context.clientIP)
            if let challenge = try await mfa.challenge(for: user, ip: context.clientIP) {
                return try JSONResponse.make(MFAChallengeResponse(mfa_token: challenge))
            }
            return try JSONResponse.make(SessionResponse(try await auth.session(for: user, ip: context.clientIP)))
        }
        authenticated.delete("/v1/auth/token") { request, context in
            try await auth.revoke(try context.requireCaller())
            return JSONResponse.noContent()
        }
        router.post("/v1/auth/agent-token") { request, context in
            let body = try await RequestBody.decode(AgentTokenRequest.self, from: request)
            var agentID: UUID?
            if let text = body.agent_id {
                guard let id = UUID(uuidString: text) else { throw KeyholdError(.unauthorized, "Invalid agent_id or api_key") }
                agentID = id
            }
            let (session, _) = try await auth.exchangeAgentKey(body.api_key, agentID: agentID, ip: context.clientIP)
            return try JSONResponse.make(SessionResponse(session))
        }
        router.post("/v1/auth/api-key-token") { request, context in
            let body = try await RequestBody.decode(APIKeyTokenRequest.self, from: request)
            return try JSONResponse.make(SessionResponse(try await auth.exchangeUserKey(body.api_key, ip: context.clientIP)))
        }
        router.post("/v1/auth/refresh") { request, context in
            let body = try await RequestBody.decode(RefreshRequest.self, from: request, emptyAsObject: true)
            let session =
                if let token = body.refresh_token {
                    try await auth.refresh(token: token, ip: context.clientIP)
                } else {
                    try await auth.refresh(current: try await authentication.caller(request, context, console: false))
                }
            return try JSONResponse.make(SessionResponse(session))
        }
        authenticated.get("/v1/auth/me") { request, context in
            let caller = try context.requireCaller()
            let user = try await accounts.user(for: caller.principal)
            return try JSONResponse.make(UserProfileResponse(user, totpEnabled: try await mfa.isEnabled(userID: user.id)))
        }
        authenticated.patch("/v1/auth/me") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(UpdateProfileRequest.self, from: request)
            let user = try await accounts.updateProfile(
                caller, displayName: body.display_name, currentPassword: body.current_password, newPassword: body.new_password)
            return try JSONResponse.make(UserProfileResponse(user, totpEnabled: try await mfa.isEnabled(userID: user.id)))
        }
        authenticated.delete("/v1/auth/me") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(DeleteAccountRequest.self, from: request, emptyAsObject: true)
            try await accounts.deleteAccount(
                caller, password: request.headers[HTTPField.Name("X-Auth-Confirm")!], confirmation: body.confirmation)
            return JSONResponse.noContent()
        }
        authenticated.post("/v1/auth/api-keys") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateAPIKeyRequest.self, from: request)
            let (key, secret) = try await auth.createAPIKey(
                for: caller, name: body.name, scopes: body.scopes, expiresAt: body.expires_at)
            return try JSONResponse.make(APIKeyCreatedResponse(key: APIKeyResponse(key), api_key: secret), status: .created)
        }
        authenticated.get("/v1/auth/api-keys") { request, context in
            let keys = try await auth.apiKeys(for: try context.requireCaller().principal)
            return try JSONResponse.make(APIKeyListResponse(keys: keys.map(APIKeyResponse.init)))
        }
        authenticated.delete("/v1/auth/api-keys/:key_id") { request, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("key_id", notFound: .notFound("API key not found"))
            try await auth.deleteAPIKey(id, for: caller)
            return JSONResponse.noContent()
        }
        router.get("/v1/auth/jwt-public-key") { _, _ in
            try JSONResponse.make([
                "alg": "EdDSA", "kid": tokens.keyID,
                "public_key_base64": tokens.publicKey.rawRepresentation.base64EncodedString(),
            ])
        }
        router.get("/.well-known/jwks.json") { _, _ in
            var response = try JSONResponse.make(["keys": [tokens.jwk]], contentType: "application/jwk-set+json")
            response.headers[.cacheControl] = "public, max-age=300"
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        }
        router.get("/.well-known/openid-configuration") { _, _ in
            var response = try JSONResponse.make(OpenIDConfiguration(issuer: issuer))
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        }
    }

    func signup(_ request: Request, ip: IPAddress?) async throws -> Response {
        let body = try await RequestBody.decode(SignupRequest.self, from: request)
        guard signupOpen || body.invite_token != nil else {
            throw KeyholdError.forbidden("Sign-up is closed on this server; ask an org admin for an invite")
        }
        let outcome = try await accounts.signup(
            email: body.email, password: body.password, displayName: body.display_name, inviteToken: body.invite_token,
            ip: ip)
        switch outcome {
        case .received(let email):
            return try JSONResponse.make(SignupReceivedResponse(email: email))
        case .joined(let user):
            let session = try await auth.session(for: user, ip: ip, method: "invite")
            return try JSONResponse.make(
                SignupResponse(
                    user_id: user.id.wire, org_id: user.orgID.wire, email: user.email, role: user.role.rawValue,
                    message: "Account created", access_token: session.access.token,
                    expires_in: session.access.expiresIn, refresh_token: session.refreshToken))
        }
    }
}

struct OpenIDConfiguration: Encodable {
    let issuer: String
    let jwks_uri: String
    let token_endpoint: String
    let id_token_signing_alg_values_supported = ["EdDSA"]
    let grant_types_supported = ["password", "refresh_token"]
    let subject_types_supported = ["public"]
    let response_types_supported = ["token"]

    init(issuer: String) {
        self.issuer = issuer
        jwks_uri = issuer + "/.well-known/jwks.json"
        token_endpoint = issuer + "/v1/auth/token"
    }
}

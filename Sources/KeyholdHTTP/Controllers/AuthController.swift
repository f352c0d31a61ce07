import Foundation
import Hummingbird
import KeyholdCore

/// Human sign-up and login, the caller's profile, and the public keys that verify Keyhold's tokens.
struct AuthController {
    let accounts: AccountService
    let tokens: TokenService
    let authenticator: Authenticator
    let signupOpen: Bool
    let issuer: String

    func register(on router: Router<KeyholdRequestContext>) {
        router.post("/v1/auth/signup") { request, _ in try await signup(request) }
        router.post("/v1/auth/token") { request, _ in
            let body = try await RequestBody.decode(LoginRequest.self, from: request)
            let issued = try await accounts.login(email: body.email, password: body.password)
            return try JSONResponse.make(TokenResponse(access_token: issued.token, expires_in: issued.expiresIn))
        }
        router.get("/v1/auth/me") { request, _ in
            let principal = try await authenticator.principal(for: request)
            return try JSONResponse.make(UserProfileResponse(try await accounts.user(for: principal)))
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

    func signup(_ request: Request) async throws -> Response {
        guard signupOpen else { throw KeyholdError.forbidden("Sign-up is closed on this server") }
        let body = try await RequestBody.decode(SignupRequest.self, from: request)
        let user = try await accounts.signup(email: body.email, password: body.password, displayName: body.display_name)
        let issued = try await tokens.issue(for: Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role))
        return try JSONResponse.make(
            SignupResponse(
                user_id: user.id.wire, org_id: user.orgID.wire, email: user.email, message: "Account created",
                access_token: issued.token, expires_in: issued.expiresIn))
    }
}

struct OpenIDConfiguration: Encodable {
    let issuer: String
    let jwks_uri: String
    let token_endpoint: String
    let id_token_signing_alg_values_supported = ["EdDSA"]
    let grant_types_supported = ["password", "urn:ietf:params:oauth:grant-type:token-exchange"]
    let subject_types_supported = ["public"]
    let response_types_supported = ["token"]

    init(issuer: String) {
        self.issuer = issuer
        jwks_uri = issuer + "/.well-known/jwks.json"
        token_endpoint = issuer + "/v1/auth/token"
    }
}

import Foundation
import Hummingbird
import KeyholdCore

/// TOTP MFA: status, enrolment, the login's second step and disabling. `POST /v1/auth/mfa/verify` is public (it
/// takes the challenge a password login answered with); the rest need the person's bearer token.
struct MFAController {
    let mfa: MFAService
    let auth: AuthService

    func register(on router: Router<KeyholdRequestContext>, authenticated: RouterGroup<KeyholdRequestContext>) {
        authenticated.get("/v1/auth/mfa/status") { _, context in
            try JSONResponse.make(MFAStatusResponse(enabled: try await mfa.status(try context.requireCaller())))
        }
        authenticated.post("/v1/auth/mfa/setup") { _, context in
            let (secret, uri) = try await mfa.setup(try context.requireCaller())
            return try JSONResponse.make(MFASetupResponse(secret: secret, otpauth_uri: uri))
        }
        authenticated.post("/v1/auth/mfa/verify-setup") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(MFACodeRequest.self, from: request)
            return try JSONResponse.make(MFAVerifySetupResponse(recovery_codes: try await mfa.verifySetup(caller, code: body.code)))
        }
        authenticated.delete("/v1/auth/mfa") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(MFADisableRequest.self, from: request, emptyAsObject: true)
            try await mfa.disable(caller, code: body.code)
            return JSONResponse.noContent()
        }
        router.post("/v1/auth/mfa/verify") { request, context in
            let body = try await RequestBody.decode(MFAVerifyRequest.self, from: request)
            let (user, factor) = try await mfa.verify(challenge: body.mfa_token, code: body.code, ip: context.clientIP)
            let session = try await auth.session(for: user, ip: context.clientIP, method: "password+" + factor)
            return try JSONResponse.make(SessionResponse(session))
        }
    }
}

import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/org`: members, roles and invitations.
struct OrgController {
    let org: OrgService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.get("/v1/org/members") { request, context in
            let members = try await org.members(of: try context.requireCaller().principal)
            return try JSONResponse.make(MemberListResponse(members: members.map(MemberResponse.init)))
        }
        router.post("/v1/org/invite") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(InviteRequest.self, from: request)
            let (invite, token) = try await org.invite(email: body.email, role: body.role, by: caller)
            return try JSONResponse.make(
                InviteResponse(email: invite.email, role: invite.role.rawValue, invite_token: token, expires_at: invite.expiresAt))
        }
        router.patch("/v1/org/members/:user_id") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(UpdateRoleRequest.self, from: request)
            let user = try await org.updateRole(of: try Self.userID(context), to: body.role, by: caller)
            return try JSONResponse.make(MemberResponse(user))
        }
        router.delete("/v1/org/members/:user_id") { request, context in
            let caller = try context.requireCaller()
            try await org.remove(try Self.userID(context), by: caller)
            return JSONResponse.noContent()
        }
    }

    static func userID(_ context: KeyholdRequestContext) throws -> UUID {
        try context.uuidParameter("user_id", notFound: OrgService.memberNotFound)
    }
}

import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/agents`: people register and manage agents; an agent reads its own profile at `/v1/agents/me`, and asks a
/// member to register it at `/v1/agents/enroll` (public).
struct AgentController {
    let agents: AgentService
    let approvals: ApprovalService

    func register(on publicRouter: Router<KeyholdRequestContext>, authenticated router: RouterGroup<KeyholdRequestContext>) {
        publicRouter.post("/v1/agents/enroll") { request, context in
            let body = try await RequestBody.decode(EnrollAgentRequest.self, from: request)
            guard let email = body.human_email ?? body.email else {
                throw KeyholdError.badRequest("human_email is required: the member who will approve the enrolment")
            }
            let expiresAt = try await approvals.enrol(
                name: body.name, email: email, description: body.description, ip: context.clientIP)
            return try JSONResponse.make(
                EnrollAgentResponse(
                    status: "pending", expires_at: expiresAt,
                    message: "If \(email) is a member's address, they will find this request among their approvals; "
                        + "approving it registers the agent and shows its key to them, once"),
                status: .accepted)
        }
        router.post("/v1/agents") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateAgentRequest.self, from: request)
            let (agent, key) = try await agents.create(by: caller, name: body.name, changes: try body.changes())
            return try JSONResponse.make(AgentWithKeyResponse(agent: AgentResponse(agent), api_key: key), status: .created)
        }
        router.get("/v1/agents") { request, context in
            let list = try await agents.list(by: try context.requireCaller().principal)
            return try JSONResponse.make(AgentListResponse(agents: list.map(AgentResponse.init)))
        }
        router.get("/v1/agents/me") { request, context in
            try JSONResponse.make(AgentResponse(try await agents.me(try context.requireCaller().principal)))
        }
        router.get("/v1/agents/:agent_id") { request, context in
            let caller = try context.requireCaller()
            return try JSONResponse.make(AgentResponse(try await agents.agent(try Self.agentID(context), by: caller.principal)))
        }
        router.patch("/v1/agents/:agent_id") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(UpdateAgentRequest.self, from: request)
            let agent = try await agents.update(try Self.agentID(context), by: caller, changes: body.changes)
            return try JSONResponse.make(AgentResponse(agent))
        }
        router.delete("/v1/agents/:agent_id") { request, context in
            let caller = try context.requireCaller()
            let purge: Bool
            switch request.uri.queryParameters.get("purge") {
            case nil, "false": purge = false
            case "true": purge = true
            default: throw KeyholdError.badRequest("purge must be true or false")
            }
            try await agents.delete(try Self.agentID(context), purge: purge, by: caller)
            return JSONResponse.noContent()
        }
        router.post("/v1/agents/:agent_id/rotate-identity-keys") { request, context in
            let caller = try context.requireCaller()
            let agent = try await agents.rotateIdentityKeys(try Self.agentID(context), by: caller)
            return try JSONResponse.make(AgentResponse(agent))
        }
        router.post("/v1/agents/:agent_id/rotate-key") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(RotateAgentKeyRequest.self, from: request, emptyAsObject: true)
            let (agent, key) = try await agents.rotateKey(
                try Self.agentID(context), by: caller, apiKeyExpiresAt: body.apiKeyExpiresAt)
            return try JSONResponse.make(AgentWithKeyResponse(agent: AgentResponse(agent), api_key: key))
        }
    }

    static func agentID(_ context: KeyholdRequestContext) throws -> UUID {
        try context.uuidParameter("agent_id", notFound: AgentService.notFound)
    }
}

/// `POST /v1/agents/enroll`: 1Claw's SDK sends `human_email`, its docs `email`. A pairing (`public_key`, with
/// `GET /v1/agents/enroll/{id}/status`) is not implemented: the key goes to the member who approves.
struct EnrollAgentRequest: Decodable, RefusesUnsupportedFields {
    let name: String
    let human_email: String?
    let email: String?
    let description: String?

    static let unsupportedFields = [
        UnsupportedField(
            "public_key", inert: [.string("")],
            note: "pairing is not implemented; the key is shown to the member who approves the enrolment")
    ]
}

struct EnrollAgentResponse: Encodable {
    let status: String
    let expires_at: Timestamp
    let message: String
}

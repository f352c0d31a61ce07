import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/agents`: people register and manage agents; an agent reads its own profile at `/v1/agents/me`.
struct AgentController {
    let agents: AgentService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
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

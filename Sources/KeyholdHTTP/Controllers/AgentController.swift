import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/agents`: people register and manage agents; an agent reads its own profile at `/v1/agents/me`.
struct AgentController {
    let agents: AgentService
    let authenticator: Authenticator

    func register(on router: Router<KeyholdRequestContext>) {
        router.post("/v1/agents") { request, context in
            let caller = try await authenticator.caller(request, context)
            let body = try await RequestBody.decode(CreateAgentRequest.self, from: request)
            let (agent, key) = try await agents.create(by: caller, name: body.name, changes: try body.changes())
            return try JSONResponse.make(AgentWithKeyResponse(agent: AgentResponse(agent), api_key: key), status: .created)
        }
        router.get("/v1/agents") { request, context in
            let list = try await agents.list(by: try await authenticator.caller(request, context).principal)
            return try JSONResponse.make(AgentListResponse(agents: list.map(AgentResponse.init)))
        }
        router.get("/v1/agents/me") { request, context in
            try JSONResponse.make(AgentResponse(try await agents.me(try await authenticator.caller(request, context).principal)))
        }
        router.get("/v1/agents/:agent_id") { request, context in
            let caller = try await authenticator.caller(request, context)
            return try JSONResponse.make(AgentResponse(try await agents.agent(try Self.agentID(context), by: caller.principal)))
        }
        router.patch("/v1/agents/:agent_id") { request, context in
            let caller = try await authenticator.caller(request, context)
            let body = try await RequestBody.decode(UpdateAgentRequest.self, from: request)
            let agent = try await agents.update(try Self.agentID(context), by: caller, changes: body.changes)
            return try JSONResponse.make(AgentResponse(agent))
        }
        router.delete("/v1/agents/:agent_id") { request, context in
            let caller = try await authenticator.caller(request, context)
            try await agents.delete(try Self.agentID(context), by: caller)
            return JSONResponse.noContent()
        }
        router.post("/v1/agents/:agent_id/rotate-key") { request, context in
            let caller = try await authenticator.caller(request, context)
            let (agent, key) = try await agents.rotateKey(try Self.agentID(context), by: caller)
            return try JSONResponse.make(AgentWithKeyResponse(agent: AgentResponse(agent), api_key: key))
        }
    }

    static func agentID(_ context: KeyholdRequestContext) throws -> UUID {
        try context.uuidParameter("agent_id", notFound: AgentService.notFound)
    }
}

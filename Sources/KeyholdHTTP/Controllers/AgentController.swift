import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/agents`: people register and manage agents; an agent reads its own profile at `/v1/agents/me`.
struct AgentController {
    let agents: AgentService
    let authenticator: Authenticator

    func register(on router: Router<KeyholdRequestContext>) {
        router.post("/v1/agents") { request, _ in
            let principal = try await authenticator.principal(request)
            let body = try await RequestBody.decode(CreateAgentRequest.self, from: request)
            let (agent, key) = try await agents.create(by: principal, name: body.name, changes: try body.changes())
            return try JSONResponse.make(AgentWithKeyResponse(agent: AgentResponse(agent), api_key: key), status: .created)
        }
        router.get("/v1/agents") { request, _ in
            let list = try await agents.list(by: try await authenticator.principal(request))
            return try JSONResponse.make(AgentListResponse(agents: list.map(AgentResponse.init)))
        }
        router.get("/v1/agents/me") { request, _ in
            try JSONResponse.make(AgentResponse(try await agents.me(try await authenticator.principal(request))))
        }
        router.get("/v1/agents/:agent_id") { request, context in
            let principal = try await authenticator.principal(request)
            return try JSONResponse.make(AgentResponse(try await agents.agent(try Self.agentID(context), by: principal)))
        }
        router.patch("/v1/agents/:agent_id") { request, context in
            let principal = try await authenticator.principal(request)
            let body = try await RequestBody.decode(UpdateAgentRequest.self, from: request)
            let agent = try await agents.update(try Self.agentID(context), by: principal, changes: body.changes)
            return try JSONResponse.make(AgentResponse(agent))
        }
        router.delete("/v1/agents/:agent_id") { request, context in
            let principal = try await authenticator.principal(request)
            try await agents.delete(try Self.agentID(context), by: principal)
            return JSONResponse.noContent()
        }
        router.post("/v1/agents/:agent_id/rotate-key") { request, context in
            let principal = try await authenticator.principal(request)
            let (agent, key) = try await agents.rotateKey(try Self.agentID(context), by: principal)
            return try JSONResponse.make(AgentWithKeyResponse(agent: AgentResponse(agent), api_key: key))
        }
    }

    static func agentID(_ context: KeyholdRequestContext) throws -> UUID {
        try context.uuidParameter("agent_id", notFound: AgentService.notFound)
    }
}

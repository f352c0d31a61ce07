import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore

/// `/v1/approvals`: human approval before an agent acts (contract §1.12). The quick-decide link is public: its
/// token is the credential.
struct ApprovalController {
    let approvals: ApprovalService
    /// Registers the agent of an approved enrolment.
    let agents: AgentService
    let publicURL: String

    func register(on router: Router<KeyholdRequestContext>, authenticated: RouterGroup<KeyholdRequestContext>) {
        let notFound = KeyholdError.notFound("Approval request not found")
        authenticated.post("/v1/approvals/request") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(ApprovalRequestBody.self, from: request)
            let approval = try await approvals.request(
                ApprovalService.Draft(
                    action: body.action, targetType: body.target_type, targetID: body.target_id, summary: body.summary,
                    reason: body.reason, riskTier: body.risk_tier ?? body.declared_risk_tier, payload: body.payload),
                by: caller)
            var response = try JSONResponse.make(ApprovalResponse(approval), status: .accepted)
            response.headers[.location] = "/v1/approvals/\(approval.id.wire)"
            return response
        }
        authenticated.get("/v1/approvals") { request, context in
            let caller = try context.requireCaller()
            let query = request.uri.queryParameters
            func integer(_ name: String, _ fallback: Int) throws -> Int {
                guard let text = query.get(name) else { return fallback }
                guard let value = Int(text) else { throw KeyholdError.badRequest("\(name) must be an integer") }
                return value
            }
            let list = try await approvals.list(
                status: query.get("status"), limit: try integer("limit", 50), offset: try integer("offset", 0), by: caller)
            return try JSONResponse.make(ApprovalListResponse(approvals: list.map(ApprovalResponse.init)))
        }
        // Registered before `/v1/approvals/:approval_id`, which would otherwise take `quick-decide` for an id.
        router.get("/v1/approvals/quick-decide") { request, context in
            let query = request.uri.queryParameters
            guard let token = query.get("token"), let decision = query.get("decision") else {
                throw KeyholdError.badRequest("token and decision are required")
            }
            let approval = try await approvals.quickDecide(token: token, decision: decision, ip: context.clientIP)
            var headers = HTTPFields()
            headers[.location] = "\(publicURL)/approvals/\(approval.id.wire)?decided=true"
            headers[.cacheControl] = "no-store"
            return Response(status: .found, headers: headers)
        }
        authenticated.get("/v1/approvals/:approval_id") { _, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("approval_id", notFound: notFound)
            return try JSONResponse.make(ApprovalResponse(try await approvals.get(id, by: caller)))
        }
        authenticated.post("/v1/approvals/:approval_id/decide") { request, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("approval_id", notFound: notFound)
            let body = try await RequestBody.decode(ApprovalDecisionBody.self, from: request)
            let decision = try await approvals.decide(
                id, decision: body.decision, reason: body.reason,
                confirmation: request.headers[HTTPField.Name("X-Auth-Confirm")!], by: caller, agents: agents)
            var response = ApprovalResponse(decision.approval)
            if let (agent, key) = decision.enrolled { (response.agent, response.api_key) = (AgentResponse(agent), key) }
            return try JSONResponse.make(response)
        }
        authenticated.post("/v1/approvals/:approval_id/cancel") { request, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("approval_id", notFound: notFound)
            let body = try await RequestBody.decode(ApprovalCancelBody.self, from: request, emptyAsObject: true)
            return try JSONResponse.make(ApprovalResponse(try await approvals.cancel(id, reason: body.reason, by: caller)))
        }
    }
}

struct ApprovalRequestBody: Decodable {
    let action: String
    let target_type: String
    let target_id: String
    let summary: JSONValue?
    let reason: String?
    let risk_tier: Int?
    let declared_risk_tier: Int?
    let payload: JSONValue?
}

struct ApprovalDecisionBody: Decodable {
    let decision: String
    let reason: String?
}

struct ApprovalCancelBody: Decodable {
    let reason: String?
}

struct ApprovalListResponse: Encodable {
    let approvals: [ApprovalResponse]
}

/// `ApprovalResponse`, plus the vault, the lease (`uses_left`, `max_uses`, `lease_expires_at`) and, for a policy
/// change or an enrolment, its payload. Approving an enrolment answers with the agent it registered and its key
/// (`agent`, `api_key`), shown this once.
struct ApprovalResponse: Encodable {
    let id: String
    let org_id: String
    let user_id: String?
    let agent_id: String?
    let action: String
    let target_type: String
    let target_id: String
    let vault_id: String?
    let risk_tier: Int
    let status: String
    let summary: JSONValue
    let reason: String?
    let payload: JSONValue?
    let decision_reason: String?
    let decided_by: String?
    let decided_at: Timestamp?
    let expires_at: Timestamp
    let max_uses: Int
    let uses_left: Int
    let lease_expires_at: Timestamp?
    let created_at: Timestamp
    var agent: AgentResponse?
    var api_key: String?

    init(_ approval: Approval) {
        id = approval.id.wire
        org_id = approval.orgID.wire
        user_id = approval.userID?.wire
        agent_id = approval.requesterKind == .agent ? approval.requesterID.wire : nil
        action = approval.action
        target_type = approval.targetType
        target_id = approval.targetID
        vault_id = approval.vaultID?.wire
        risk_tier = approval.riskTier
        status = approval.status(at: .now).rawValue
        summary = approval.summary
        reason = approval.reason
        payload = approval.payload
        decision_reason = approval.decisionReason
        decided_by = approval.decidedBy?.wire
        decided_at = approval.decidedAt
        expires_at = approval.expiresAt
        max_uses = approval.rule.maxUses
        uses_left = approval.usesLeft
        lease_expires_at = approval.leaseExpiresAt
        created_at = approval.createdAt
    }
}

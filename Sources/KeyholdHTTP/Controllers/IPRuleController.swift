import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/security/ip-rules`: the org's IP rules (owners and admins).
struct IPRuleController {
    let rules: IPRuleService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.get("/v1/security/ip-rules") { _, context in
            let list = try await rules.list(by: try context.requireCaller())
            return try JSONResponse.make(IPRuleListResponse(rules: list.map(IPRuleResponse.init)))
        }
        router.post("/v1/security/ip-rules") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateIPRuleRequest.self, from: request)
            let rule = try await rules.create(
                IPRuleService.Draft(
                    ruleType: body.rule_type, cidr: body.cidr, label: body.label ?? body.description,
                    appliesTo: body.applies_to),
                force: body.force ?? false, by: caller)
            return try JSONResponse.make(IPRuleResponse(rule), status: .created)
        }
        router.delete("/v1/security/ip-rules/:rule_id") { request, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("rule_id", notFound: IPRuleService.notFound)
            let force: Bool
            switch request.uri.queryParameters.get("force") {
            case nil, "false": force = false
            case "true": force = true
            default: throw KeyholdError.badRequest("force must be true or false")
            }
            try await rules.delete(id, force: force, by: caller)
            return JSONResponse.noContent()
        }
    }
}

/// 1Claw's `CreateIpRuleRequest`, with its docs' `description` for `label` and Keyhold's `force` (the lock-out guard).
struct CreateIPRuleRequest: Decodable {
    let rule_type: String
    let cidr: String
    let label: String?
    let description: String?
    let applies_to: String?
    let force: Bool?
}

struct IPRuleResponse: Encodable {
    let id: String
    let org_id: String
    let rule_type: String
    let cidr: String
    /// `null` when there is none (the key is always present).
    let label: WireNullable<String>
    let applies_to: String
    let created_by: String
    let created_at: Timestamp

    init(_ rule: IPRule) {
        id = rule.id.wire
        org_id = rule.orgID.wire
        rule_type = rule.type.rawValue
        cidr = rule.cidrText
        label = WireNullable(rule.label)
        applies_to = rule.appliesTo.rawValue
        created_by = rule.createdBy.wire
        created_at = rule.createdAt
    }
}

struct IPRuleListResponse: Encodable {
    let rules: [IPRuleResponse]
}

import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/vaults/{vault_id}/policies`: grants and denials on a vault's paths.
struct PolicyController {
    let policies: PolicyService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.post("/v1/vaults/:vault_id/policies") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreatePolicyRequest.self, from: request)
            let policy = try await policies.create(vaultID: try context.vaultID(), draft: body.draft, by: caller)
            return try JSONResponse.make(PolicyResponse(policy), status: .created)
        }
        router.get("/v1/vaults/:vault_id/policies") { request, context in
            let caller = try context.requireCaller()
            let list = try await policies.list(vaultID: try context.vaultID(), by: caller)
            return try JSONResponse.make(PolicyListResponse(policies: list.map(PolicyResponse.init)))
        }
        router.put("/v1/vaults/:vault_id/policies/:policy_id") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(UpdatePolicyRequest.self, from: request)
            let policy = try await policies.update(
                vaultID: try context.vaultID(), policyID: try Self.policyID(context), changes: body.changes, by: caller)
            return try JSONResponse.make(PolicyResponse(policy))
        }
        router.delete("/v1/vaults/:vault_id/policies/:policy_id") { request, context in
            let caller = try context.requireCaller()
            try await policies.delete(vaultID: try context.vaultID(), policyID: try Self.policyID(context), by: caller)
            return JSONResponse.noContent()
        }
    }

    static func policyID(_ context: KeyholdRequestContext) throws -> UUID {
        try context.uuidParameter("policy_id", notFound: PolicyService.notFound)
    }
}

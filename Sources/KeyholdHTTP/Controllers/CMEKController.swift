import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore

/// `/v1/vaults/{id}/cmek` and `/v1/vaults/{id}/cmek-rotate`: customer-managed keys (contract §1.2).
struct CMEKController {
    let cmek: CMEKService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.post("/v1/vaults/:vault_id/cmek") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(EnableCmekRequest.self, from: request)
            let vault = try await cmek.enable(try context.vaultID(), fingerprint: body.fingerprint, by: caller)
            return try JSONResponse.make(VaultResponse(vault))
        }
        router.delete("/v1/vaults/:vault_id/cmek") { request, context in
            let caller = try context.requireCaller()
            return try JSONResponse.make(VaultResponse(try await cmek.disable(try context.vaultID(), by: caller)))
        }
        router.post("/v1/vaults/:vault_id/cmek-rotate") { request, context in
            let caller = try context.requireCaller()
            let vaultID = try context.vaultID()
            let body = try await RequestBody.decode(CmekRotateRequest.self, from: request)
            let job = try await cmek.startRotation(
                vaultID, oldKey: request.headers[HTTPField.Name("x-cmek-old-key")!],
                newKey: request.headers[HTTPField.Name("x-cmek-new-key")!], newFingerprint: body.new_fingerprint,
                by: caller)
            var response = try JSONResponse.make(CmekRotationJobResponse(job), status: .accepted)
            response.headers[.location] = "/v1/vaults/\(vaultID.wire)/cmek-rotate/\(job.id.wire)"
            return response
        }
        router.get("/v1/vaults/:vault_id/cmek-rotate/:job_id") { request, context in
            let caller = try context.requireCaller()
            let vaultID = try context.vaultID()
            let jobID = try context.uuidParameter("job_id", notFound: KeyholdError.notFound("Rotation job not found"))
            return try JSONResponse.make(CmekRotationJobResponse(try await cmek.job(jobID, vaultID: vaultID, by: caller)))
        }
    }
}

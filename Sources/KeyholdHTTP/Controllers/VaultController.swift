import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/vaults`: create, list, get, delete, all scoped to the caller's org.
struct VaultController {
    let vaults: VaultService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.post("/v1/vaults") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateVaultRequest.self, from: request)
            let vault = try await vaults.create(by: caller, name: body.name, description: body.description)
            return try JSONResponse.make(VaultResponse(vault), status: .created)
        }
        router.get("/v1/vaults") { request, context in
            let caller = try context.requireCaller()
            return try JSONResponse.make(VaultListResponse(vaults: try await vaults.list(for: caller).map(VaultResponse.init)))
        }
        router.get("/v1/vaults/:vault_id") { request, context in
            let caller = try context.requireCaller()
            let vault = try await vaults.access(try context.vaultID(), for: caller).vault
            return try JSONResponse.make(VaultResponse(vault))
        }
        router.delete("/v1/vaults/:vault_id") { request, context in
            let caller = try context.requireCaller()
            try await vaults.delete(try context.vaultID(), by: caller)
            return JSONResponse.noContent()
        }
    }
}

extension KeyholdRequestContext {
    /// The `:vault_id` parameter; a malformed id is a 404 exactly like a missing vault.
    func vaultID() throws -> UUID { try uuidParameter("vault_id", notFound: VaultService.notFound) }
}

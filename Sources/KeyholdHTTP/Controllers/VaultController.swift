import Foundation
import Hummingbird
import KeyholdCore

/// `/v1/vaults`: create, list, get, delete, all scoped to the caller's org.
struct VaultController {
    let vaults: VaultService
    let authenticator: Authenticator

    func register(on router: Router<KeyholdRequestContext>) {
        router.post("/v1/vaults") { request, _ in
            let principal = try await authenticator.principal(for: request)
            let body = try await RequestBody.decode(CreateVaultRequest.self, from: request)
            let vault = try await vaults.create(by: principal, name: body.name, description: body.description)
            return try JSONResponse.make(VaultResponse(vault), status: .created)
        }
        router.get("/v1/vaults") { request, _ in
            let principal = try await authenticator.principal(for: request)
            return try JSONResponse.make(VaultListResponse(vaults: try await vaults.list(for: principal).map(VaultResponse.init)))
        }
        router.get("/v1/vaults/:vault_id") { request, context in
            let principal = try await authenticator.principal(for: request)
            let vault = try await vaults.vault(try context.vaultID(), for: principal)
            return try JSONResponse.make(VaultResponse(vault))
        }
        router.delete("/v1/vaults/:vault_id") { request, context in
            let principal = try await authenticator.principal(for: request)
            try await vaults.delete(try context.vaultID(), by: principal)
            return JSONResponse.noContent()
        }
    }
}

extension KeyholdRequestContext {
    /// The `:vault_id` parameter; a malformed id is a 404 exactly like a missing vault.
    func vaultID() throws -> UUID {
        guard let text = parameters.get("vault_id"), let id = UUID(uuidString: text) else {
            throw VaultService.notFound
        }
        return id
    }
}

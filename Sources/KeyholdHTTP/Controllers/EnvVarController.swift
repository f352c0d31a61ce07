import Foundation
import Hummingbird
import KeyholdCore

/// Environment variables (contract §1.5): `/v1/vaults/{id}/env-vars…`, `/v1/vaults/{id}/environments…` and the org's
/// shared variables at `/v1/org/env-vars…`.
struct EnvVarController {
    let envVars: EnvVarService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        let vaultVars = "/v1/vaults/:vault_id/env-vars"
        router.get(RouterPath(vaultVars)) { request, context in
            let list = try await envVars.list(
                vaultID: try context.vaultID(), environment: request.uri.queryParameters.get("environment"),
                by: try context.requireCaller())
            return try JSONResponse.make(EnvVarListResponse(env_vars: list.map(EnvVarResponse.init)))
        }
        router.post(RouterPath(vaultVars)) { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateEnvVarRequest.self, from: request)
            let created = try await envVars.create(vaultID: try context.vaultID(), body.draft, by: caller)
            return try JSONResponse.make(EnvVarResponse(created), status: .created)
        }
        router.get(RouterPath(vaultVars + "/resolve")) { request, context in
            let query = request.uri.queryParameters
            let resolution = try await envVars.resolve(
                vaultID: try context.vaultID(), environment: query.get("environment"), gitBranch: query.get("git_branch"),
                by: try context.requireCaller())
            return try JSONResponse.make(ResolveEnvVarsResponse(resolution))
        }
        router.get(RouterPath(vaultVars + "/:key")) { request, context in
            let revealed = try await envVars.get(
                vaultID: try context.vaultID(), try Self.selector(request, context), by: try context.requireCaller())
            return try JSONResponse.make(EnvVarResponse(revealed))
        }
        router.patch(RouterPath(vaultVars + "/:key")) { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(UpdateEnvVarRequest.self, from: request)
            let updated = try await envVars.update(
                vaultID: try context.vaultID(), try Self.selector(request, context), body.changes, by: caller)
            return try JSONResponse.make(EnvVarResponse(updated))
        }
        router.delete(RouterPath(vaultVars + "/:key")) { request, context in
            try await envVars.delete(
                vaultID: try context.vaultID(), try Self.selector(request, context), by: try context.requireCaller())
            return JSONResponse.noContent()
        }

        let environments = "/v1/vaults/:vault_id/environments"
        router.get(RouterPath(environments)) { _, context in
            let list = try await envVars.environments(vaultID: try context.vaultID(), by: try context.requireCaller())
            return try JSONResponse.make(VaultEnvironmentListResponse(environments: list.map(VaultEnvironmentResponse.init)))
        }
        router.post(RouterPath(environments)) { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateEnvironmentRequest.self, from: request)
            let environment = try await envVars.createEnvironment(
                vaultID: try context.vaultID(), slug: body.slug, description: body.description, copyFrom: body.copy_from,
                by: caller)
            return try JSONResponse.make(VaultEnvironmentResponse(environment), status: .created)
        }
        router.delete(RouterPath(environments + "/:slug")) { _, context in
            try await envVars.deleteEnvironment(
                vaultID: try context.vaultID(), slug: context.parameters.get("slug") ?? "", by: try context.requireCaller())
            return JSONResponse.noContent()
        }

        router.get("/v1/org/env-vars") { _, context in
            let list = try await envVars.listShared(by: try context.requireCaller())
            return try JSONResponse.make(OrgEnvVarListResponse(env_vars: list.map(OrgEnvVarResponse.init)))
        }
        router.post("/v1/org/env-vars") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(CreateEnvVarRequest.self, from: request)
            return try JSONResponse.make(OrgEnvVarResponse(try await envVars.createShared(body.draft, by: caller)), status: .created)
        }
        // One path template for both: PATCH names the variable by its key, DELETE by its id (as 1Claw's spec has it).
        router.patch("/v1/org/env-vars/:ref") { request, context in
            let caller = try context.requireCaller()
            let body = try await RequestBody.decode(UpdateEnvVarRequest.self, from: request)
            let updated = try await envVars.updateShared(key: context.parameters.get("ref") ?? "", body.changes, by: caller)
            return try JSONResponse.make(OrgEnvVarResponse(updated))
        }
        router.delete("/v1/org/env-vars/:ref") { _, context in
            let caller = try context.requireCaller()
            try await envVars.deleteShared(id: try context.uuidParameter("ref", notFound: EnvVarService.notFound), by: caller)
            return JSONResponse.noContent()
        }
        router.post("/v1/org/env-vars/:ref/link") { request, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("ref", notFound: EnvVarService.notFound)
            let body = try await RequestBody.decode(LinkOrgEnvVarRequest.self, from: request)
            guard let vaultID = UUID(uuidString: body.vault_id) else { throw KeyholdError.badRequest("vault_id must be a UUID") }
            try await envVars.link(id: id, vaultID: vaultID, by: caller)
            return try JSONResponse.make(["env_var_id": id.wire, "vault_id": vaultID.wire], status: .created)
        }
        router.delete("/v1/org/env-vars/:ref/links/:vault_id") { _, context in
            let caller = try context.requireCaller()
            let id = try context.uuidParameter("ref", notFound: EnvVarService.notFound)
            try await envVars.unlink(id: id, vaultID: try context.vaultID(), by: caller)
            return JSONResponse.noContent()
        }
    }

    static func selector(_ request: Request, _ context: KeyholdRequestContext) throws -> EnvVarService.Selector {
        EnvVarService.Selector(
            key: context.parameters.get("key") ?? "", environment: request.uri.queryParameters.get("environment"),
            gitBranch: request.uri.queryParameters.get("git_branch"))
    }
}

struct CreateEnvVarRequest: Decodable {
    let key: String
    let value: String
    let environments: [String]?
    let git_branch: String?
    let sensitive: Bool?
    let comment: String?

    var draft: EnvVarService.Draft {
        .init(key: key, value: value, environments: environments, gitBranch: git_branch, sensitive: sensitive, comment: comment)
    }
}

struct UpdateEnvVarRequest: Decodable {
    let value: String?
    let environments: [String]?
    let sensitive: Bool?
    let comment: String?

    var changes: EnvVarService.Changes {
        .init(value: value, environments: environments, sensitive: sensitive, comment: comment)
    }
}

struct CreateEnvironmentRequest: Decodable {
    let slug: String
    let description: String?
    let copy_from: String?
}

struct LinkOrgEnvVarRequest: Decodable {
    let vault_id: String
}

/// 1Claw's `EnvVar`: `value` is null for a sensitive variable in a list.
struct EnvVarResponse: Encodable {
    let id: String
    let vault_id: String
    let key: String
    let environments: [String]
    let git_branch: WireNullable<String>
    let sensitive: Bool
    let comment: WireNullable<String>
    let value: WireNullable<String>
    let version: Int
    let created_by: String
    let created_at: Timestamp
    let updated_at: Timestamp

    init(_ revealed: EnvVarService.Revealed) {
        let record = revealed.record
        id = record.id.wire
        vault_id = record.vaultID.wire
        key = record.key
        environments = record.environments
        git_branch = WireNullable(record.gitBranch)
        sensitive = record.sensitive
        comment = WireNullable(record.comment)
        value = WireNullable(revealed.value)
        version = record.version
        created_by = record.createdBy.wire
        created_at = record.createdAt
        updated_at = record.updatedAt
    }
}

struct EnvVarListResponse: Encodable {
    let env_vars: [EnvVarResponse]
}

struct OrgEnvVarResponse: Encodable {
    let id: String
    let key: String
    let environments: [String]
    let sensitive: Bool
    let comment: WireNullable<String>
    let value: WireNullable<String>
    let version: Int
    let linked_vaults: [String]
    let created_at: Timestamp
    let updated_at: Timestamp

    init(_ revealed: EnvVarService.RevealedShared) {
        let record = revealed.record
        id = record.id.wire
        key = record.key
        environments = record.environments
        sensitive = record.sensitive
        comment = WireNullable(record.comment)
        value = WireNullable(revealed.value)
        version = record.version
        linked_vaults = record.linkedVaults.map(\.wire)
        created_at = record.createdAt
        updated_at = record.updatedAt
    }
}

struct OrgEnvVarListResponse: Encodable {
    let env_vars: [OrgEnvVarResponse]
}

struct VaultEnvironmentResponse: Encodable {
    let id: String
    let slug: String
    let description: WireNullable<String>
    let is_builtin: Bool
    let copied_from: WireNullable<String>
    let is_detached: Bool
    let created_at: Timestamp

    /// A copy's variables are its own from the moment it is made (`is_detached`).
    init(_ environment: VaultEnvironment) {
        id = environment.id.wire
        slug = environment.slug
        description = WireNullable(environment.description)
        is_builtin = EnvVarRules.builtins.contains(environment.slug)
        copied_from = WireNullable(environment.copiedFrom)
        is_detached = environment.copiedFrom != nil
        created_at = environment.createdAt
    }
}

struct VaultEnvironmentListResponse: Encodable {
    let environments: [VaultEnvironmentResponse]
}

struct ResolveEnvVarsResponse: Encodable {
    let vars: [String: String]
    let sources: [String: String]
    let environment: String
    let git_branch: WireNullable<String>
    let resolved_at: Timestamp

    init(_ resolution: EnvVarService.Resolution) {
        vars = resolution.vars
        sources = resolution.sources
        environment = resolution.environment
        git_branch = WireNullable(resolution.gitBranch)
        resolved_at = resolution.resolvedAt
    }
}

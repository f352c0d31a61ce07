import Foundation
import Hummingbird
import KeyholdCore

/// Secrets in a vault. The multi-segment path is taken from the raw request path (Hummingbird's `**` capture
/// drops empty segments and does not decode), with `%2F` read as `/`, then validated once as a `SecretPath`.
struct SecretController {
    let secrets: SecretService

    func register(on router: RouterGroup<KeyholdRequestContext>) {
        router.put("/v1/vaults/:vault_id/secrets/**") { request, context in
            let caller = try context.requireCaller()
            let path = try Self.secretPath(request)
            let body = try await RequestBody.decode(PutSecretRequest.self, from: request)
            let info = try await secrets.write(
                .init(
                    value: body.value, type: try Self.secretType(body.requestedType()), metadata: body.metadata,
                    rotationPolicy: body.rotation_policy, expiresAt: body.expires_at,
                    maxAccessCount: body.max_access_count),
                vaultID: try context.vaultID(), path: path, by: caller)
            return JSONResponse.make(SecretMetadataResponse(info).json, status: .created)
        }
        router.get("/v1/vaults/:vault_id/secrets/**") { request, context in
            let caller = try context.requireCaller()
            let revealed = try await secrets.read(
                vaultID: try context.vaultID(), path: try Self.secretPath(request), by: caller)
            return JSONResponse.make(SecretResponse(revealed).json)
        }
        router.delete("/v1/vaults/:vault_id/secrets/**") { request, context in
            let caller = try context.requireCaller()
            try await secrets.delete(vaultID: try context.vaultID(), path: try Self.secretPath(request), by: caller)
            return JSONResponse.noContent()
        }
        router.get("/v1/vaults/:vault_id/secrets") { request, context in
            let caller = try context.requireCaller()
            let query = request.uri.queryParameters
            guard let limit = Int(query.get("limit") ?? String(SecretService.maxPageSize)) else {
                throw KeyholdError.badRequest("limit must be an integer")
            }
            let page = try await secrets.list(
                vaultID: try context.vaultID(), prefix: query.get("prefix"), cursor: query.get("cursor"), limit: limit,
                by: caller)
            return try JSONResponse.make(
                SecretListResponse(secrets: page.items.map(SecretMetadataResponse.init), next_cursor: page.nextCursor))
        }
        router.get("/v1/vaults/:vault_id/secret-versions/**") { request, context in
            let caller = try context.requireCaller()
            let versions = try await secrets.versions(
                vaultID: try context.vaultID(), path: try Self.secretPath(request), by: caller)
            return try JSONResponse.make(SecretVersionListResponse(versions: versions.map(SecretMetadataResponse.init)))
        }
        router.get("/v1/vaults/:vault_id/secret-version/**") { request, context in
            let caller = try context.requireCaller()
            let (path, version) = try Self.secretPathAndVersion(request)
            let revealed = try await secrets.read(
                vaultID: try context.vaultID(), path: path, version: version, by: caller)
            return JSONResponse.make(SecretResponse(revealed).json)
        }
        router.post("/v1/vaults/:vault_id/secret-version-disable/**") { request, context in
            let caller = try context.requireCaller()
            let (path, version) = try Self.secretPathAndVersion(request)
            try await secrets.disable(vaultID: try context.vaultID(), path: path, version: version, by: caller)
            return JSONResponse.noContent()
        }
        router.post("/v1/vaults/:vault_id/secret-rotate/**") { request, context in
            let caller = try context.requireCaller()
            let path = try Self.secretPath(request)
            let body = try await RequestBody.decode(RotateSecretRequest.self, from: request, emptyAsObject: true)
            guard let charset = RandomValue.Charset(rawValue: body.charset ?? "hex") else {
                throw KeyholdError.badRequest("charset must be one of hex, base64, alphanumeric, ascii")
            }
            let info = try await secrets.rotate(
                vaultID: try context.vaultID(), path: path, length: body.length ?? 32, charset: charset,
                type: try Self.secretType(body.type), by: caller)
            return JSONResponse.make(SecretMetadataResponse(info).json, status: .created)
        }
    }

    static func secretType(_ name: String?) throws -> SecretType? {
        guard let name else { return nil }
        guard let type = SecretType(rawValue: name) else {
            throw KeyholdError.badRequest(
                "type must be one of " + SecretType.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return type
    }

    /// The raw path after `/v1/vaults/{id}/{collection}/`.
    static func rawTail(_ request: Request) throws -> Substring {
        let raw = request.uri.path
        var slashes = 0
        for index in raw.indices where raw[index] == "/" {
            slashes += 1
            if slashes == 5 { return raw[raw.index(after: index)...] }
        }
        throw KeyholdError.badRequest("A secret path is required")
    }

    static func secretPath(_ request: Request) throws -> SecretPath {
        try SecretPath(urlEncoded: try rawTail(request))
    }

    /// `{path}/{version}`: the last segment is the version number.
    static func secretPathAndVersion(_ request: Request) throws -> (SecretPath, Int) {
        let tail = try rawTail(request)
        guard let slash = tail.lastIndex(of: "/") else { throw KeyholdError.badRequest("A secret path and version are required") }
        guard let version = Int(tail[tail.index(after: slash)...]), version >= 1 else {
            throw KeyholdError.badRequest("version must be a positive integer")
        }
        return (try SecretPath(urlEncoded: tail[..<slash]), version)
    }
}

import Foundation
import KeyholdCore

// Wire shapes of the 1Claw API: field names exactly as the spec (snake_case), separate from domain types.

struct SignupRequest: Decodable {
    let email: String
    let password: String
    let display_name: String?
    let invite_token: String?
}

struct LoginRequest: Decodable {
    let email: String
    let password: String
}

struct SignupResponse: Encodable {
    let user_id: String
    let org_id: String
    let email: String
    let role: String
    let message: String
    let access_token: String
    let token_type = "Bearer"
    let expires_in: Int64
    let refresh_token: String?
}

struct UserProfileResponse: Encodable {
    let id: String
    let email: String
    let display_name: String?
    let org_id: String
    let role: String
    let auth_method = "password"
    let email_verified = false
    let marketing_emails = false
    let totp_enabled = false
    let created_at: Timestamp

    init(_ user: User) {
        id = user.id.wire
        email = user.email
        display_name = user.displayName
        org_id = user.orgID.wire
        role = user.role.rawValue
        created_at = user.createdAt
    }
}

struct CreateVaultRequest: Decodable {
    let name: String
    let description: String?
}

struct VaultResponse: Encodable {
    let id: String
    let org_id: String
    let name: String
    let description: String?
    let created_by: String
    let created_by_type: String
    let created_at: Timestamp
    let cmek_enabled = false

    init(_ vault: Vault) {
        id = vault.id.wire
        org_id = vault.orgID.wire
        name = vault.name
        description = vault.description
        created_by = vault.createdBy.wire
        created_by_type = vault.createdByType.rawValue
        created_at = vault.createdAt
    }
}

struct VaultListResponse: Encodable {
    let vaults: [VaultResponse]
}

struct PutSecretRequest: Decodable {
    let value: String
    let type: String?
    let metadata: JSONValue?
    let expires_at: Timestamp?
    let rotation_policy: JSONValue?
    let max_access_count: Int?
}

struct RotateSecretRequest: Decodable {
    let length: Int?
    let charset: String?
    let type: String?
}

/// `SecretMetadataResponse` / `SecretCreatedResponse`: never the value.
struct SecretMetadataResponse: Encodable {
    let id: String
    let path: String
    let type: String
    let version: Int
    let metadata: JSONValue?
    let rotation_policy: JSONValue?
    let created_by: String
    let created_at: Timestamp
    let expires_at: Timestamp?
    let max_access_count: Int?
    let access_count: Int
    let is_disabled: Bool

    init(_ info: SecretVersionInfo) {
        id = info.secretID.wire
        path = info.path
        type = info.type.rawValue
        version = info.version
        metadata = info.metadata
        rotation_policy = info.rotationPolicy
        created_by = info.createdBy.wire
        created_at = info.createdAt
        expires_at = info.expiresAt
        max_access_count = info.maxAccessCount
        access_count = info.accessCount
        is_disabled = info.isDisabled
    }
}

/// `SecretResponse`: the metadata fields plus the value; only GET secret and GET secret version send it.
struct SecretResponse: Encodable {
    let info: SecretMetadataResponse
    let value: String

    init(_ revealed: SecretService.Revealed) {
        info = SecretMetadataResponse(revealed.info)
        value = revealed.value
    }

    enum CodingKeys: String, CodingKey { case value, cmek_encrypted }

    func encode(to encoder: any Encoder) throws {
        try info.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(value, forKey: .value)
        try container.encode(false, forKey: .cmek_encrypted)
    }
}

struct SecretListResponse: Encodable {
    let secrets: [SecretMetadataResponse]
    /// Present when another page may follow: pass it back as `cursor`.
    let next_cursor: String?
}

struct SecretVersionListResponse: Encodable {
    let versions: [SecretMetadataResponse]
}

struct HealthResponse: Encodable {
    let status: String
    let version: String
}


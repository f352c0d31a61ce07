import Foundation
import KeyholdCore
import NIOCore

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

/// A sign-up with an invite: the new member and a session.
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

/// An open sign-up: the same body whether the address was new or already had an account.
struct SignupReceivedResponse: Encodable {
    let message = "Sign-up received. If this address had no account, it has one now: sign in with POST /v1/auth/token."
    let email: String
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
    let totp_enabled: Bool
    let created_at: Timestamp

    init(_ user: User, totpEnabled: Bool) {
        totp_enabled = totpEnabled
        id = user.id.wire
        email = user.email
        display_name = user.displayName
        org_id = user.orgID.wire
        role = user.role.rawValue
        created_at = user.createdAt
    }
}

/// A password login of a user with MFA on: no session yet, a challenge for `POST /v1/auth/mfa/verify` (1Claw's
/// shape: an empty `access_token`, `expires_in` the challenge's lifetime).
struct MFAChallengeResponse: Encodable {
    let mfa_required = true
    let mfa_token: String
    let access_token = ""
    let token_type = "Bearer"
    let expires_in = MFAService.challengeLifetime
}

struct MFAStatusResponse: Encodable {
    let enabled: Bool
}

struct MFASetupResponse: Encodable {
    let secret: String
    let otpauth_uri: String
}

struct MFACodeRequest: Decodable {
    let code: String
}

struct MFAVerifySetupResponse: Encodable {
    let recovery_codes: [String]
}

struct MFAVerifyRequest: Decodable {
    let mfa_token: String
    let code: String
}

/// `DELETE /v1/auth/mfa`: a code is required; the deprecated `password` is accepted in the body and ignored.
struct MFADisableRequest: Decodable {
    let code: String?
    let password: String?
}

/// `PATCH /v1/auth/me`: 1Claw's fields, plus a password change (both passwords). `display_name: null` clears it.
struct UpdateProfileRequest: Decodable {
    let display_name: String??
    let marketing_emails: Bool?
    let current_password: String?
    let new_password: String?

    enum CodingKeys: String, CodingKey { case display_name, marketing_emails, current_password, new_password }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        display_name = container.contains(.display_name) ? .some(try container.decodeIfPresent(String.self, forKey: .display_name)) : nil
        marketing_emails = try container.decodeIfPresent(Bool.self, forKey: .marketing_emails)
        current_password = try container.decodeIfPresent(String.self, forKey: .current_password)
        new_password = try container.decodeIfPresent(String.self, forKey: .new_password)
    }
}

struct DeleteAccountRequest: Decodable {
    let confirmation: String?
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
    let cmek_enabled: Bool
    /// Present while CMEK is on.
    let cmek_fingerprint: String?

    init(_ vault: Vault) {
        cmek_enabled = vault.cmekFingerprint != nil
        cmek_fingerprint = vault.cmekFingerprint
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

struct EnableCmekRequest: Decodable {
    let fingerprint: String
}

struct CmekRotateRequest: Decodable {
    let new_fingerprint: String
}

/// `CmekRotationJobResponse`; the id also as `job_id`, the SDK's name for it.
struct CmekRotationJobResponse: Encodable {
    let id: String
    let job_id: String
    let vault_id: String
    let old_fingerprint: String
    let new_fingerprint: String
    let status: String
    let total_secrets: Int
    let processed: Int
    let error: String?
    let started_at: Timestamp?
    let completed_at: Timestamp?
    let created_at: Timestamp

    init(_ job: CMEKRotationJob) {
        id = job.id.wire
        job_id = id
        vault_id = job.vaultID.wire
        old_fingerprint = job.oldFingerprint
        new_fingerprint = job.newFingerprint
        status = job.status.rawValue
        total_secrets = job.totalSecrets
        processed = job.processed
        error = job.error
        started_at = job.startedAt
        completed_at = job.completedAt
        created_at = job.createdAt
    }
}

struct PutSecretRequest: Decodable {
    let value: String
    let type: String?
    /// 1Claw's CLI sends the type under this name (`env push`); read as `type`.
    let secret_type: String?
    let metadata: JSONValue?
    let expires_at: Timestamp?
    let rotation_policy: JSONValue?
    let max_access_count: Int?
}

extension PutSecretRequest {
    /// `type`, or `secret_type` when only that is given; both, naming different types, is a contradiction.
    func requestedType() throws -> String? {
        if let type, let secret_type, type != secret_type {
            throw KeyholdError.badRequest("type and secret_type name different types")
        }
        return type ?? secret_type
    }
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
    /// 1Claw's CLI reads these two: `type` again, and when the secret last changed (a version is never changed
    /// after it is written, so the version's creation).
    let secret_type: String
    let updated_at: Timestamp
    /// The value is a CMEK ciphertext (the client decrypts it with its key).
    let cmek_encrypted: Bool

    init(_ info: SecretVersionInfo) {
        cmek_encrypted = info.cmekFingerprint != nil
        id = info.secretID.wire
        path = info.path
        type = info.type.rawValue
        secret_type = type
        updated_at = info.createdAt
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

extension SecretMetadataResponse {
    func write(to json: inout JSONObjectWriter) {
        json.field("id", id)
        json.field("path", path)
        json.field("type", type)
        json.field("version", version)
        json.field("metadata", metadata)
        json.field("rotation_policy", rotation_policy)
        json.field("created_by", created_by)
        json.field("created_at", created_at.iso8601)
        json.field("expires_at", expires_at?.iso8601)
        json.field("max_access_count", max_access_count)
        json.field("access_count", access_count)
        json.field("is_disabled", is_disabled)
        json.field("secret_type", secret_type)
        json.field("updated_at", updated_at.iso8601)
        json.field("cmek_encrypted", cmek_encrypted)
    }

    /// The same object as `Encodable` gives (lists use that), written directly (see `JSONObjectWriter`);
    /// `HTTPTests.sealedSecretRoundTrip` checks that both agree.
    var json: JSONObjectWriter {
        var json = JSONObjectWriter()
        write(to: &json)
        return json
    }
}

/// `SecretResponse`: the metadata fields plus the value; only GET secret and GET secret version send it.
struct SecretResponse {
    let info: SecretMetadataResponse
    let value: String

    init(_ revealed: SecretService.Revealed) {
        info = SecretMetadataResponse(revealed.info)
        value = revealed.value
    }

    /// The metadata object (`cmek_encrypted` among its fields) with `value` after it.
    var json: JSONObjectWriter {
        var json = info.json
        json.field("value", value)
        return json
    }
}

/// A JSON object written field by field in order, leaving out nil fields as synthesized `Encodable` does. The
/// secret routes answer with it: Foundation's `JSONEncoder` was about a twentieth of a secret read's CPU time.
struct JSONObjectWriter {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]

    init() { bytes.reserveCapacity(512) }

    private mutating func key(_ name: String) {
        if bytes.count > 1 { bytes.append(UInt8(ascii: ",")) }
        JSONValue.appendJSONString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func field(_ name: String, _ value: String?) {
        guard let value else { return }
        key(name)
        JSONValue.appendJSONString(value, to: &bytes)
    }

    mutating func field(_ name: String, _ value: Int?) {
        guard let value else { return }
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func field(_ name: String, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    mutating func field(_ name: String, _ value: JSONValue?) {
        guard let value else { return }
        key(name)
        bytes.append(contentsOf: value.jsonString().utf8)
    }

    var buffer: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "}"))
        return buffer
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


import Foundation
import KeyholdCore

// Wire shapes for agents, API keys, tokens, policies and org members (1Claw's field names).

extension KeyedDecodingContainer {
    /// Tri-state for PATCH bodies: absent (`nil`), explicit `null` (`.some(nil)`), or a value.
    func decodeNullable<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T?? {
        guard contains(key) else { return nil }
        if try decodeNil(forKey: key) { return .some(nil) }
        return .some(try decode(T.self, forKey: key))
    }
}

/// Scopes on the wire: `null` when there are none (no cap), a list otherwise (`[]` caps to nothing), so the two
/// never look alike in a listing.
struct WireScopes: Encodable {
    let scopes: [String]?

    init(_ scopes: [String]?) { self.scopes = scopes }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let scopes { try container.encode(scopes) } else { try container.encodeNil() }
    }
}

/// An optional value written as `null` when absent (synthesized `Encodable` would leave the key out).
struct WireNullable<Value: Encodable>: Encodable {
    let value: Value?

    init(_ value: Value?) { self.value = value }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}

func parseUUIDs(_ strings: [String], field: String) throws -> [UUID] {
    try strings.map {
        guard let id = UUID(uuidString: $0) else { throw KeyholdError.badRequest("\(field) must hold UUIDs") }
        return id
    }
}

struct AgentTokenRequest: Decodable {
    let api_key: String
    let agent_id: String?
}

struct APIKeyTokenRequest: Decodable {
    let api_key: String
}

struct RefreshRequest: Decodable {
    let refresh_token: String?
}

struct SessionResponse: Encodable {
    let access_token: String
    let token_type = "Bearer"
    let expires_in: Int64
    let refresh_token: String?
    let agent_id: String?
    let vault_ids: [String]?

    init(_ session: AuthService.Session) {
        access_token = session.access.token
        expires_in = session.access.expiresIn
        refresh_token = session.refreshToken
        let agent = session.principal.kind == .agent
        agent_id = agent ? session.principal.id.wire : nil
        vault_ids = agent ? session.principal.vaultIDs.map(\.wire) : nil
    }
}

struct CreateAPIKeyRequest: Decodable {
    let name: String
    let scopes: [String]?
    let expires_at: Timestamp?
}

struct APIKeyResponse: Encodable {
    let id: String
    let name: String
    let key_prefix: String
    let prefix: String
    let scopes: WireScopes
    let is_active: Bool
    let created_at: Timestamp
    let expires_at: Timestamp?

    init(_ key: UserAPIKey) {
        id = key.id.wire
        name = key.name
        key_prefix = key.keyPrefix
        prefix = key.keyPrefix
        scopes = WireScopes(key.scopes)
        is_active = key.isActive
        created_at = key.createdAt
        expires_at = key.expiresAt
    }
}

struct APIKeyCreatedResponse: Encodable {
    let key: APIKeyResponse
    let api_key: String
}

struct APIKeyListResponse: Encodable {
    let keys: [APIKeyResponse]
}

struct CreateAgentRequest: Decodable {
    let name: String
    let description: String?
    let scopes: [String]?
    let vault_ids: [String]?
    let token_ttl_seconds: Int?
    let expires_at: Timestamp?
    let is_active: Bool?
    let environment: String?
    let environment_locked: Bool?
    let env_auto_resolve: Bool?
    let api_key_expires_at: Timestamp?
    let intents_api_enabled: Bool?

    /// `auth_method` and the other fields Keyhold does not implement are checked before this decodes
    /// (`AgentUnsupportedFields`).
    func changes() throws -> AgentService.Changes {
        AgentService.Changes(
            description: description.map { .some($0) }, isActive: is_active, scopes: scopes.map { .some($0) },
            vaultIDs: try vault_ids.map { try parseUUIDs($0, field: "vault_ids") },
            tokenTTLSeconds: token_ttl_seconds.map { .some($0) }, expiresAt: expires_at.map { .some($0) },
            environment: environment.map { .some($0) }, environmentLocked: environment_locked,
            envAutoResolve: env_auto_resolve, apiKeyExpiresAt: api_key_expires_at.map { .some($0) },
            intentsAPIEnabled: intents_api_enabled)
    }
}

struct UpdateAgentRequest: Decodable {
    let changes: AgentService.Changes

    enum CodingKeys: String, CodingKey {
        case name, description, is_active, scopes, vault_ids, token_ttl_seconds, expires_at, environment
        case environment_locked, env_auto_resolve, api_key_expires_at, intents_api_enabled
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        changes = AgentService.Changes(
            name: try container.decodeIfPresent(String.self, forKey: .name),
            description: try container.decodeNullable(String.self, forKey: .description),
            isActive: try container.decodeIfPresent(Bool.self, forKey: .is_active),
            scopes: try container.decodeNullable([String].self, forKey: .scopes),
            vaultIDs: try container.decodeIfPresent([String].self, forKey: .vault_ids).map {
                try parseUUIDs($0, field: "vault_ids")
            },
            tokenTTLSeconds: try container.decodeNullable(Int.self, forKey: .token_ttl_seconds),
            expiresAt: try container.decodeNullable(Timestamp.self, forKey: .expires_at),
            environment: try container.decodeNullable(String.self, forKey: .environment),
            environmentLocked: try container.decodeIfPresent(Bool.self, forKey: .environment_locked),
            envAutoResolve: try container.decodeIfPresent(Bool.self, forKey: .env_auto_resolve),
            apiKeyExpiresAt: try container.decodeNullable(Timestamp.self, forKey: .api_key_expires_at),
            intentsAPIEnabled: try container.decodeIfPresent(Bool.self, forKey: .intents_api_enabled))
    }
}

/// The optional body of `POST /v1/agents/{id}/rotate-key`: `api_key_expires_at` absent keeps the key's expiry,
/// `null` clears it, an instant sets it.
struct RotateAgentKeyRequest: Decodable {
    let apiKeyExpiresAt: Timestamp??

    enum CodingKeys: String, CodingKey { case api_key_expires_at }

    init(from decoder: any Decoder) throws {
        apiKeyExpiresAt = try decoder.container(keyedBy: CodingKeys.self)
            .decodeNullable(Timestamp.self, forKey: .api_key_expires_at)
    }
}

struct AgentResponse: Encodable {
    let id: String
    let org_id: String
    let name: String
    let description: String?
    let auth_method = "api_key"
    let scopes: WireScopes
    let vault_ids: [String]
    let is_active: Bool
    let intents_api_enabled: Bool
    let shroud_enabled = false
    let token_ttl_seconds: Int?
    let expires_at: Timestamp?
    let created_by: String
    let created_at: Timestamp
    let key_prefix: String
    let environment: WireNullable<String>
    let environment_locked: Bool
    let env_auto_resolve: Bool
    let api_key_expires_at: WireNullable<Timestamp>
    let ssh_public_key: WireNullable<String>
    let ecdh_public_key: WireNullable<String>
    let identity_keys_created_at: WireNullable<Timestamp>
    let identity_key_history: [IdentityKeyResponse]

    struct IdentityKeyResponse: Encodable {
        let ssh_public_key: String
        let ecdh_public_key: String
        let created_at: Timestamp
        let retired_at: Timestamp
    }

    init(_ agent: Agent) {
        id = agent.id.wire
        org_id = agent.orgID.wire
        name = agent.name
        description = agent.description
        scopes = WireScopes(agent.scopes)
        vault_ids = agent.vaultIDs.map(\.wire)
        is_active = agent.isActive
        intents_api_enabled = agent.intentsAPIEnabled
        token_ttl_seconds = agent.tokenTTLSeconds
        expires_at = agent.expiresAt
        created_by = agent.createdBy.wire
        created_at = agent.createdAt
        key_prefix = agent.keyPrefix
        environment = WireNullable(agent.environment)
        environment_locked = agent.environmentLocked
        env_auto_resolve = agent.envAutoResolve
        api_key_expires_at = WireNullable(agent.apiKeyExpiresAt)
        ssh_public_key = WireNullable(agent.sshPublicKey)
        ecdh_public_key = WireNullable(agent.ecdhPublicKey)
        identity_keys_created_at = WireNullable(agent.identityKeysCreatedAt)
        identity_key_history = agent.identityKeyHistory.map {
            IdentityKeyResponse(
                ssh_public_key: $0.sshPublicKey, ecdh_public_key: $0.ecdhPublicKey, created_at: $0.createdAt,
                retired_at: $0.retiredAt)
        }
    }
}

struct AgentWithKeyResponse: Encodable {
    let agent: AgentResponse
    let api_key: String
}

struct AgentListResponse: Encodable {
    let agents: [AgentResponse]
}

struct CreatePolicyRequest: Decodable {
    let secret_path_pattern: String
    let principal_type: String
    let principal_id: String
    let permissions: [String]
    let conditions: JSONValue?
    let expires_at: Timestamp?
    let effect: String?
    let priority: Int?

    var draft: PolicyService.Draft {
        .init(
            pattern: secret_path_pattern, principalKind: principal_type, principalID: principal_id,
            permissions: permissions, conditions: conditions, expiresAt: expires_at, effect: effect, priority: priority)
    }
}

struct UpdatePolicyRequest: Decodable {
    let changes: PolicyService.Changes

    enum CodingKeys: String, CodingKey {
        case permissions, conditions, expires_at, effect, priority, secret_path_pattern, principal_type, principal_id
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        for fixed in [CodingKeys.secret_path_pattern, .principal_type, .principal_id] where container.contains(fixed) {
            throw KeyholdError.badRequest("secret_path_pattern and the principal are fixed after creation")
        }
        changes = PolicyService.Changes(
            permissions: try container.decodeIfPresent([String].self, forKey: .permissions),
            conditions: try container.decodeNullable(JSONValue.self, forKey: .conditions),
            expiresAt: try container.decodeNullable(Timestamp.self, forKey: .expires_at),
            effect: try container.decodeIfPresent(String.self, forKey: .effect),
            priority: try container.decodeIfPresent(Int.self, forKey: .priority))
    }
}

struct PolicyResponse: Encodable {
    let id: String
    let vault_id: String
    let secret_path_pattern: String
    let principal_type: String
    let principal_id: String
    let permissions: [String]
    let conditions: JSONValue?
    let expires_at: Timestamp?
    let effect: String
    let priority: Int
    let created_by: String
    let created_by_type: String
    let created_at: Timestamp

    init(_ policy: Policy) {
        id = policy.id.wire
        vault_id = policy.vaultID.wire
        secret_path_pattern = policy.pattern.rawValue
        principal_type = policy.principalKind.rawValue
        principal_id = policy.principalID.wire
        permissions = policy.permissions.map(\.rawValue)
        conditions = policy.conditions.json
        expires_at = policy.expiresAt
        effect = policy.effect.rawValue
        priority = policy.priority
        created_by = policy.createdBy.wire
        created_by_type = policy.createdByType.rawValue
        created_at = policy.createdAt
    }
}

struct PolicyListResponse: Encodable {
    let policies: [PolicyResponse]
}

struct MemberResponse: Encodable {
    let id: String
    let user_id: String
    let email: String
    let display_name: String?
    let role: String
    let auth_method = "password"
    let created_at: Timestamp
    let joined_at: Timestamp

    init(_ user: User) {
        id = user.id.wire
        user_id = user.id.wire
        email = user.email
        display_name = user.displayName
        role = user.role.rawValue
        created_at = user.createdAt
        joined_at = user.createdAt
    }
}

struct MemberListResponse: Encodable {
    let members: [MemberResponse]
}

struct InviteRequest: Decodable {
    let email: String
    let role: String?
}

struct InviteResponse: Encodable {
    let message = "Invitation created; the invitee signs up with this invite_token and the same email"
    let email: String
    let role: String
    let invite_token: String
    let expires_at: Timestamp
}

struct UpdateRoleRequest: Decodable {
    let role: String
}

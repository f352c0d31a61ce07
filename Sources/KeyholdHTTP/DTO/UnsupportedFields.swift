import Foundation
import KeyholdCore

/// Fields of 1Claw's request bodies that Keyhold knows and does not implement (Shroud, the Intents API's signing
/// guardrails, cards, federation, mTLS and OIDC agents, MPC custody, policy consensus and transaction conditions).
/// A body may carry one absent, `null` or at a value that asks for nothing (its default, as the official SDK sends
/// `shroud_enabled: false` and `auth_method: "api_key"` on every create); any other value is refused with a 400 that
/// names the field, never stored or dropped in silence. A field not listed here and not read by the request's type
/// is not one of 1Claw's for that route: it is ignored, as JSON APIs do.
///
/// `RequestBody.decode` checks a body against its type's list, in one place, before the type decodes it.
protocol RefusesUnsupportedFields {
    static var unsupportedFields: [UnsupportedField] { get }
}

struct UnsupportedField: Sendable {
    let name: String
    /// Values that ask for nothing and pass, besides `null`.
    let inert: [JSONValue]
    /// What the refusal adds after "is not supported by Keyhold".
    let note: String?

    init(_ name: String, inert: [JSONValue] = [], note: String? = nil) {
        self.name = name
        self.inert = inert
        self.note = note
    }

    /// A flag whose default is off.
    static func off(_ name: String) -> Self { Self(name, inert: [.bool(false)]) }
    /// A list or object that is empty when it configures nothing.
    static func empty(_ name: String) -> Self { Self(name, inert: [.array([]), .object([:])]) }

    /// Refuses the first listed field of `body` (a JSON object) that holds a value asking for something.
    static func check(_ body: JSONValue, against fields: [UnsupportedField]) throws {
        guard case .object(let object) = body else { return }
        for field in fields {
            guard let value = object[field.name], value != .null, !field.inert.contains(value) else { continue }
            let accepted = (["null"] + field.inert.map(\.display)).joined(separator: ", ")
            throw KeyholdError.badRequest(
                "Field '\(field.name)' is not supported by Keyhold\(field.note.map { " (\($0))" } ?? ""); "
                    + "it may only be absent or \(accepted)")
        }
    }
}

extension JSONValue {
    /// The value as JSON text, for naming the accepted ones in a refusal (only the server's own values).
    fileprivate var display: String {
        switch self {
        case .null: "null"
        case .bool(let flag): flag ? "true" : "false"
        case .number(let number): number.rounded() == number ? String(Int(number)) : String(number)
        case .string(let text): "\"\(text)\""
        case .array(let items): "[" + items.map(\.display).joined(separator: ", ") + "]"
        case .object(let members): members.isEmpty ? "{}" : "{…}"
        }
    }
}

/// The agent fields of 1Claw's `CreateAgentRequest` / `UpdateAgentRequest` (and the official SDK's) that Keyhold
/// does not implement. Stored and enforced instead: name, description, scopes, vault_ids, is_active, expires_at,
/// token_ttl_seconds, api_key_expires_at, environment, environment_locked, env_auto_resolve, intents_api_enabled.
enum AgentUnsupportedFields {
    static let all: [UnsupportedField] = [
        UnsupportedField(
            "auth_method", inert: [.string("api_key")],
            note: "agents authenticate with an api_key; mtls and oidc_client_credentials are not implemented"),
        UnsupportedField("client_cert_fingerprint", note: "mTLS agents are not implemented"),
        UnsupportedField("oidc_issuer", note: "OIDC agents are not implemented"),
        UnsupportedField("oidc_client_id", note: "OIDC agents are not implemented"),
        .off("shroud_enabled"), .empty("shroud_config"),
        .off("execution_intents_enabled"), .empty("execution_guardrails"), .off("intents_require_tee"),
        .off("execution_require_tee"),
        .empty("tx_to_allowlist"), UnsupportedField("tx_max_value"), UnsupportedField("tx_daily_limit"),
        UnsupportedField("tx_max_value_eth"), UnsupportedField("tx_daily_limit_eth"), .empty("tx_allowed_chains"),
        .empty("tx_token_allowlist"), .off("tx_known_tokens_only"), .empty("xrpl_allowed_tx_types"),
        .empty("per_chain_guardrails"), UnsupportedField("tx_max_per_day"), .empty("tx_overhead_budget"),
        .empty("solana_ata_allowlist"), .empty("tx_approval_policy"), UnsupportedField("typed_data_policy"),
        UnsupportedField("simulation_failure_policy"), .off("tx_block_unlimited_approvals"),
        UnsupportedField("tx_per_recipient_max_per_day"), UnsupportedField("tx_per_recipient_daily_limit"),
        UnsupportedField("new_recipient_cap_native"), UnsupportedField("tx_max_value_usd"),
        UnsupportedField("tx_daily_limit_usd"), UnsupportedField("raw_signing_policy"), .empty("personal_sign_policy"),
        .off("allow_erc4337"), .off("allow_eip7702"), .off("message_signing_enabled"), .off("raw_signing_enabled"),
        UnsupportedField("eip712_default_policy"), .empty("eip712_domain_allowlist"),
        .off("cards_enabled"), UnsupportedField("card_max_order_usd"), UnsupportedField("card_daily_limit_usd"),
        .empty("card_payto_allowlist"), .off("card_reveal_enabled"),
        UnsupportedField("card_require_approval", inert: [.bool(true)]),
        .off("federation_enabled"), .empty("federation_audiences"), UnsupportedField("federated_token_ttl_seconds"),
        .empty("per_environment_guardrails"), .off("clear_auto_suspended"),
        UnsupportedField("approval_id", note: "control-plane consensus is not implemented"),
    ]
}

extension CreateAgentRequest: RefusesUnsupportedFields {
    static var unsupportedFields: [UnsupportedField] { AgentUnsupportedFields.all }
}

extension UpdateAgentRequest: RefusesUnsupportedFields {
    static var unsupportedFields: [UnsupportedField] { AgentUnsupportedFields.all }
}

extension CreateVaultRequest: RefusesUnsupportedFields {
    static let unsupportedFields: [UnsupportedField] = [
        UnsupportedField("mpc_custody", note: "MPC custody is not implemented"),
        UnsupportedField("mpc_threshold", note: "MPC custody is not implemented"),
        .empty("mpc_providers"),
    ]
}

/// Policies: conditions, effect, priority and expiry are enforced; 1Claw's attribute conditions, consensus
/// triggers and transaction conditions (which concern signing) are not implemented.
enum PolicyUnsupportedFields {
    static let all: [UnsupportedField] = [
        .empty("attribute_conditions"), UnsupportedField("consensus_trigger"), UnsupportedField("tx_conditions"),
        UnsupportedField("approval_id", note: "control-plane consensus is not implemented"),
        UnsupportedField("policy_schema_version", inert: [.number(2)]),
    ]
}

extension CreatePolicyRequest: RefusesUnsupportedFields {
    static var unsupportedFields: [UnsupportedField] { PolicyUnsupportedFields.all }
}

extension UpdatePolicyRequest: RefusesUnsupportedFields {
    static var unsupportedFields: [UnsupportedField] { PolicyUnsupportedFields.all }
}

/// A share lends read access only.
extension CreateShareRequest: RefusesUnsupportedFields {
    static let unsupportedFields: [UnsupportedField] = [
        UnsupportedField(
            "permissions", inert: [.array([]), .array([.string("read")])], note: "a share grants read only")
    ]
}

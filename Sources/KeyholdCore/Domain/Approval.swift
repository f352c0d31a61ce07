import Foundation

/// A policy's approval requirement (`conditions.require_approval: true`): a read the policy allows needs a
/// person's approval first, which mints a lease of `maxUses` reads lasting `ttlSeconds` from the decision.
public struct ApprovalRule: Sendable, Hashable {
    public let ttlSeconds: Int
    public let maxUses: Int

    public static let defaultTTLSeconds = 900
    public static let defaultMaxUses = 1
    public static let ttlRange = 60...604_800
    public static let maxUsesRange = 1...1000

    public init(ttlSeconds: Int = Self.defaultTTLSeconds, maxUses: Int = Self.defaultMaxUses) {
        self.ttlSeconds = ttlSeconds
        self.maxUses = maxUses
    }

    /// The rule a policy's `conditions` object states, nil when it requires no approval. `approval_ttl_seconds` or
    /// `approval_max_uses` without `require_approval: true` is refused: it would read as a gate that is not there.
    init?(conditions fields: [String: JSONValue]) throws {
        let required: Bool
        switch fields["require_approval"] ?? .null {
        case .null: required = false
        case .bool(let flag): required = flag
        default: throw KeyholdError.badRequest("conditions.require_approval must be true or false")
        }
        func integer(_ key: String, _ range: ClosedRange<Int>, _ fallback: Int) throws -> Int {
            switch fields[key] ?? .null {
            case .null: return fallback
            case .number(let number) where number.rounded() == number && range.contains(Int(exactly: number) ?? .min):
                return Int(number)
            default:
                throw KeyholdError.badRequest(
                    "conditions.\(key) must be an integer between \(range.lowerBound) and \(range.upperBound)")
            }
        }
        let ttl = try integer("approval_ttl_seconds", Self.ttlRange, Self.defaultTTLSeconds)
        let uses = try integer("approval_max_uses", Self.maxUsesRange, Self.defaultMaxUses)
        guard required else {
            if fields["approval_ttl_seconds"] ?? .null != .null || fields["approval_max_uses"] ?? .null != .null {
                throw KeyholdError.badRequest(
                    "conditions.approval_ttl_seconds and approval_max_uses need conditions.require_approval: true")
            }
            return nil
        }
        self.init(ttlSeconds: ttl, maxUses: uses)
    }

    /// When several allows require approval, the shortest lease with the fewest uses.
    static func strictest(_ rules: [ApprovalRule]) -> ApprovalRule? {
        guard !rules.isEmpty else { return nil }
        return ApprovalRule(ttlSeconds: rules.map(\.ttlSeconds).min()!, maxUses: rules.map(\.maxUses).min()!)
    }
}

public enum ApprovalStatus: String, Sendable, CaseIterable {
    case pending, approved, rejected, expired, cancelled
}

/// A request for a person's approval (`/v1/approvals`), and once approved the lease it grants. Created by the
/// server when a gated read is refused (`action` `secret_read`: the requester, the vault and the path), or by an
/// agent (`POST /v1/approvals/request`; `policy_change` carries the policy to create in `payload`). A sealed row
/// (`GrantSeal`): whose it is, what it allows, its status and its lease's uses and expiry.
public struct Approval: Sendable, Hashable {
    public let id: UUID
    public let orgID: UUID
    /// The person it is addressed to (the vault's creator, or the agent's creator); nil when none is known.
    public let userID: UUID?
    public let requesterKind: PrincipalKind
    public let requesterID: UUID
    public let action: String
    public let targetType: String
    public let targetID: String
    public let vaultID: UUID?
    public let riskTier: Int
    public var status: ApprovalStatus
    public let summary: JSONValue
    public let reason: String?
    public let payload: JSONValue?
    public var decisionReason: String?
    public var decidedBy: UUID?
    public var decidedAt: Timestamp?
    /// Until when a pending request may be decided.
    public let expiresAt: Timestamp
    public let rule: ApprovalRule
    /// Reads left on the lease (0 until approved, and once spent or expired).
    public var usesLeft: Int
    public var leaseExpiresAt: Timestamp?
    public let createdAt: Timestamp

    public init(
        id: UUID, orgID: UUID, userID: UUID?, requesterKind: PrincipalKind, requesterID: UUID, action: String,
        targetType: String, targetID: String, vaultID: UUID?, riskTier: Int, status: ApprovalStatus,
        summary: JSONValue, reason: String?, payload: JSONValue?, decisionReason: String?, decidedBy: UUID?,
        decidedAt: Timestamp?, expiresAt: Timestamp, rule: ApprovalRule, usesLeft: Int, leaseExpiresAt: Timestamp?,
        createdAt: Timestamp
    ) {
        self.id = id
        self.orgID = orgID
        self.userID = userID
        self.requesterKind = requesterKind
        self.requesterID = requesterID
        self.action = action
        self.targetType = targetType
        self.targetID = targetID
        self.vaultID = vaultID
        self.riskTier = riskTier
        self.status = status
        self.summary = summary
        self.reason = reason
        self.payload = payload
        self.decisionReason = decisionReason
        self.decidedBy = decidedBy
        self.decidedAt = decidedAt
        self.expiresAt = expiresAt
        self.rule = rule
        self.usesLeft = usesLeft
        self.leaseExpiresAt = leaseExpiresAt
        self.createdAt = createdAt
    }

    /// The status as of `now`: a pending request past its expiry is expired even before the sweep records it.
    public func status(at now: Timestamp) -> ApprovalStatus {
        status == .pending && expiresAt <= now ? .expired : status
    }

    /// The action of a read held back for approval.
    public static let secretRead = "secret_read"
    public static let policyChange = "policy_change"
    /// An agent's self-enrolment (`POST /v1/agents/enroll`), addressed to the member whose email it names; the
    /// requester id is the id the agent will have, and approving it registers the agent.
    public static let agentEnrollment = "agent_enroll"
    /// How long an enrolment can be approved: 24 hours.
    public static let enrollmentLifetimeSeconds: Int64 = 86_400
    /// How long a pending request (and its quick-decide link) can be decided: 7 days.
    public static let pendingLifetimeSeconds: Int64 = 7 * 86_400

    /// The server's own risk tier: 3 for a policy change or anything that names `**`, otherwise 1. The request's
    /// tier is the higher of this and the declared one, at most 3.
    public static func riskTier(action: String, target: String, payload: JSONValue?, declared: Int?) -> Int {
        var own = 1
        if action == policyChange || target.contains("**") { own = 3 }
        if case .object(let fields)? = payload, case .string(let pattern)? = fields["secret_path_pattern"],
            pattern.contains("**")
        {
            own = 3
        }
        return min(3, max(own, declared ?? 1))
    }
}

/// What a gated read asks of storage: an unspent, unexpired lease of this requester on this vault and path.
public struct LeaseClaim: Sendable, Hashable {
    public let requesterKind: PrincipalKind
    public let requesterID: UUID
    public let vaultID: UUID
    public let path: String

    public init(requesterKind: PrincipalKind, requesterID: UUID, vaultID: UUID, path: String) {
        self.requesterKind = requesterKind
        self.requesterID = requesterID
        self.vaultID = vaultID
        self.path = path
    }
}

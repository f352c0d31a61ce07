import Foundation

public enum PolicyEffect: String, Sendable, Codable {
    case allow, deny
}

/// A grant (or denial) on a vault: who, which paths, which permissions, under which conditions, until when.
public struct Policy: Sendable, Hashable {
    public let id: UUID
    public let vaultID: UUID
    public let pattern: PathPattern
    public let principalKind: PrincipalKind
    public let principalID: UUID
    public let permissions: [Permission]
    public let conditions: PolicyConditions
    public let expiresAt: Timestamp?
    public let effect: PolicyEffect
    public let priority: Int
    public let createdBy: UUID
    public let createdByType: PrincipalKind
    public let createdAt: Timestamp

    public init(
        id: UUID, vaultID: UUID, pattern: PathPattern, principalKind: PrincipalKind, principalID: UUID,
        permissions: [Permission], conditions: PolicyConditions, expiresAt: Timestamp?, effect: PolicyEffect,
        priority: Int, createdBy: UUID, createdByType: PrincipalKind, createdAt: Timestamp
    ) {
        self.id = id
        self.vaultID = vaultID
        self.pattern = pattern
        self.principalKind = principalKind
        self.principalID = principalID
        self.permissions = permissions
        self.conditions = conditions
        self.expiresAt = expiresAt
        self.effect = effect
        self.priority = priority
        self.createdBy = createdBy
        self.createdByType = createdByType
        self.createdAt = createdAt
    }

    /// `write` implies `delete` and `rotate`.
    public func covers(_ permission: Permission) -> Bool {
        permissions.contains(permission) || (permission != .read && permissions.contains(.write))
    }

    public func applies(to principal: Principal, at context: AccessContext) -> Bool {
        principalKind == principal.kind && principalID == principal.id
            && (expiresAt.map { context.now < $0 } ?? true)
            && conditions.hold(at: context)
    }

    /// Parses the permission names of a request; empty or unknown names are a 400.
    public static func permissions(_ names: [String]) throws -> [Permission] {
        guard !names.isEmpty else { throw KeyholdError.badRequest("permissions must not be empty") }
        var result: [Permission] = []
        for name in names {
            guard let permission = Permission(rawValue: name) else {
                throw KeyholdError.badRequest("permissions must be among read, write, delete, rotate")
            }
            if !result.contains(permission) { result.append(permission) }
        }
        return result
    }
}

/// Where and when a request happens, for policy conditions.
public struct AccessContext: Sendable {
    public let clientIP: IPAddress?
    public let now: Timestamp
    /// How the request reached the API when not directly (`mcp-http`), for the audit log.
    public let transport: String?

    public init(clientIP: IPAddress?, now: Timestamp = .now, transport: String? = nil) {
        self.clientIP = clientIP
        self.now = now
        self.transport = transport
    }
}

/// `conditions`: `{"ip_allowlist": ["10.0.0.0/8", …], "time_window": {"after": "08:00", "before": "20:00",
/// "timezone": "UTC", "days": ["mon", …]}, "require_approval": true, "approval_ttl_seconds": 900,
/// "approval_max_uses": 1}`. Unknown keys are refused so a typo cannot silently widen a grant.
public struct PolicyConditions: Sendable, Hashable {
    public let ipAllowlist: [CIDR]?
    public let timeWindow: TimeWindow?
    /// A read this allow covers needs a person's approval first (`ApprovalRule`); nil when it does not.
    public let approval: ApprovalRule?
    /// The conditions as given, returned on reads.
    public let json: JSONValue?

    public static let none = PolicyConditions(ipAllowlist: nil, timeWindow: nil, approval: nil, json: nil)
    static let keys: Set<String> = [
        "ip_allowlist", "time_window", "require_approval", "approval_ttl_seconds", "approval_max_uses",
    ]

    init(ipAllowlist: [CIDR]?, timeWindow: TimeWindow?, approval: ApprovalRule?, json: JSONValue?) {
        self.ipAllowlist = ipAllowlist
        self.timeWindow = timeWindow
        self.approval = approval
        self.json = json
    }

    public init(json: JSONValue?) throws {
        guard let json, json != .null else {
            self = .none
            return
        }
        guard case .object(let fields) = json else { throw KeyholdError.badRequest("conditions must be a JSON object") }
        for key in fields.keys where !Self.keys.contains(key) {
            throw KeyholdError.badRequest(
                "conditions: unknown condition '\(key.prefix(64))' (supported: \(Self.keys.sorted().joined(separator: ", ")))")
        }
        var allowlist: [CIDR]?
        if let value = fields["ip_allowlist"], value != .null {
            guard case .array(let items) = value, !items.isEmpty, items.count <= 256 else {
                throw KeyholdError.badRequest("conditions.ip_allowlist must be a non-empty list of CIDR strings")
            }
            allowlist = try items.map { (item: JSONValue) throws -> CIDR in
                guard case .string(let text) = item, let cidr = CIDR(text) else {
                    throw KeyholdError.badRequest("conditions.ip_allowlist holds an invalid CIDR")
                }
                return cidr
            }
        }
        var window: TimeWindow?
        if let value = fields["time_window"], value != .null { window = try TimeWindow(json: value) }
        self.init(ipAllowlist: allowlist, timeWindow: window, approval: try ApprovalRule(conditions: fields), json: json)
    }

    public func hold(at context: AccessContext) -> Bool {
        if let ipAllowlist {
            guard let ip = context.clientIP, ipAllowlist.contains(where: { $0.contains(ip) }) else { return false }
        }
        if let timeWindow, !timeWindow.contains(context.now) { return false }
        return true
    }
}

/// A daily window in a time zone, optionally on some weekdays only. `after` > `before` spans midnight.
public struct TimeWindow: Sendable, Hashable {
    public let after: Int
    public let before: Int
    public let timeZone: TimeZone
    /// 1 = Sunday … 7 = Saturday, as `Calendar`.
    public let days: Set<Int>?

    static let dayNames = ["sun": 1, "mon": 2, "tue": 3, "wed": 4, "thu": 5, "fri": 6, "sat": 7]

    init(json: JSONValue) throws {
        guard case .object(let fields) = json else { throw KeyholdError.badRequest("conditions.time_window must be an object") }
        func minutes(_ key: String) throws -> Int {
            guard case .string(let text) = fields[key] ?? .null else {
                throw KeyholdError.badRequest("conditions.time_window.\(key) must be \"HH:MM\"")
            }
            let parts = text.split(separator: ":")
            guard parts.count == 2, parts[0].count == 2, parts[1].count == 2, let hours = Int(parts[0]),
                let mins = Int(parts[1]), (0...23).contains(hours), (0...59).contains(mins)
            else { throw KeyholdError.badRequest("conditions.time_window.\(key) must be \"HH:MM\"") }
            return hours * 60 + mins
        }
        after = try minutes("after")
        before = try minutes("before")
        guard after != before else { throw KeyholdError.badRequest("conditions.time_window is empty (after equals before)") }
        switch fields["timezone"] ?? .string("UTC") {
        case .string(let name):
            guard let zone = TimeZone(identifier: name) else {
                throw KeyholdError.badRequest("conditions.time_window.timezone is not a known time zone")
            }
            timeZone = zone
        default: throw KeyholdError.badRequest("conditions.time_window.timezone must be a time zone name")
        }
        if let value = fields["days"], value != .null {
            guard case .array(let items) = value, !items.isEmpty else {
                throw KeyholdError.badRequest("conditions.time_window.days must be a non-empty list such as [\"mon\",\"tue\"]")
            }
            var days = Set<Int>()
            for item in items {
                guard case .string(let name) = item, let day = Self.dayNames[name.lowercased().prefix(3).description]
                else { throw KeyholdError.badRequest("conditions.time_window.days holds an unknown day") }
                days.insert(day)
            }
            self.days = days
        } else {
            days = nil
        }
        for key in fields.keys where !["after", "before", "timezone", "days"].contains(key) {
            throw KeyholdError.badRequest("conditions.time_window: unknown field '\(key.prefix(64))'")
        }
    }

    public func contains(_ instant: Timestamp) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.hour, .minute, .weekday], from: instant.date)
        let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        let inWindow = after < before ? (after <= minute && minute < before) : (minute >= after || minute < before)
        guard inWindow else { return false }
        guard let days else { return true }
        // A window spanning midnight belongs to the day it started on.
        var weekday = parts.weekday ?? 1
        if after > before, minute < before { weekday = weekday == 1 ? 7 : weekday - 1 }
        return days.contains(weekday)
    }
}

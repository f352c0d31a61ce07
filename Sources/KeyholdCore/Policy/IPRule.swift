import Foundation

/// `allow` or `deny`: 1Claw's spec names these two; its docs' examples send `block`, read as `deny`.
public enum IPRuleType: String, Sendable, Hashable, CaseIterable {
    case allow, deny

    /// The wire's value, with the docs' `block` for `deny`; anything else is nil.
    public init?(wire: String) {
        if wire == "block" { self = .deny } else { self.init(rawValue: wire) }
    }
}

/// Whose requests a rule applies to (`applies_to`; undocumented by 1Claw, `all` when absent).
public enum IPRuleTarget: String, Sendable, Hashable, CaseIterable {
    case all, humans, agents

    public func covers(_ kind: PrincipalKind) -> Bool {
        switch self {
        case .all: true
        case .humans: kind == .user
        case .agents: kind == .agent
        }
    }
}

/// An org's rule on the client addresses its people or agents may call from.
public struct IPRule: Sendable, Hashable {
    public let id: UUID
    public let orgID: UUID
    public let type: IPRuleType
    /// The network as it was given (validated), and parsed.
    public let cidrText: String
    public let cidr: CIDR
    public let label: String?
    public let appliesTo: IPRuleTarget
    public let createdBy: UUID
    public let createdAt: Timestamp

    public init(
        id: UUID, orgID: UUID, type: IPRuleType, cidr: CIDR, cidrText: String, label: String?,
        appliesTo: IPRuleTarget, createdBy: UUID, createdAt: Timestamp
    ) {
        self.id = id
        self.orgID = orgID
        self.type = type
        self.cidr = cidr
        self.cidrText = cidrText
        self.label = label
        self.appliesTo = appliesTo
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

/// The decision over an org's rules for one caller (pure): rules that do not cover the caller's kind are ignored;
/// a deny rule containing the address refuses (deny wins); when at least one allow rule covers the caller, only an
/// address inside one of them passes. An unknown address passes only when no rule covers the caller.
public struct IPRuleSet: Sendable {
    public let rules: [IPRule]

    public init(_ rules: [IPRule]) { self.rules = rules }

    public enum Refusal: String, Sendable, Equatable {
        /// A deny rule contains the address.
        case denied = "deny_rule"
        /// Allow rules cover the caller and none contains the address.
        case notAllowed = "not_allowed"
    }

    /// Why `address` may not be used by a caller of `kind`, or nil when it may.
    public func refusal(for address: IPAddress?, kind: PrincipalKind) -> Refusal? {
        var allowRules = false
        var allowed = false
        for rule in rules where rule.appliesTo.covers(kind) {
            switch rule.type {
            case .deny:
                // Fail closed: with a deny rule in force, an address the server cannot tell is refused too.
                guard let address else { return .denied }
                if rule.cidr.contains(address) { return .denied }
            case .allow:
                allowRules = true
                if let address, rule.cidr.contains(address) { allowed = true }
            }
        }
        return allowRules && !allowed ? .notAllowed : nil
    }
}

/// The client's address behind reverse proxies: `X-Forwarded-For` counts only when the socket's peer is a trusted
/// proxy; then the addresses are walked from the right (each proxy appends the address it saw) and the first one that
/// is not a trusted proxy is the client. Whatever a client writes at the left of the header is therefore never
/// believed past the first untrusted hop. An entry that does not parse stops the walk at the last trusted hop, which
/// is then taken as the client (never an address the client chose).
public enum ClientAddress {
    public static func resolve(peer: IPAddress?, forwardedFor headers: [String], trustedProxies: [CIDR]) -> IPAddress? {
        guard let peer, !trustedProxies.isEmpty, isTrusted(peer, trustedProxies) else { return peer }
        let hops = headers.flatMap { $0.split(separator: ",") }
        var client = peer
        for hop in hops.reversed() {
            guard let address = parse(hop) else { return client }
            client = address
            if !isTrusted(address, trustedProxies) { return address }
        }
        return client
    }

    static func isTrusted(_ address: IPAddress, _ proxies: [CIDR]) -> Bool { proxies.contains { $0.contains(address) } }

    /// One hop: an IPv4 or IPv6 address, optionally `[v6]`, `[v6]:port` or `v4:port`, spaces around it ignored.
    static func parse(_ hop: Substring) -> IPAddress? {
        var text = hop.trimmingCharacters(in: .whitespaces)[...]
        if text.first == "[" {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let rest = text[text.index(after: close)...]
            guard rest.isEmpty || rest.first == ":" && rest.dropFirst().allSatisfy(\.isNumber) && rest.count > 1 else {
                return nil
            }
            text = text[text.index(after: text.startIndex)..<close]
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            let port = text[text.index(after: colon)...]
            guard !port.isEmpty, port.allSatisfy(\.isNumber) else { return nil }
            text = text[..<colon]
        }
        guard !text.isEmpty, !text.contains("%") else { return nil }
        return IPAddress(text)
    }
}

import Crypto
import Foundation

/// Capability leases (issue 23): using a secret without seeing it. A person (or an agent, for itself) who may read a
/// secret grants one principal its use against one destination: scheme, host, port, methods and a path prefix, with
/// where the value goes, a number of uses and an end. The principal sends `POST /v1/proxy` with the lease's token;
/// the server checks the lease and every caveat the token carries, spends a use with its audit event, and sends the
/// request itself with the value injected. The value never leaves the server.
///
/// A lease lends its creator's read access, like a share: it works only while its creator could still read the secret.
/// Its tokens are HMAC chains (`LeaseToken`) under a root key derived from the server's lease key (which the keystore
/// seals) and the lease's id, so no stored row holds a key.
public struct LeaseService: Sendable {
    let store: any CapabilityLeaseStore
    let identities: any IdentityStore
    let agents: any AgentStore
    let secrets: SecretService
    let audit: AuditLog
    let rootKey: SymmetricKey
    /// `--webhook-allow-private`: leases to plain `http://` destinations (private ones, which the sender checks).
    let allowPrivate: Bool
    let perLease: RateLimiter
    let perOrg: RateLimiter

    public static let notFound = KeyholdError.notFound("Lease not found")
    public static let maxLifetimeSeconds: Int64 = 30 * 24 * 3600
    public static let maxUsesLimit = 1_000_000

    public init(
        store: any CapabilityLeaseStore, identities: any IdentityStore, agents: any AgentStore, secrets: SecretService,
        audit: AuditLog, rootKey: SymmetricKey, allowPrivate: Bool,
        perLease: RateLimiter = RateLimiter(rate: 20, burst: 40), perOrg: RateLimiter = RateLimiter(rate: 100, burst: 200)
    ) {
        self.store = store
        self.identities = identities
        self.agents = agents
        self.secrets = secrets
        self.audit = audit
        self.rootKey = rootKey
        self.allowPrivate = allowPrivate
        self.perLease = perLease
        self.perOrg = perOrg
    }

    /// The key that lease root keys are derived from, from storage (sealed by the keystore), created on first start.
    public static func loadRootKey(system: any SystemStore, keystore: any Keystore) async throws -> SymmetricKey {
        try await keystore.serverKey("lease-root-key", in: system)
    }

    func root(_ id: UUID) -> SymmetricKey {
        SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Data("keyhold.lease.root|\(id.wire)".utf8), using: rootKey))
    }

    public struct CreateRequest: Sendable {
        public var path: SecretPath
        /// The principal who may use it; the caller when nil.
        public var principal: (kind: PrincipalKind, id: UUID)?
        public var scheme: String
        public var host: String
        public var port: Int?
        public var methods: Set<String>
        public var pathPrefix: String
        public var injection: LeaseInjection
        public var maxUses: Int?
        public var expiresAt: Timestamp
        public var description: String?

        public init(
            path: SecretPath, principal: (kind: PrincipalKind, id: UUID)?, scheme: String, host: String, port: Int?,
            methods: Set<String>, pathPrefix: String, injection: LeaseInjection, maxUses: Int?, expiresAt: Timestamp,
            description: String?
        ) {
            self.path = path
            self.principal = principal
            self.scheme = scheme
            self.host = host
            self.port = port
            self.methods = methods
            self.pathPrefix = pathPrefix
            self.injection = injection
            self.maxUses = maxUses
            self.expiresAt = expiresAt
            self.description = description
        }
    }

    /// Creates a lease and returns it with its first token (shown once). The caller must be able to read the secret
    /// now; under a policy that requires approval, creating it spends one use of the caller's approved read lease
    /// (or asks for one, like a read). An agent may create leases for itself alone.
    public func create(vaultID: UUID, _ request: CreateRequest, by caller: Caller) async throws
        -> (lease: CapabilityLease, token: String)
    {
        let now = Timestamp.now
        let principal = caller.principal
        guard request.scheme == "https" || (request.scheme == "http" && allowPrivate) else {
            throw KeyholdError.badRequest(
                allowPrivate ? "destination.scheme must be https or http" : "destination.scheme must be https")
        }
        guard request.expiresAt > now,
            request.expiresAt.milliseconds - now.milliseconds <= Self.maxLifetimeSeconds * 1000
        else { throw KeyholdError.badRequest("expires_at must be in the future and at most 30 days away") }
        if let maxUses = request.maxUses, !(1...Self.maxUsesLimit).contains(maxUses) {
            throw KeyholdError.badRequest("max_uses must be between 1 and \(Self.maxUsesLimit)")
        }
        let holder = request.principal ?? (principal.kind, principal.id)
        if holder.kind != principal.kind || holder.id != principal.id {
            guard principal.kind == .user else {
                throw KeyholdError.forbidden("An agent may create leases for itself only")
            }
            guard try await AuthService.current(
                holder.kind, holder.id, orgID: principal.orgID, identities: identities, agents: agents) != nil
            else {
                throw KeyholdError.badRequest("principal_id must name an active agent or a user of your organization")
            }
        }
        let (vault, rule) = try await secrets.authorizeGated(caller, vaultID: vaultID, path: request.path, action: "lease.create")
        if rule != nil, secrets.approvals == nil { throw KeyholdError.forbidden("Access denied") }
        let lease = CapabilityLease(
            id: UUID(), orgID: vault.orgID, vaultID: vault.id, path: request.path.rawValue, principalKind: holder.kind,
            principalID: holder.id, scheme: request.scheme, host: request.host, port: request.port,
            methods: request.methods, pathPrefix: request.pathPrefix, injection: request.injection,
            maxUses: request.maxUses, uses: 0, expiresAt: request.expiresAt, revokedAt: nil, createdBy: principal.id,
            createdByType: principal.kind, createdAt: now, description: request.description)
        var details = Self.describe(lease)
        do {
            try await store.createCapabilityLease(
                lease, approval: rule == nil ? nil : secrets.approvals?.lease(for: caller, vault: vault, path: request.path),
                audit: audit.record(caller, "lease.create", "lease", lease.id.wire, details))
        } catch let error as KeyholdError where error.type == KeyholdError.noLease.type && error.approvalRequestID == nil {
            guard let rule, let approvals = secrets.approvals else { throw KeyholdError.forbidden("Access denied") }
            let approval = try await approvals.requestRead(caller, vault: vault, path: request.path, rule: rule)
            details["outcome"] = "approval_required"
            details["approval_id"] = .string(approval.id.wire)
            try await audit.append(audit.record(caller, "lease.create", "lease", lease.id.wire, details))
            throw KeyholdError.approvalRequired(approval.id)
        }
        return (lease, LeaseToken.mint(leaseID: lease.id, rootKey: root(lease.id)).encoded)
    }


    /// What an audit event says of a lease: never a value, a key or a token.
    static func describe(_ lease: CapabilityLease) -> [String: JSONValue] {
        var details: [String: JSONValue] = [
            "vault_id": .string(lease.vaultID.wire), "path": .string(lease.path),
            "principal_type": .string(lease.principalKind.rawValue), "principal_id": .string(lease.principalID.wire),
            "destination": .string(destination(lease)), "methods": .array(lease.methods.sorted().map(JSONValue.string)),
            "path_prefix": .string(lease.pathPrefix), "expires_at": .string(lease.expiresAt.iso8601),
        ]
        if let maxUses = lease.maxUses { details["max_uses"] = .number(Double(maxUses)) }
        return details
    }

    static func destination(_ lease: CapabilityLease) -> String {
        "\(lease.scheme)://\(lease.host)" + (lease.port.map { ":\($0)" } ?? "")
    }

    /// Leases of a vault the caller may see: all of them for an org owner or admin, else those it created or holds.
    public func list(vaultID: UUID, limit: Int, offset: Int, by caller: Caller) async throws -> [CapabilityLease] {
        let vault = try await secrets.vaults.access(vaultID, for: caller).vault
        let principal = caller.principal
        let all = principal.isOrgAdmin && !principal.isScoped
        return try await store.capabilityLeases(vaultID: vault.id, limit: limit, offset: offset).filter {
            all || isCreator($0, principal) || isHolder($0, principal)
        }
    }

    func isCreator(_ lease: CapabilityLease, _ principal: Principal) -> Bool {
        lease.createdByType == principal.kind && lease.createdBy == principal.id
    }

    func isHolder(_ lease: CapabilityLease, _ principal: Principal) -> Bool {
        lease.principalKind == principal.kind && lease.principalID == principal.id
    }

    /// Revokes a lease: its creator, its holder, or an org owner or admin may. Revoking twice is not an error.
    public func revoke(vaultID: UUID, id: UUID, by caller: Caller) async throws -> CapabilityLease {
        let principal = caller.principal
        guard let lease = try await store.capabilityLease(id: id), lease.vaultID == vaultID, lease.orgID == principal.orgID
        else { throw Self.notFound }
        guard isCreator(lease, principal) || isHolder(lease, principal) || principal.isOrgAdmin && !principal.isScoped else {
            try await audit.append(
                audit.record(
                    caller, "lease.revoke", "lease", id.wire,
                    ["outcome": "denied", "reason": "only the lease's creator or holder or an org owner or admin may revoke it"]))
            throw Self.notFound
        }
        guard let result = try await store.revokeCapabilityLease(
            id: id, vaultID: vaultID, at: .now,
            audit: { [audit] in audit.record(caller, "lease.revoke", "lease", $0.id.wire, ["vault_id": .string(vaultID.wire)]) })
        else { throw Self.notFound }
        return result.lease
    }

    // MARK: Use

    /// An outgoing request as the holder asks for it (`POST /v1/proxy`).
    public struct ProxyRequest: Sendable {
        public var token: String
        public var method: String
        public var url: String
        public var headers: [(String, String)]
        public var body: Data

        public init(token: String, method: String, url: String, headers: [(String, String)], body: Data) {
            self.token = token
            self.method = method
            self.url = url
            self.headers = headers
            self.body = body
        }
    }

    /// A use that every check allowed, before its use is spent.
    public struct Authorized: Sendable {
        public let lease: CapabilityLease
        public let caveats: [LeaseToken.Verified]
        public let target: ProxyTarget
        let creator: Principal
    }

    /// The parts of the URL a lease decides on.
    public struct ProxyTarget: Sendable {
        public let scheme: String
        public let host: String
        public let port: Int
        /// The path as sent (percent-encoded as given), never empty.
        public let path: String
        /// The path decoded: what the lease's prefix and caveats are checked against.
        public let decodedPath: String
        public let query: String?
    }

    /// A spent use: the request to send, with the value in it, and what to redact from the answer.
    public struct Prepared: Sendable {
        public let lease: CapabilityLease
        public let url: String
        public let method: String
        public let headers: [(String, String)]
        public let body: Data
        /// The value and its encodings, longest first: none of them may reach the caller.
        public let redactions: [[UInt8]]
    }

    public static let maxURLLength = 8192

    /// Parses the request's URL into what a lease decides on: an absolute `http(s)` URL with a host, no credentials
    /// and no fragment, whose path has no dot segments, no encoded slash, dot or backslash (so that the upstream
    /// cannot read another path than the one checked). 400 otherwise.
    public static func target(_ url: String) throws -> ProxyTarget {
        guard url.utf8.count <= maxURLLength, let components = URLComponents(string: url),
            let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http",
            let rawHost = components.host, !rawHost.isEmpty
        else { throw KeyholdError.badRequest("url must be an absolute http or https URL of at most \(maxURLLength) bytes") }
        guard components.user == nil, components.password == nil else {
            throw KeyholdError.badRequest("url must not carry credentials")
        }
        guard components.fragment == nil else { throw KeyholdError.badRequest("url must not have a fragment") }
        let host = rawHost.lowercased()
        guard LeaseRules.isHostPattern(host), !host.hasPrefix("*.") else {
            throw KeyholdError.badRequest("url must name a DNS host or an IPv4 address")
        }
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        guard let decoded = path.removingPercentEncoding, Self.isPlainPath(path), Self.isPlainPath(decoded) else {
            throw KeyholdError.badRequest(
                "url's path must be UTF-8 without dot segments (also before ';'), empty segments, control characters or encoded separators")
        }
        let port = components.port ?? LeaseRules.defaultPort(scheme)
        guard (1...65535).contains(port) else { throw KeyholdError.badRequest("url's port is out of range") }
        return ProxyTarget(
            scheme: scheme, host: host, port: port, path: path, decodedPath: decoded, query: components.percentEncodedQuery)
    }

    /// A path an upstream cannot read as another than the one checked: it starts with `/`, has no empty segment, no
    /// `.` or `..` segment (also before a `;`, or padded with blanks), no backslash, no control character, and no
    /// percent-encoded separator or dot (checked on the path as sent and once decoded, for an upstream that decodes
    /// twice).
    static func isPlainPath(_ path: String) -> Bool {
        let lowered = path.lowercased()
        guard path.hasPrefix("/"), !path.contains("//"), !path.contains("\\"), !lowered.contains("%2f"),
            !lowered.contains("%2e"), !lowered.contains("%5c"), !lowered.contains("%25"),
            path.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        else { return false }
        return !path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().contains { segment in
            let head = segment.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let bare = head.trimmingCharacters(in: .whitespaces)
            return bare == "." || bare == ".."
        }
    }

    /// Every check that needs no use spent: the token's chain, the lease (its holder, its creator's access, its
    /// destination, methods and path) and every caveat, the rate limits, and last `route`, which resolves the host
    /// and applies the SSRF guard (its route is where the request will connect). A refusal is recorded and answered 403
    /// (410 for a lease that is revoked, expired or spent; 404 for one the caller cannot know of; 429 over a limit).
    public func authorize<Route: Sendable>(
        _ request: ProxyRequest, by caller: Caller, route: (ProxyTarget) async -> Result<Route, Refusal>
    ) async throws -> (authorized: Authorized, route: Route) {
        let principal = caller.principal
        guard let token = LeaseToken(parsing: request.token) else {
            throw KeyholdError.badRequest("lease must be a lease token (khl_…)")
        }
        guard LeaseRules.isMethod(request.method) else { throw KeyholdError.badRequest("method must be an upper-case HTTP method") }
        let target = try Self.target(request.url)
        func refuse(_ reason: String, _ error: KeyholdError, lease: CapabilityLease? = nil) async throws -> KeyholdError {
            var details: [String: JSONValue] = [
                "outcome": "denied", "reason": .string(reason), "method": .string(request.method),
                "destination": .string("\(target.scheme)://\(target.host):\(target.port)"), "url_path": .string(target.path),
            ]
            if let lease { details["vault_id"] = .string(lease.vaultID.wire) }
            try await audit.append(audit.record(caller, "lease.use", "lease", token.leaseID.wire, details))
            return error
        }
        guard let caveats = token.verified(rootKey: root(token.leaseID)) else {
            throw try await refuse("the token does not verify", KeyholdError.forbidden("The lease token is not valid"))
        }
        guard let lease = try await store.capabilityLease(id: token.leaseID), lease.orgID == principal.orgID,
            isHolder(lease, principal)
        else { throw try await refuse("not the lease's holder", Self.notFound) }
        if let reason = lease.goneReason(at: .now) { throw try await refuse(reason, .gone(reason), lease: lease) }
        // The caller's credential must reach the secret's path and vault: a scoped key or a vault-bound agent uses no
        // lease outside them.
        guard let leasedPath = try? SecretPath(validating: lease.path), secrets.authorizer.withinScopes(principal, path: leasedPath),
            principal.kind != .agent || principal.vaultIDs.isEmpty || principal.vaultIDs.contains(lease.vaultID)
        else {
            throw try await refuse(
                "the credential's scopes or vault binding exclude the secret",
                KeyholdError.forbidden("The lease does not allow this request: the credential's scopes or vault binding exclude the secret"),
                lease: lease)
        }
        let use = CapabilityLease.Use(
            principalKind: principal.kind, principalID: principal.id, method: request.method, scheme: target.scheme,
            host: target.host, port: target.port, path: target.decodedPath, at: .now)
        if let reason = lease.refusal(of: use, caveats: caveats) {
            throw try await refuse(reason, KeyholdError.forbidden("The lease does not allow this request: \(reason)"), lease: lease)
        }
        guard let creator = try await creatorMayRead(lease, ip: caller.context.clientIP) else {
            throw try await refuse("the lease's creator can no longer read the secret", .gone("the lease's creator can no longer read the secret"), lease: lease)
        }
        for (limiter, key) in [(perLease, lease.id.wire), (perOrg, lease.orgID.wire)] {
            if let wait = limiter.take(key) {
                let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
                throw KeyholdError(.tooManyRequests, "The lease's rate limit is reached; retry after \(seconds) seconds", retryAfter: seconds)
            }
        }
        switch await route(target) {
        case .success(let route):
            return (Authorized(lease: lease, caveats: caveats, target: target, creator: creator), route)
        case .failure(let refusal):
            throw try await refuse(
                refusal.reason, KeyholdError.forbidden("The destination is refused: \(refusal.reason)"), lease: lease)
        }
    }

    /// Why a destination may not be reached (the outbound SSRF guard's answer).
    public struct Refusal: Error, Sendable {
        public let reason: String
        public init(reason: String) { self.reason = reason }
    }

    /// The creator, if they could read the secret now (an approval-gated read counts: its approval was spent when the
    /// lease was made).
    private func creatorMayRead(_ lease: CapabilityLease, ip: IPAddress?) async throws -> Principal? {
        guard let creator = try await AuthService.current(
            lease.createdByType, lease.createdBy, orgID: lease.orgID, identities: identities, agents: agents),
            let path = try? SecretPath(validating: lease.path)
        else { return nil }
        return try await secrets.mayUse(Caller(creator, context: AccessContext(clientIP: ip)), vaultID: lease.vaultID, path: path)
            ? creator : nil
    }

    /// Spends one use (the lease's and each `uses<=N` caveat's) with its `lease.use` event, reads and opens the value,
    /// and builds the request to send. The caller's headers may not set the injected one, `Authorization` under basic
    /// injection, or any the proxy manages; the injected value may not contain a line break.
    public func spend(_ authorized: Authorized, _ request: ProxyRequest, by caller: Caller) async throws -> Prepared {
        let lease = authorized.lease
        let target = authorized.target
        var headers: [(String, String)] = []
        let injected: String? =
            switch lease.injection {
            case .header(let name, _): LeaseRules.folded(name)
            case .basic: "authorization"
            case .query: nil
            }
        for (name, value) in request.headers {
            let folded = LeaseRules.folded(name)
            guard !name.isEmpty, name.utf8.allSatisfy(LeaseRules.isTokenByte), LeaseRules.isHeaderSafe(value) else {
                throw KeyholdError.badRequest("headers must be HTTP header names and values without control characters")
            }
            guard !LeaseRules.reservedHeaders.contains(folded), folded != injected else {
                throw KeyholdError.badRequest("headers may not set \(name): the proxy sets it")
            }
            headers.append((name, value))
        }
        if case .query(let name) = lease.injection,
            (target.query ?? "").split(separator: "&").contains(where: { item in
                let raw = String(item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
                return (raw.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? raw) == name
            })
        {
            throw KeyholdError.badRequest("the url may not carry the query parameter \(name): the proxy sets it")
        }
        let counters = authorized.caveats.compactMap { verified -> (key: Data, limit: Int)? in
            if case .uses(let limit) = verified.caveat { return (verified.counterKey, limit) }
            return nil
        }
        let use = CapabilityLease.Use(
            principalKind: caller.principal.kind, principalID: caller.principal.id, method: request.method,
            scheme: target.scheme, host: target.host, port: target.port,
            path: target.decodedPath, at: .now)
        let caveats = authorized.caveats
        var details: [String: JSONValue] = [
            "vault_id": .string(lease.vaultID.wire), "path": .string(lease.path), "method": .string(request.method),
            "destination": .string("\(target.scheme)://\(target.host):\(target.port)"), "url_path": .string(target.path),
            "caveats": .array(caveats.map { .string($0.caveat.text) }),
        ]
        let audit = self.audit
        let useDetails = details
        let secrets = self.secrets
        let injection = lease.injection
        let spent: (lease: CapabilityLease, opened: String)
        do {
            spent = try await store.spendCapabilityLease(
                id: lease.id, counters: counters, now: use.at,
                refusing: caller.principal.refusedSecretTypes.union(authorized.creator.refusedSecretTypes),
                check: { stored in
                    // The row as locked: the same decision on what the transaction will count.
                    guard stored.orgID == lease.orgID, let reason = stored.refusal(of: use, caveats: caveats) else { return }
                    throw KeyholdError.forbidden("The lease does not allow this request: \(reason)")
                },
                open: { stored, version, kek in
                    guard version.info.cmekFingerprint == nil else { throw CapabilityLease.customerManaged }
                    let value = try await secrets.reveal(version, orgID: stored.orgID, vaultID: stored.vaultID, kek: kek).value
                    // A header cannot carry a control character: refused before the use is spent.
                    guard injection.isQuery || LeaseRules.isHeaderSafe(value) else {
                        throw KeyholdError(
                            .conflict, "The secret's value contains a control character and cannot be sent in a header")
                    }
                    return value
                },
                audit: { stored, version in
                    var details = useDetails
                    details["version"] = .number(Double(version.version))
                    details["uses"] = .number(Double(stored.uses))
                    return audit.record(caller, "lease.use", "lease", stored.id.wire, details)
                })
        } catch let error as KeyholdError where error.code != .unavailable && error.code != .internalError {
            details["outcome"] = "denied"
            details["reason"] = .string(error.detail)
            try await audit.append(audit.record(caller, "lease.use", "lease", lease.id.wire, details))
            throw error
        }
        let value = spent.opened
        var url = "\(target.scheme)://\(target.host):\(target.port)\(target.path)"
        var query = target.query
        var redactions = LeaseRedaction.forms(of: value)
        switch lease.injection {
        case .header(let name, let template):
            headers.append((name, template.replacingOccurrences(of: LeaseInjection.placeholder, with: value)))
        case .basic(let username):
            let credential = Data("\(username):\(value)".utf8).base64EncodedString()
            headers.append(("Authorization", "Basic " + credential))
            redactions.append(Array(credential.utf8))
        case .query(let name):
            let encoded = LeaseRedaction.percentEncoded(value)
            query = (query.map { $0 + "&" } ?? "") + "\(name)=\(encoded)"
        }
        if let query { url += "?" + query }
        return Prepared(
            lease: spent.lease, url: url, method: request.method, headers: headers, body: request.body,
            redactions: LeaseRedaction.ordered(redactions))
    }

    /// Records how the upstream answered (or why it could not be reached): the use's second event.
    public func recordResult(
        _ prepared: Prepared, status: Int?, bytesSent: Int, bytesReceived: Int, redacted: Int, error: String?,
        by caller: Caller
    ) async throws {
        var details: [String: JSONValue] = [
            "vault_id": .string(prepared.lease.vaultID.wire), "bytes_sent": .number(Double(bytesSent)),
            "bytes_received": .number(Double(bytesReceived)), "redactions": .number(Double(redacted)),
        ]
        if let status { details["upstream_status"] = .number(Double(status)) }
        if let error {
            details["outcome"] = "failed"
            details["error"] = .string(error)
        }
        try await audit.append(audit.record(caller, "lease.result", "lease", prepared.lease.id.wire, details))
    }
}

extension LeaseInjection {
    var isQuery: Bool { if case .query = self { true } else { false } }
}

/// The forms a secret's value can take in what an upstream sends back, all of which the proxy removes.
public enum LeaseRedaction {
    public static let marker = Array("[REDACTED]".utf8)

    /// The value as is, base64 (padded and not), base64url, hex (both cases), percent-encoded (both cases of hex,
    /// and with `+` for spaces) and JSON-escaped. Values shorter than 4 bytes still count: a short secret is redacted
    /// wherever it appears.
    public static func forms(of value: String) -> [[UInt8]] {
        let bytes = Data(value.utf8)
        guard !bytes.isEmpty else { return [] }
        let base64 = bytes.base64EncodedString()
        let unpadded = base64.trimmingCharacters(in: CharacterSet(charactersIn: "="))
        let url = bytes.base64URLEncodedString()
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let percent = percentEncoded(value)
        var forms = [value, base64, unpadded, url, hex, hex.uppercased(), percent, percent.lowercased(),
                     percent.replacingOccurrences(of: "%20", with: "+")]
        // Inside a JSON string, as encoders write it: with `/` escaped or not.
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        if let json = try? encoder.encode(value), let text = String(data: json, encoding: .utf8) {
            let inner = String(text.dropFirst().dropLast())
            forms += [inner, inner.replacingOccurrences(of: "/", with: "\\/")]
        }
        return forms.map { Array($0.utf8) }
    }

    /// Longest first and without repeats, so that a longer form is removed whole before a shorter one inside it.
    static func ordered(_ forms: [[UInt8]]) -> [[UInt8]] {
        var seen = Set<[UInt8]>()
        return forms.filter { !$0.isEmpty && seen.insert($0).inserted }.sorted { $0.count > $1.count }
    }

    /// Everything but unreserved characters percent-encoded (upper-case hex).
    public static func percentEncoded(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}

/// Removes every occurrence of a set of byte patterns from a stream, chunk by chunk: it holds back the last
/// `longest - 1` bytes of each chunk, so that a pattern split across chunks is still found whole.
public struct StreamRedactor: Sendable {
    let patterns: [[UInt8]]
    let longest: Int
    var pending: [UInt8] = []
    /// How many occurrences were replaced so far.
    public private(set) var count = 0

    public init(patterns: [[UInt8]]) {
        self.patterns = patterns.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
        longest = self.patterns.first?.count ?? 0
    }

    /// The redacted bytes that can be released after `chunk`.
    public mutating func feed(_ chunk: some Collection<UInt8>) -> [UInt8] {
        pending.append(contentsOf: chunk)
        return drain(final: false)
    }

    /// The rest, at the end of the stream.
    public mutating func finish() -> [UInt8] { drain(final: true) }

    private mutating func drain(final: Bool) -> [UInt8] {
        guard longest > 0 else {
            defer { pending.removeAll() }
            return pending
        }
        var output: [UInt8] = []
        output.reserveCapacity(pending.count)
        // A position is decided once every pattern could fit after it (or at the end of the stream).
        let decidable = final ? pending.count : pending.count - (longest - 1)
        var index = 0
        scanning: while index < decidable {
            for pattern in patterns where pending[index] == pattern[0] && index + pattern.count <= pending.count {
                if pending[index..<(index + pattern.count)].elementsEqual(pattern) {
                    output.append(contentsOf: LeaseRedaction.marker)
                    count += 1
                    index += pattern.count
                    continue scanning
                }
            }
            output.append(pending[index])
            index += 1
        }
        pending.removeFirst(min(index, pending.count))
        return output
    }
}

import Foundation

/// Sharing one secret with someone outside its vault: by link, with a user or an agent, with an email address
/// that will sign up, or (for an agent) with the person who registered it.
public struct ShareService: Sendable {
    let shares: any ShareStore
    let identities: any IdentityStore
    let agents: any AgentStore
    let secrets: SecretService
    let passwords: PasswordHasher
    let audit: AuditLog
    /// Passphrase guesses are throttled per share like password guesses per account.
    let throttle: LoginThrottle

    public static let notFound = KeyholdError.notFound("Share not found")
    public static let maxLifetime: Int64 = 365 * 24 * 3600

    public init(
        shares: any ShareStore, identities: any IdentityStore, agents: any AgentStore, secrets: SecretService,
        passwords: PasswordHasher, audit: AuditLog, throttle: LoginThrottle
    ) {
        self.throttle = throttle
        self.shares = shares
        self.identities = identities
        self.agents = agents
        self.secrets = secrets
        self.passwords = passwords
        self.audit = audit
    }

    public struct Request: Sendable {
        public var recipientType: String
        public var recipientID: String?
        public var email: String?
        public var expiresAt: Timestamp?
        public var maxAccessCount: Int?
        public var passphrase: String?
        public var ipAllowlist: [String]?

        public init(
            recipientType: String, recipientID: String?, email: String?, expiresAt: Timestamp?, maxAccessCount: Int?,
            passphrase: String?, ipAllowlist: [String]?
        ) {
            self.recipientType = recipientType
            self.recipientID = recipientID
            self.email = email
            self.expiresAt = expiresAt
            self.maxAccessCount = maxAccessCount
            self.passphrase = passphrase
            self.ipAllowlist = ipAllowlist
        }
    }

    /// Needs read permission on the secret; a secret the caller cannot see at all is a 404.
    public func create(secretID: UUID, request: Request, by caller: Caller) async throws -> Share {
        let principal = caller.principal
        guard let location = try await shares.secretLocation(id: secretID), location.orgID == principal.orgID else {
            throw KeyholdError.notFound("Secret not found")
        }
        let vault: Vault
        do {
            vault = try await secrets.authorize(
                caller, vaultID: location.vaultID, path: try SecretPath(validating: location.path), permission: .read)
        } catch let error as KeyholdError where error.code == .notFound {
            throw KeyholdError.notFound("Secret not found")
        }
        guard let type = ShareRecipientType(rawValue: request.recipientType) else {
            throw KeyholdError.badRequest(
                "recipient_type must be one of " + ShareRecipientType.allCases.map(\.rawValue).joined(separator: ", "))
        }
        var recipientID: UUID?
        var recipientEmail: String?
        switch type {
        case .anyoneWithLink:
            break
        case .user, .agent:
            guard let text = request.recipientID, let id = UUID(uuidString: text) else {
                throw KeyholdError.badRequest("recipient_id (a UUID) is required for \(type.rawValue) shares")
            }
            let exists =
                type == .user ? try await identities.user(id: id) != nil : try await agents.agent(id: id) != nil
            guard exists else { throw KeyholdError.badRequest("recipient_id names no \(type.rawValue)") }
            recipientID = id
        case .externalEmail:
            guard principal.kind == .user else { throw KeyholdError.forbidden("Agents cannot share with email addresses") }
            guard let email = request.email else { throw KeyholdError.badRequest("email is required for external_email shares") }
            recipientEmail = try AccountService.normalizedEmail(email)
        case .creator:
            guard principal.kind == .agent, let agent = try await agents.agent(id: principal.id) else {
                throw KeyholdError.badRequest("creator shares are for agents: they go to the person who registered the agent")
            }
            recipientID = agent.createdBy
        }
        guard let expiresAt = request.expiresAt else { throw KeyholdError.badRequest("expires_at is required") }
        let now = Timestamp.now
        guard now < expiresAt, expiresAt <= now.adding(seconds: Self.maxLifetime) else {
            throw KeyholdError.badRequest("expires_at must be in the future and within a year")
        }
        if let max = request.maxAccessCount, !(1...1_000_000).contains(max) {
            throw KeyholdError.badRequest("max_access_count must be between 1 and 1000000")
        }
        var passphraseHash: String?
        if let passphrase = request.passphrase {
            guard (1...1024).contains(passphrase.count) else {
                throw KeyholdError.badRequest("passphrase must be 1 to 1024 characters")
            }
            passphraseHash = try await passwords.hash(passphrase)
        }
        let allowlist = try (request.ipAllowlist ?? []).map {
            guard let cidr = CIDR($0) else { throw KeyholdError.badRequest("ip_allowlist holds an invalid CIDR") }
            return cidr
        }
        guard allowlist.count <= 256 else { throw KeyholdError.badRequest("ip_allowlist holds more than 256 entries") }
        let share = Share(
            id: UUID(), orgID: vault.orgID, secretID: location.secretID, vaultID: vault.id, path: location.path,
            createdByType: principal.kind, createdBy: principal.id, recipientType: type, recipientID: recipientID,
            recipientEmail: recipientEmail, expiresAt: expiresAt, maxAccessCount: request.maxAccessCount,
            accessCount: 0, passphraseHash: passphraseHash, ipAllowlist: allowlist,
            status: type == .anyoneWithLink ? .accepted : .pending, revoked: false, createdAt: now)
        try await shares.createShare(
            share,
            audit: audit.record(
                caller, "share.create", "share", share.id.wire,
                ["secret_id": .string(location.secretID.wire), "path": .string(location.path),
                 "recipient_type": .string(type.rawValue)]))
        return share
    }

    /// Reads the shared secret. Link shares need no caller; targeted ones need their recipient, who must have
    /// accepted. A wrong passphrase or address is audited and refused without counting an access.
    public func access(_ id: UUID, passphrase: String?, caller: Principal?, ip: IPAddress?) async throws
        -> (Share, SecretService.Revealed)
    {
        guard let share = try await shares.share(id: id), !share.revoked else { throw Self.notFound }
        func refuse(_ reason: String, _ error: KeyholdError) async throws -> Never {
            try await audit.append(
                audit.record(
                    org: share.orgID, actor: caller, ip: ip, "share.access", "share", share.id.wire,
                    ["outcome": "denied", "reason": .string(reason)]))
            throw error
        }
        if share.isTargeted {
            guard let caller else { try await refuse("no_credentials", .unauthenticated) }
            guard try await isRecipient(share, caller) else { try await refuse("not_recipient", Self.notFound) }
        }
        if !share.ipAllowlist.isEmpty {
            guard let ip, share.ipAllowlist.contains(where: { $0.contains(ip) }) else {
                try await refuse("ip_not_allowed", .forbidden("This share cannot be opened from your address"))
            }
        }
        if let reason = share.goneReason(at: .now) { try await refuse("gone", .gone(reason)) }
        if share.isTargeted, share.status != .accepted {
            try await refuse("not_accepted", .forbidden("Accept the share before opening it"))
        }
        if let hash = share.passphraseHash {
            let account = "share:" + share.id.wire
            try throttle.attempt(account: account, address: ip?.description)
            guard let passphrase, try await passwords.verify(passphrase, hash: hash) else {
                try await refuse("wrong_passphrase", .forbidden("A correct passphrase is required to open this share"))
            }
            throttle.succeeded(account: account, address: ip?.description)
        }
        let (counted, sealed) = try await shares.accessShare(
            id: share.id, now: .now,
            audit: audit.record(
                org: share.orgID, actor: caller, ip: ip, "share.access", "share", share.id.wire,
                ["secret_id": .string(share.secretID.wire), "path": .string(share.path)]))
        return (counted, try await secrets.reveal(sealed, orgID: share.orgID, vaultID: share.vaultID))
    }

    public func revoke(_ id: UUID, by caller: Caller) async throws {
        let principal = caller.principal
        guard try await shares.revokeShare(
            id: id, creatorType: principal.kind, creatorID: principal.id,
            audit: audit.record(caller, "share.revoke", "share", id.wire))
        else { throw Self.notFound }
    }

    public func outbound(for caller: Principal) async throws -> [Share] {
        try await shares.outboundShares(creatorType: caller.kind, creatorID: caller.id).filter { !$0.revoked }
    }

    public func inbound(for caller: Principal) async throws -> [Share] {
        let email = caller.kind == .user ? try await identities.user(id: caller.id)?.email : nil
        var found: [Share] = []
        for share in try await shares.inboundShares(recipientID: caller.id, email: email) where !share.revoked {
            if try await isRecipient(share, caller) { found.append(share) }
        }
        return found
    }

    public func answer(_ id: UUID, accept: Bool, by caller: Caller) async throws {
        guard let share = try await shares.share(id: id), !share.revoked, share.isTargeted,
            try await isRecipient(share, caller.principal)
        else { throw Self.notFound }
        guard share.status == .pending else {
            throw KeyholdError(.conflict, "The share was already \(share.status.rawValue)")
        }
        let record = audit.record(
            org: share.orgID, actor: caller.principal, ip: caller.context.clientIP,
            accept ? "share.accept" : "share.decline", "share", share.id.wire)
        guard try await shares.answerShare(id: id, status: accept ? .accepted : .declined, audit: record) else {
            throw KeyholdError(.conflict, "The share was already answered")
        }
    }

    private func isRecipient(_ share: Share, _ principal: Principal) async throws -> Bool {
        switch share.recipientType {
        case .anyoneWithLink: return true
        case .user, .creator: return principal.kind == .user && principal.id == share.recipientID
        case .agent: return principal.kind == .agent && principal.id == share.recipientID
        case .externalEmail:
            guard principal.kind == .user, let email = share.recipientEmail else { return false }
            return try await identities.user(id: principal.id)?.email == email
        }
    }
}

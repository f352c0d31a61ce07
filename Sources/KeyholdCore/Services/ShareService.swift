import Foundation

/// Sharing one secret with someone outside its vault: by link, with a user or an agent, with an email address
/// (claimed with a one-time token the sharer hands over), or (for an agent) with the person who registered it.
///
/// A share lends its creator's read access and never outlives it: it opens only while its creator could still read
/// the secret (an active agent, a member of the org, a policy or ownership that grants read). It pins the version
/// it was made for unless the creator asked for the latest. Deleting the secret revokes its shares; org owners and
/// admins may list and revoke every share of the org.
public struct ShareService: Sendable {
    let shares: any ShareStore
    let identities: any IdentityStore
    let agents: any AgentStore
    let secrets: SecretService
    let passwords: PasswordHasher
    let credentials: CredentialHasher
    let audit: AuditLog
    let failures: FailedAuthentications
    /// Passphrase guesses are throttled per share like password guesses per account.
    let throttle: LoginThrottle

    public static let notFound = KeyholdError.notFound("Share not found")
    public static let maxLifetime: Int64 = 365 * 24 * 3600

    public init(
        shares: any ShareStore, identities: any IdentityStore, agents: any AgentStore, secrets: SecretService,
        passwords: PasswordHasher, credentials: CredentialHasher, audit: AuditLog, failures: FailedAuthentications,
        throttle: LoginThrottle
    ) {
        self.failures = failures
        self.credentials = credentials
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
        public var version: VersionChoice?

        /// Which version a share serves: one version (the default: the latest when the share is made), or
        /// whatever version is the latest at each access.
        public enum VersionChoice: Sendable, Equatable {
            case pinned(Int)
            case latest
        }

        public init(
            recipientType: String, recipientID: String?, email: String?, expiresAt: Timestamp?, maxAccessCount: Int?,
            passphrase: String?, ipAllowlist: [String]?, version: VersionChoice? = nil
        ) {
            self.version = version
            self.recipientType = recipientType
            self.recipientID = recipientID
            self.email = email
            self.expiresAt = expiresAt
            self.maxAccessCount = maxAccessCount
            self.passphrase = passphrase
            self.ipAllowlist = ipAllowlist
        }
    }

    /// Needs read permission on the secret; a secret the caller cannot see at all is a 404. For `external_email`
    /// shares it also returns the claim token, shown only here.
    public func create(secretID: UUID, request: Request, by caller: Caller) async throws -> (Share, claimToken: String?) {
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
        var claimToken: String?
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
            claimToken = CredentialKind.shareClaim.generate()
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
        var version: Int?
        switch request.version ?? .pinned(location.currentVersion) {
        case .latest: version = nil
        case .pinned(let number):
            guard (1...location.currentVersion).contains(number) else {
                throw KeyholdError.badRequest("version must be an existing version of the secret, or \"latest\"")
            }
            version = number
        }
        let share = Share(
            id: UUID(), orgID: vault.orgID, secretID: location.secretID, vaultID: vault.id, path: location.path,
            createdByType: principal.kind, createdBy: principal.id, recipientType: type, recipientID: recipientID,
            recipientEmail: recipientEmail, expiresAt: expiresAt, maxAccessCount: request.maxAccessCount,
            accessCount: 0, passphraseHash: passphraseHash, ipAllowlist: allowlist,
            status: type == .anyoneWithLink ? .accepted : .pending, revoked: false, createdAt: now, version: version,
            claimDigest: claimToken.map(credentials.digest), reference: UUID())
        try await shares.createShare(
            share,
            audit: audit.record(
                caller, "share.create", "share", share.reference.wire,
                ["secret_id": .string(location.secretID.wire), "path": .string(location.path),
                 "recipient_type": .string(type.rawValue), "version": version.map { .number(Double($0)) } ?? "latest"]))
        return (share, claimToken)
    }

    /// Reads the shared secret. Link shares need no caller; targeted ones need their recipient, who must have
    /// accepted. A refusal (a wrong passphrase or address, an exhausted share, a creator who lost access) counts no
    /// access: a caller's is audited at once, an anonymous one counted and written per interval.
    public func access(_ id: UUID, passphrase: String?, caller: Principal?, ip: IPAddress?) async throws
        -> (Share, SecretService.Revealed)
    {
        guard let share = try await shares.share(id: id), !share.revoked else { throw Self.notFound }
        func refuse(_ reason: String, _ error: KeyholdError) async throws -> Never {
            if let caller {
                try await audit.append(
                    audit.record(
                        org: share.orgID, actor: caller, ip: ip, "share.access", "share", share.reference.wire,
                        ["outcome": "denied", "reason": .string(reason)]))
            } else {
                // Anyone with the link can repeat this at will: counted, not written one by one.
                failures.record(
                    org: share.orgID, action: "share.access", method: "link", resourceType: "share",
                    resourceID: share.reference.wire, reason: reason, ip: ip)
            }
            throw error
        }
        if share.isTargeted {
            guard let caller else { try await refuse("no_credentials", .unauthenticated) }
            guard try await isRecipient(share, caller) else { try await refuse("not_recipient", Self.notFound) }
        }
        if let caller, !withinScopes(caller, share) {
            try await refuse("outside_scopes", .forbidden("The shared path is outside this credential's scopes"))
        }
        guard let creator = try await creatorMayRead(share, ip: ip) else {
            try await refuse("creator_lost_access", Self.notFound)
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
        // Neither the recipient nor the creator whose access the share lends may read a type refused to them.
        let refusing = creator.refusedSecretTypes.union(caller?.refusedSecretTypes ?? [])
        let counted: Share, sealed: SealedSecretVersion
        do {
            (counted, sealed) = try await shares.accessShare(
                id: share.id, now: .now,
                audit: audit.record(
                    org: share.orgID, actor: caller, ip: ip, "share.access", "share", share.reference.wire,
                    ["secret_id": .string(share.secretID.wire), "path": .string(share.path)]),
                refusing: refusing)
        } catch let error as KeyholdError where error.type == KeyholdError.typeRefused.type {
            try await refuse("intents_api_enabled", error)
        }
        return (counted, try await secrets.reveal(sealed, orgID: share.orgID, vaultID: share.vaultID))
    }

    /// Its creator, or an owner or admin of its org (with an unscoped credential), may revoke a share, named by its
    /// id or its reference.
    public func revoke(_ id: UUID, by caller: Caller) async throws {
        let principal = caller.principal
        var found = try await shares.share(id: id)
        if found == nil { found = try await shares.share(reference: id) }
        guard let share = found, share.orgID == principal.orgID, !share.revoked else { throw Self.notFound }
        let isCreator = share.createdByType == principal.kind && share.createdBy == principal.id
        guard isCreator && withinScopes(principal, share) || principal.isOrgAdmin && !principal.isScoped else {
            try await audit.append(
                audit.record(
                    caller, "share.revoke", "share", share.reference.wire,
                    ["outcome": "denied", "reason": "only the share's creator or an org owner or admin may revoke it"]))
            throw Self.notFound
        }
        guard try await shares.revokeShare(
            id: share.id,
            audit: audit.record(caller, "share.revoke", "share", share.reference.wire, ["by_creator": .bool(isCreator)]))
        else { throw Self.notFound }
    }

    /// The caller's live shares (for a credential with scopes, those of paths they match).
    public func outbound(for caller: Principal) async throws -> [Share] {
        try await shares.outboundShares(creatorType: caller.kind, creatorID: caller.id).filter {
            !$0.revoked && withinScopes(caller, $0)
        }
    }

    /// Every live share of the org, whoever made it: for owners and admins.
    public func orgShares(for caller: Caller) async throws -> [Share] {
        let principal = caller.principal
        guard principal.isOrgAdmin, !principal.isScoped else {
            try await audit.append(
                audit.record(
                    caller, "share.list_org", "org", principal.orgID.wire,
                    ["outcome": "denied", "reason": "only org owners and admins list every share"]))
            throw KeyholdError.forbidden("Only org owners and admins list every share of the org")
        }
        let list = try await shares.orgShares(orgID: principal.orgID).filter { !$0.revoked }
        try await audit.append(
            audit.record(caller, "share.list_org", "org", principal.orgID.wire, ["count": .number(Double(list.count))]))
        return list
    }

    public func inbound(for caller: Principal) async throws -> [Share] {
        let email = caller.kind == .user ? try await identities.user(id: caller.id)?.email : nil
        var found: [Share] = []
        for share in try await shares.inboundShares(recipientID: caller.id, email: email) where !share.revoked {
            if try await isRecipient(share, caller) { found.append(share) }
        }
        return found
    }

    /// The recipient accepts or declines. An `external_email` share needs its claim token as well (whoever signs
    /// up with an address first proves nothing), and answering it binds it to the user who presented the token.
    public func answer(_ id: UUID, accept: Bool, claimToken: String?, by caller: Caller) async throws {
        let action = accept ? "share.accept" : "share.decline"
        guard let share = try await shares.share(id: id), !share.revoked, share.isTargeted,
            try await isRecipient(share, caller.principal)
        else { throw Self.notFound }
        func refuse(_ reason: String, _ error: KeyholdError) async throws -> Never {
            try await audit.append(
                audit.record(
                    org: share.orgID, actor: caller.principal, ip: caller.context.clientIP, action, "share",
                    share.reference.wire, ["outcome": "denied", "reason": .string(reason)]))
            throw error
        }
        guard share.status == .pending else {
            throw KeyholdError(.conflict, "The share was already \(share.status.rawValue)")
        }
        if !withinScopes(caller.principal, share) {
            try await refuse("outside_scopes", .forbidden("The shared path is outside this credential's scopes"))
        }
        var claimant: UUID?
        if share.recipientType == .externalEmail {
            guard let claimToken, CredentialKind.shareClaim.matchesShape(claimToken), let digest = share.claimDigest,
                credentials.matches(claimToken, digest: digest)
            else {
                try await refuse(
                    "claim_token", .forbidden("This share is claimed with the claim_token its creator handed over"))
            }
            claimant = caller.principal.id
        }
        let record = audit.record(
            org: share.orgID, actor: caller.principal, ip: caller.context.clientIP, action, "share", share.reference.wire)
        guard try await shares.answerShare(
            id: id, status: accept ? .accepted : .declined, recipientID: claimant, audit: record)
        else {
            throw KeyholdError(.conflict, "The share was already answered")
        }
    }

    /// A caller with scopes reaches only shared paths its scopes match.
    private func withinScopes(_ principal: Principal, _ share: Share) -> Bool {
        guard let path = try? SecretPath(validating: share.path) else { return false }
        return secrets.authorizer.withinScopes(principal, path: path)
    }

    /// The share's creator, if they could read the shared secret now, with their current role, binding, scopes and
    /// policies (an agent must be active; a user must still be a member of the org); nil otherwise.
    private func creatorMayRead(_ share: Share, ip: IPAddress?) async throws -> Principal? {
        guard let creator = try await AuthService.current(
            share.createdByType, share.createdBy, orgID: share.orgID, identities: identities, agents: agents),
            let path = try? SecretPath(validating: share.path) else { return nil }
        let mayRead = try await secrets.mayRead(
            Caller(creator, context: AccessContext(clientIP: ip)), vaultID: share.vaultID, path: path)
        return mayRead ? creator : nil
    }

    private func isRecipient(_ share: Share, _ principal: Principal) async throws -> Bool {
        switch share.recipientType {
        case .anyoneWithLink: return true
        case .user, .creator: return principal.kind == .user && principal.id == share.recipientID
        case .agent: return principal.kind == .agent && principal.id == share.recipientID
        case .externalEmail:
            guard principal.kind == .user else { return false }
            // Once claimed, the share belongs to the user who claimed it; before, to whoever has the address (who
            // still needs the claim token to accept it).
            if let claimant = share.recipientID { return principal.id == claimant }
            guard let email = share.recipientEmail else { return false }
            return try await identities.user(id: principal.id)?.email == email
        }
    }
}

import Crypto
import Foundation

/// TOTP MFA for human password logins (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step): enrolment, the login challenge
/// and its verification, and disabling. Agents, `1ck_` keys and refresh tokens are not asked for a second factor.
///
/// The TOTP secret is stored sealed (AES-256-GCM, bound to the user) under a server key that the keystore seals
/// (`totp-secret-key`, like the other server keys, so an HSM keystore protects it and a master-key rotation
/// re-seals it). Recovery codes are stored only as keyed digests. A challenge (`mfa_token`) is an opaque sealed
/// value, not a JWT: no bearer check accepts it, it expires after 5 minutes and opens one session. Wrong codes are
/// throttled per user like passwords (the per-account delay; not the per-address cap, as only someone who passed the
/// password step, or holds the session, gets this far); every step is audited (never a code or a secret).
public struct MFAService: Sendable {
    let store: any MFAStore
    let identities: any IdentityStore
    let hasher: CredentialHasher
    let audit: AuditLog
    let throttle: LoginThrottle
    let failures: FailedAuthentications
    let secretKey: SymmetricKey
    let challengeKey: SymmetricKey
    let issuer: String

    public static let challengeLifetime: Int64 = 300
    static let challengePrefix = "mfa_"

    public init(
        store: any MFAStore, identities: any IdentityStore, hasher: CredentialHasher, audit: AuditLog,
        throttle: LoginThrottle, failures: FailedAuthentications, secretKey: SymmetricKey, issuer: String = "Keyhold"
    ) {
        self.store = store
        self.identities = identities
        self.hasher = hasher
        self.audit = audit
        self.throttle = throttle
        self.failures = failures
        self.secretKey = secretKey
        self.challengeKey = hasher.derivedKey(for: "mfa challenge")
        self.issuer = issuer
    }

    /// The key that seals TOTP secrets, from storage (sealed by the keystore), created on first start.
    public static func loadSecretKey(system: any SystemStore, keystore: any Keystore) async throws -> SymmetricKey {
        try await keystore.serverKey("totp-secret-key", in: system)
    }

    // MARK: status and enrolment

    public func isEnabled(userID: UUID) async throws -> Bool {
        try await store.mfaEnrollment(userID: userID)?.isEnabled ?? false
    }

    public func status(_ caller: Caller) async throws -> Bool {
        try caller.principal.requireHuman()
        return try await isEnabled(userID: caller.principal.id)
    }

    /// Starts (or restarts) an enrolment: a new secret, not asked for until a code confirms it. 409 when MFA is on.
    public func setup(_ caller: Caller) async throws -> (secret: String, uri: String) {
        let principal = caller.principal
        try await audit.recordingDenial(caller, "mfa.setup", "user", principal.id.wire) { try principal.requireManager() }
        let user = try await self.user(principal)
        let secret = TOTP.generateSecret()
        let enrollment = MFAEnrollment(
            userID: user.id, orgID: user.orgID, sealedSecret: try seal(secret, userID: user.id), enabledAt: nil,
            lastStep: nil, recoveryDigests: [], createdAt: .now)
        guard try await store.beginMFAEnrollment(enrollment, audit: audit.record(caller, "mfa.setup", "user", user.id.wire))
        else { throw KeyholdError(.conflict, "MFA is already enabled; disable it first to enrol a new authenticator") }
        return (Base32.encode(secret), TOTP.provisioningURI(secret: secret, account: user.email, issuer: issuer))
    }

    /// Confirms a pending enrolment with a code of its secret: MFA is on from then, and the recovery codes are
    /// returned, once.
    public func verifySetup(_ caller: Caller, code: String, now: Timestamp = .now) async throws -> [String] {
        let principal = caller.principal
        try await audit.recordingDenial(caller, "mfa.enable", "user", principal.id.wire) { try principal.requireManager() }
        guard let enrollment = try await store.mfaEnrollment(userID: principal.id), !enrollment.isEnabled else {
            throw KeyholdError.badRequest("No MFA setup is pending; start one with POST /v1/auth/mfa/setup")
        }
        let account = Self.throttleAccount(principal.id)
        try throttle.attempt(account: account, address: nil)
        let secret = try open(enrollment.sealedSecret, userID: principal.id)
        let codes = (0..<RecoveryCode.count).map { _ in RecoveryCode.generate() }
        guard let step = TOTP.matchingStep(secret: secret, code: code, at: now),
            try await store.enableMFA(
                userID: principal.id, sealedSecret: enrollment.sealedSecret, step: step,
                recoveryDigests: codes.map { recoveryDigest(RecoveryCode.normalized($0)!) }, at: now,
                audit: audit.record(caller, "mfa.enable", "user", principal.id.wire))
        else {
            try await audit.append(
                audit.record(caller, "mfa.enable", "user", principal.id.wire, ["outcome": "denied", "reason": "invalid_code"]))
            throw KeyholdError.badRequest("Invalid MFA code")
        }
        throttle.succeeded(account: account, address: nil)
        return codes
    }

    /// Turns MFA off; needs a current TOTP code or an unspent recovery code (a password alone is not enough).
    public func disable(_ caller: Caller, code: String?, now: Timestamp = .now) async throws {
        let principal = caller.principal
        try await audit.recordingDenial(caller, "mfa.disable", "user", principal.id.wire) { try principal.requireManager() }
        guard let code, !code.isEmpty else {
            throw KeyholdError.badRequest("code is required: a current TOTP code or a recovery code")
        }
        guard let enrollment = try await store.mfaEnrollment(userID: principal.id), enrollment.isEnabled else {
            throw KeyholdError.badRequest("MFA is not enabled")
        }
        let account = Self.throttleAccount(principal.id)
        try throttle.attempt(account: account, address: nil)
        guard let proof = try self.proof(code, for: enrollment, now: now),
            try await store.disableMFA(
                userID: principal.id, proof: proof, sealedSecret: enrollment.sealedSecret,
                audit: audit.record(caller, "mfa.disable", "user", principal.id.wire, ["factor": .string(proof.factor)]))
        else {
            try await audit.append(
                audit.record(caller, "mfa.disable", "user", principal.id.wire, ["outcome": "denied", "reason": "invalid_code"]))
            throw KeyholdError.badRequest("Invalid MFA code")
        }
        throttle.succeeded(account: account, address: nil)
    }

    /// A current TOTP code of the caller's enabled enrolment, accepted once (its step is recorded, so it cannot be
    /// replayed), for `X-Auth-Confirm`; false for anything else. Throttled like a login's code.
    public func confirm(_ caller: Caller, code: String, now: Timestamp = .now) async throws -> Bool {
        let principal = caller.principal
        let account = Self.throttleAccount(principal.id)
        try throttle.attempt(account: account, address: nil)
        guard let enrollment = try await store.mfaEnrollment(userID: principal.id), enrollment.isEnabled,
            let proof = try self.proof(code, for: enrollment, now: now), case .totp = proof,
            try await store.acceptMFA(
                userID: principal.id, proof: proof, sealedSecret: enrollment.sealedSecret, spendingToken: nil,
                audit: audit.record(caller, "mfa.confirm", "user", principal.id.wire, ["factor": "totp"])) != nil
        else { return false }
        throttle.succeeded(account: account, address: nil)
        return true
    }

    // MARK: login

    /// After a correct password: nil when the user has no MFA; otherwise a challenge token for
    /// `POST /v1/auth/mfa/verify` (the password's success is audited as a challenge, not as a login).
    public func challenge(for user: User, ip: IPAddress?, now: Timestamp = .now) async throws -> String? {
        guard try await isEnabled(userID: user.id) else { return nil }
        let principal = Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role)
        try await audit.append(
            audit.record(org: user.orgID, actor: principal, ip: ip, "auth.mfa_challenge", "user", user.id.wire, ["method": "password"]))
        let payload = try JSONEncoder().encode(
            Challenge(u: user.id.wire, e: now.adding(seconds: Self.challengeLifetime).milliseconds, j: UUID().wire))
        let sealed = try AES.GCM.seal(payload, using: challengeKey, authenticating: Data(Self.challengeLabel.utf8))
        return Self.challengePrefix + sealed.combined!.base64URLEncodedString()
    }

    /// A challenge token and a code (TOTP or recovery) to the user, who then gets a session. A bad or expired
    /// token and a wrong, replayed or spent code all answer 401.
    public func verify(challenge token: String, code: String, ip: IPAddress?, now: Timestamp = .now) async throws
        -> (User, factor: String)
    {
        guard let challenge = openChallenge(token, now: now), let userID = UUID(fast: challenge.u) else {
            failures.record(method: "mfa_token", resourceType: "user", ip: ip)
            throw KeyholdError(.unauthorized, "Invalid or expired mfa_token")
        }
        let account = Self.throttleAccount(userID)
        try throttle.attempt(account: account, address: nil)
        guard let user = try await identities.user(id: userID),
            let enrollment = try await store.mfaEnrollment(userID: userID), enrollment.isEnabled
        else {
            failures.record(method: "mfa_token", resourceType: "user", ip: ip)
            throw KeyholdError(.unauthorized, "Invalid or expired mfa_token")
        }
        let principal = Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role)
        let proof = try self.proof(code, for: enrollment, now: now)
        var details: [String: JSONValue] = ["method": "mfa"]
        if let proof { details["factor"] = .string(proof.factor) }
        guard let proof,
            try await store.acceptMFA(
                userID: user.id, proof: proof, sealedSecret: enrollment.sealedSecret,
                spendingToken: ("mfa:" + challenge.j, Timestamp(milliseconds: challenge.e)),
                audit: audit.record(org: user.orgID, actor: principal, ip: ip, "auth.mfa_verify", "user", user.id.wire, details)) != nil
        else {
            try await audit.append(
                audit.record(
                    org: user.orgID, actor: nil, ip: ip, "auth.failure", "user", user.id.wire,
                    ["method": "mfa", "outcome": "denied", "reason": "invalid_code"]))
            throw KeyholdError(.unauthorized, "Invalid MFA code")
        }
        throttle.succeeded(account: account, address: nil)
        return (user, proof.factor)
    }

    // MARK: pieces

    struct Challenge: Codable {
        /// The user, the expiry (milliseconds) and the challenge's own id.
        let u: String
        let e: Int64
        let j: String
    }

    static let challengeLabel = "keyhold.mfa-challenge.v1"

    func openChallenge(_ token: String, now: Timestamp) -> Challenge? {
        guard token.hasPrefix(Self.challengePrefix), token.utf8.count <= 512,
            let data = Data(base64URL: String(token.dropFirst(Self.challengePrefix.count))),
            let box = try? AES.GCM.SealedBox(combined: data),
            let payload = try? AES.GCM.open(box, using: challengeKey, authenticating: Data(Self.challengeLabel.utf8)),
            let challenge = try? JSONDecoder().decode(Challenge.self, from: payload),
            now.milliseconds < challenge.e
        else { return nil }
        return challenge
    }

    /// What storage checks for `code`: the step it matches (a TOTP code) or its digest (a recovery code); nil when
    /// it is neither.
    func proof(_ code: String, for enrollment: MFAEnrollment, now: Timestamp) throws -> MFAProof? {
        let trimmed = code.trimmingCharacters(in: .whitespaces)
        if TOTP.isCodeShaped(trimmed) {
            let secret = try open(enrollment.sealedSecret, userID: enrollment.userID)
            return TOTP.matchingStep(secret: secret, code: trimmed, at: now).map { .totp(step: $0) }
        }
        return RecoveryCode.normalized(trimmed).map { .recovery(digest: recoveryDigest($0)) }
    }

    func recoveryDigest(_ normalized: String) -> Data { hasher.digest("mfa-recovery|" + normalized) }

    static func throttleAccount(_ userID: UUID) -> String { "mfa:" + userID.wire }

    func seal(_ secret: Data, userID: UUID) throws -> Data {
        try KeyMaterial.seal(secret, key: secretKey, label: "keyhold.totp|" + userID.wire)
    }

    func open(_ sealed: Data, userID: UUID) throws -> Data {
        do {
            return try KeyMaterial.open(sealed, key: secretKey, label: "keyhold.totp|" + userID.wire)
        } catch {
            throw StoredDataError(table: "user_mfa", column: "secret", problem: "does not unseal")
        }
    }

    func user(_ principal: Principal) async throws -> User {
        guard let user = try await identities.user(id: principal.id), user.orgID == principal.orgID else {
            throw KeyholdError.unauthenticated
        }
        return user
    }
}

extension MFAProof {
    /// How the audit log names it.
    var factor: String {
        switch self {
        case .totp: "totp"
        case .recovery: "recovery_code"
        }
    }
}

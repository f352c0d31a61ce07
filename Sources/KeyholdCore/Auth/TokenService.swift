import Crypto
import Foundation
import JWTKit
import Synchronization

/// The claims of a Keyhold access token (1Claw's: `sub` = `user:<id>` or `agent:<id>`, `org`, `iat`, `exp`, `jti`).
public struct AccessTokenClaims: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var org: String
    public var iat: IssuedAtClaim
    public var exp: ExpirationClaim
    public var nbf: NotBeforeClaim?
    public var jti: IDClaim
    public var iss: IssuerClaim?
    /// Path globs capping the caller (agents, scoped API keys).
    public var scopes: [String]?
    /// An agent's vault binding at issue time.
    public var vault_ids: [String]?
    /// The agent key version the token was minted under.
    public var kv: Int?
    /// The personal API key the session comes from.
    public var akid: String?
    /// The refresh-token family issued with the token (a password login's, and its refreshes'): logout ends it.
    public var rfam: String?
    /// An agent's intents mode at issue time (1Claw's claim; informative: every request decides by the agent's
    /// stored row).
    public var intents_api_enabled: Bool?

    public func verify(using _: some JWTAlgorithm) throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}

/// Issues and verifies EdDSA (Ed25519) access tokens. The signing key is generated on first start, kept sealed by
/// the keystore in storage, and published (public half only) as a JWKS.
public final class TokenService: Sendable {
    public let keyID: String
    public let publicKey: Curve25519.Signing.PublicKey
    public let userTokenLifetime: Int64
    private let keys: JWTKeyCollection
    /// Tokens already verified, by SHA-256 of the token, until they expire: an Ed25519 verification per request
    /// is the largest CPU cost of a read. Revocation is not cached: callers check it in storage every time.
    private let verified = Mutex<[Data: AccessTokenClaims]>([:])
    static let verifiedCacheLimit = 50_000
    /// The longest lifetime Keyhold issues (agents: a day); a token claiming more was not made here.
    static let maximumLifetime: Double = 86_400

    public init(signingKey: Curve25519.Signing.PrivateKey, userTokenLifetime: Int64 = 900) async {
        self.publicKey = signingKey.publicKey
        self.keyID = Self.keyID(for: signingKey.publicKey)
        self.userTokenLifetime = userTokenLifetime
        self.keys = JWTKeyCollection()
        await keys.add(eddsa: EdDSA.PrivateKey(backing: signingKey), kid: JWKIdentifier(string: keyID))
    }

    /// Loads the signing key from storage, or creates and stores it on first start.
    public static func load(
        system: any SystemStore, keystore: any Keystore, userTokenLifetime: Int64 = 900
    ) async throws -> TokenService {
        let raw = try await keystore.serverSecret("jwt-signing-key", in: system) {
            Curve25519.Signing.PrivateKey().rawRepresentation
        }
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        return await TokenService(signingKey: key, userTokenLifetime: userTokenLifetime)
    }

    static func keyID(for key: Curve25519.Signing.PublicKey) -> String {
        String(Data(SHA256.hash(data: key.rawRepresentation)).hexString.prefix(16))
    }

    public struct IssuedToken: Sendable {
        public let token: String
        public let expiresIn: Int64
        public let claims: AccessTokenClaims
    }

    public func issue(
        for principal: Principal, lifetime: Int64? = nil, keyVersion: Int? = nil, refreshFamily: UUID? = nil,
        now: Date = Date()
    ) async throws -> IssuedToken {
        let lifetime = lifetime ?? userTokenLifetime
        let issuedAt = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let claims = AccessTokenClaims(
            sub: SubjectClaim(value: "\(principal.kind.rawValue):\(principal.id.wire)"),
            org: principal.orgID.wire,
            iat: IssuedAtClaim(value: issuedAt),
            exp: ExpirationClaim(value: issuedAt.addingTimeInterval(TimeInterval(lifetime))),
            nbf: NotBeforeClaim(value: issuedAt),
            jti: IDClaim(value: UUID().wire),
            iss: nil,
            scopes: principal.scopes,
            vault_ids: principal.kind == .agent ? principal.vaultIDs.map { $0.wire } : nil,
            kv: keyVersion,
            akid: principal.apiKeyID?.wire,
            rfam: refreshFamily?.wire,
            intents_api_enabled: principal.kind == .agent ? principal.intentsAPIEnabled : nil)
        var header = JWTHeader()
        header.typ = "JWT"
        let token = try await keys.sign(claims, kid: JWKIdentifier(string: keyID), header: header)
        return IssuedToken(token: token, expiresIn: lifetime, claims: claims)
    }

    /// Verifies the header (exactly `alg: EdDSA`, this server's `kid`, no `crit`), the Ed25519 signature, `exp`,
    /// `nbf`, an `iat` not in the future and a lifetime no longer than Keyhold issues. Any failure is the same 401.
    public func verify(_ token: String, now: Date = Date()) async throws -> AccessTokenClaims {
        guard token.utf8.count <= 4096 else { throw KeyholdError.unauthenticated }
        let digest = Data(SHA256.hash(data: Data(token.utf8)))
        if let claims = verified.withLock({ $0[digest] }) {
            guard now < claims.exp.value else { throw KeyholdError.unauthenticated }
            return claims
        }
        guard headerIsOurs(token) else { throw KeyholdError.unauthenticated }
        let claims: AccessTokenClaims
        do {
            claims = try await keys.verify(token, as: AccessTokenClaims.self)
        } catch {
            throw KeyholdError.unauthenticated
        }
        let issued = claims.iat.value.timeIntervalSince1970, expires = claims.exp.value.timeIntervalSince1970
        guard issued <= now.timeIntervalSince1970 + 60, expires > issued, expires - issued <= Self.maximumLifetime
        else { throw KeyholdError.unauthenticated }
        verified.withLock { cache in
            if cache.count >= Self.verifiedCacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[digest] = claims
        }
        return claims
    }

    private func headerIsOurs(_ token: String) -> Bool {
        guard let dot = token.firstIndex(of: "."), let data = Data(base64URL: String(token[..<dot])),
            let header = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return false }
        return header["alg"] as? String == "EdDSA" && header["kid"] as? String == keyID && header["crit"] == nil
            && (header["typ"] == nil || header["typ"] as? String == "JWT")
    }

    /// The Ed25519 public key as a JWK (RFC 8037).
    public var jwk: [String: String] {
        [
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": keyID,
            "x": publicKey.rawRepresentation.base64URLEncodedString(),
        ]
    }
}

extension Data {
    /// Decodes base64url without padding (RFC 4648 §5).
    public init?(base64URL text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base64.contains("=") else { return nil }
        while base64.count % 4 != 0 { base64 += "=" }
        self.init(base64Encoded: base64)
    }

    public func base64URLEncodedString() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

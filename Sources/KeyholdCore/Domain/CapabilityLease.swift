import Crypto
import Foundation

/// One condition on a capability lease's use, as a holder appends it to narrow the lease (macaroon-style).
/// Its text is what the signature chain covers: `expires<=MS`, `uses<=N`, `methods=GET,POST`, `path_prefix=/v1/x`,
/// `host=api.example.com` (or `host=*.example.com`). Anything else does not parse, and a token carrying it is refused.
public enum LeaseCaveat: Sendable, Hashable {
    /// Unusable from this instant on (Unix milliseconds).
    case expires(Timestamp)
    /// At most this many uses of this token and of every token attenuated from it.
    case uses(Int)
    /// Only these methods (upper case).
    case methods(Set<String>)
    /// Only paths equal to this one or below it, segment by segment.
    case pathPrefix(String)
    /// Only this host, or with `*.` any host below that suffix (never the suffix itself).
    case host(String)

    /// The longest caveat text a token may carry.
    public static let maximumLength = 256

    public init?(text: String) {
        guard text.utf8.count <= Self.maximumLength, let equals = text.firstIndex(of: "=") else { return nil }
        var name = String(text[..<equals])
        let value = String(text[text.index(after: equals)...])
        let bounded = name.hasSuffix("<")
        if bounded { name.removeLast() }
        switch (name, bounded) {
        case ("expires", true):
            guard let ms = Int64(value), ms >= 0, String(ms) == value else { return nil }
            self = .expires(Timestamp(milliseconds: ms))
        case ("uses", true):
            guard let count = Int(value), count >= 0, String(count) == value else { return nil }
            self = .uses(count)
        case ("methods", false):
            let methods = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard !methods.isEmpty, methods.allSatisfy(LeaseRules.isMethod) else { return nil }
            self = .methods(Set(methods))
        case ("path_prefix", false):
            guard LeaseRules.isPathPrefix(value) else { return nil }
            self = .pathPrefix(value)
        case ("host", false):
            guard LeaseRules.isHostPattern(value) else { return nil }
            self = .host(value)
        default:
            return nil
        }
    }

    public var text: String {
        switch self {
        case .expires(let at): "expires<=\(at.milliseconds)"
        case .uses(let count): "uses<=\(count)"
        case .methods(let methods): "methods=" + methods.sorted().joined(separator: ",")
        case .pathPrefix(let prefix): "path_prefix=\(prefix)"
        case .host(let host): "host=\(host)"
        }
    }
}

/// The syntax and matching rules of a lease's destination, shared by the lease itself and its caveats.
public enum LeaseRules {
    /// Headers a caller may neither set on a proxied request nor have a lease inject: framing, routing and
    /// connection management are the proxy's.
    /// Also those that would let a caller read the value piecewise (`Range`) or make an upstream act on another method
    /// or path than the one checked (method overrides, rewritten URLs, forwarded hosts and prefixes).
    public static let reservedHeaders: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
        "proxy-authorization", "proxy-connection", "expect", "accept-encoding", "range", "if-range",
        "x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url",
        "x-original-method", "forwarded", "x-forwarded-host", "x-forwarded-prefix", "x-forwarded-path",
    ]

    /// A header name as CGI-style servers see it (case and `_`/`-` folded), to compare names that could collide.
    public static func folded(_ name: String) -> String { name.lowercased().replacingOccurrences(of: "_", with: "-") }

    /// Bytes a header value may not hold: controls other than tab, and DEL.
    public static func isHeaderSafe(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }
    }

    /// A byte of an HTTP token (RFC 9110 §5.6.2): what a header or query parameter name is made of here.
    public static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    public static func isMethod(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 16 && text.utf8.allSatisfy { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
    }

    /// `/`, or `/` followed by segments of unreserved characters (no empty, `.` or `..` segment, no percent sign).
    public static func isPathPrefix(_ text: String) -> Bool {
        guard text.hasPrefix("/") else { return false }
        if text == "/" { return true }
        return text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).allSatisfy(isSegment)
    }

    static func isSegment(_ segment: Substring) -> Bool {
        !segment.isEmpty && segment != "." && segment != ".."
            && segment.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                    UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "+"), UInt8(ascii: ","):
                    true
                default: false
                }
            }
    }

    /// A lower-case DNS name or IPv4 address (`localhost`, `127.0.0.1`, `api.example.com`), or `*.` and a DNS name
    /// of at least two labels whose last is not a number (`*.example.com`; never `*.com` or `*.0.0.1`).
    public static func isHostPattern(_ text: String) -> Bool {
        let wildcard = text.hasPrefix("*.")
        let name = wildcard ? String(text.dropFirst(2)) : text
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if wildcard, labels.count < 2 || labels.last!.allSatisfy(\.isNumber) { return false }
        return name.utf8.count <= 253 && !labels.isEmpty
            && labels.allSatisfy { label in
                !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.utf8.allSatisfy { byte in
                        switch byte {
                        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                            UInt8(ascii: "-"):
                            true
                        default: false
                        }
                    }
            }
    }

    /// `host` (lower case) is `pattern`, or below it when the pattern starts with `*.` (an IPv4 address never is).
    public static func host(_ host: String, matches pattern: String) -> Bool {
        guard pattern.hasPrefix("*.") else { return host == pattern }
        if let last = host.split(separator: ".").last, last.allSatisfy(\.isNumber) { return false }
        return host.hasSuffix(pattern.dropFirst(1)) && host.count > pattern.count - 1
    }

    /// The port a URL of `scheme` uses when it names none.
    public static func defaultPort(_ scheme: String) -> Int { scheme == "http" ? 80 : 443 }

    /// `path` is `prefix` or lies below it, whole segments only (`/v1/charges` covers `/v1/charges/ch_1`, not
    /// `/v1/chargesX`).
    public static func path(_ path: String, isUnder prefix: String) -> Bool {
        prefix == "/" || path == prefix || path.hasPrefix(prefix.hasSuffix("/") ? prefix : prefix + "/")
    }
}

/// A capability lease's bearer token: `khl_<lease id>.<caveat>….<signature>`, each part base64url. The signature is
/// an HMAC chain (macaroons): `s0 = HMAC(root key, "keyhold.lease.v1|" + id)`, then `s_i = HMAC(s_{i-1}, caveat_i)`.
/// A holder appends a caveat and replaces the signature without asking the server; nobody without the root key can
/// remove one, so a token can only narrow the lease it names.
public struct LeaseToken: Sendable, Equatable {
    public let leaseID: UUID
    /// The caveats' texts, in the order they were added.
    public let caveats: [String]
    public let signature: Data

    public static let prefix = "khl_"
    /// Bounds on what the server reads from a caller.
    public static let maximumCaveats = 32
    public static let maximumLength = 16 * 1024

    /// The lease's first token, with no caveat.
    public static func mint(leaseID: UUID, rootKey: SymmetricKey) -> LeaseToken {
        LeaseToken(leaseID: leaseID, caveats: [], signature: rootSignature(leaseID, rootKey))
    }

    static func rootSignature(_ id: UUID, _ rootKey: SymmetricKey) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Data("keyhold.lease.v1|\(id.wire)".utf8), using: rootKey))
    }

    static func chain(_ signature: Data, _ caveat: String) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Data(caveat.utf8), using: SymmetricKey(data: signature)))
    }

    /// This token with one more caveat: what a holder does to hand on less than it holds.
    public func attenuated(with caveat: LeaseCaveat) -> LeaseToken { attenuated(withText: caveat.text) }

    /// The same with a caveat's text as given: anyone holding a token can sign any text this way, and the server
    /// refuses a token with a caveat it does not know.
    public func attenuated(withText text: String) -> LeaseToken {
        LeaseToken(leaseID: leaseID, caveats: caveats + [text], signature: Self.chain(signature, text))
    }

    public var encoded: String {
        var id = leaseID.uuid
        let idBytes = withUnsafeBytes(of: &id) { Data($0) }
        return Self.prefix
            + ([idBytes] + caveats.map { Data($0.utf8) } + [signature]).map { $0.base64URLEncodedString() }
            .joined(separator: ".")
    }

    /// Parses the shape only (nothing is verified); nil for anything else.
    public init?(parsing text: String) {
        guard text.utf8.count <= Self.maximumLength, text.hasPrefix(Self.prefix) else { return nil }
        let parts = text.dropFirst(Self.prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.count - 2 <= Self.maximumCaveats,
            let idBytes = Data(base64URL: String(parts[0])), idBytes.count == 16,
            let signature = Data(base64URL: String(parts[parts.count - 1])), signature.count == 32
        else { return nil }
        var caveats: [String] = []
        for part in parts.dropFirst().dropLast() {
            guard let bytes = Data(base64URL: String(part)), let caveat = String(data: bytes, encoding: .utf8),
                Data(caveat.utf8) == bytes, caveat.utf8.count <= LeaseCaveat.maximumLength
            else { return nil }
            caveats.append(caveat)
        }
        let id = idBytes.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
        self.init(leaseID: id, caveats: caveats, signature: signature)
    }

    init(leaseID: UUID, caveats: [String], signature: Data) {
        self.leaseID = leaseID
        self.caveats = caveats
        self.signature = signature
    }

    /// A caveat the chain verified, with the key its `uses<=N` counter is kept under: a digest of the signature up to
    /// and including it, which every token attenuated from this one shares.
    public struct Verified: Sendable, Equatable {
        public let caveat: LeaseCaveat
        public let counterKey: Data
    }

    /// The caveats, once the chain checks out under `rootKey`; nil when it does not or a caveat does not parse.
    public func verified(rootKey: SymmetricKey) -> [Verified]? {
        var signature = Self.rootSignature(leaseID, rootKey)
        var verified: [Verified] = []
        for text in caveats {
            guard let caveat = LeaseCaveat(text: text) else { return nil }
            signature = Self.chain(signature, text)
            verified.append(Verified(caveat: caveat, counterKey: Data(SHA256.hash(data: signature))))
        }
        let expected = signature
        guard expected.count == self.signature.count,
            zip(expected, self.signature).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0
        else { return nil }
        return verified
    }
}

/// Where a lease's secret goes in the outgoing request.
public enum LeaseInjection: Sendable, Hashable {
    /// A header whose value is `template` with `{{value}}` replaced (e.g. `Authorization: Bearer {{value}}`).
    case header(name: String, template: String)
    /// A query parameter whose value is the secret.
    case query(name: String)
    /// HTTP basic authentication with this user name and the secret as the password.
    case basic(username: String)

    public static let placeholder = "{{value}}"

    /// How it is stored and shown: `{"type": "header", "name": …, "template": …}`, `{"type": "query", "name": …}`
    /// or `{"type": "basic", "username": …}`.
    public var json: JSONValue {
        switch self {
        case .header(let name, let template): .object(["type": "header", "name": .string(name), "template": .string(template)])
        case .query(let name): .object(["type": "query", "name": .string(name)])
        case .basic(let username): .object(["type": "basic", "username": .string(username)])
        }
    }

    /// Parses and checks the stored or requested form; throws 400 naming what is wrong.
    public init(json: JSONValue) throws {
        guard case .object(let fields) = json, case .string(let type)? = fields["type"] else {
            throw KeyholdError.badRequest("injection must be an object with a type: header, query or basic")
        }
        func text(_ key: String) throws -> String {
            guard case .string(let value)? = fields[key], !value.isEmpty, value.utf8.count <= 256,
                value.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F })
            else { throw KeyholdError.badRequest("injection.\(key) must be 1-256 printable ASCII characters") }
            return value
        }
        let allowed: Set<String>
        switch type {
        case "header":
            let name = try text("name")
            guard name.utf8.allSatisfy(LeaseRules.isTokenByte) else {
                throw KeyholdError.badRequest("injection.name must be an HTTP header name")
            }
            guard !LeaseRules.reservedHeaders.contains(LeaseRules.folded(name)) else {
                throw KeyholdError.badRequest("injection.name may not be \(name)")
            }
            let template = try text("template")
            guard template.components(separatedBy: Self.placeholder).count == 2 else {
                throw KeyholdError.badRequest("injection.template must contain {{value}} exactly once")
            }
            self = .header(name: name, template: template)
            allowed = ["type", "name", "template"]
        case "query":
            let name = try text("name")
            guard LeaseRules.isSegment(Substring(name)), !name.contains(":"), !name.contains("@"), !name.contains("+"),
                !name.contains(",")
            else {
                throw KeyholdError.badRequest("injection.name must be a plain query parameter name (letters, digits, -._~)")
            }
            self = .query(name: name)
            allowed = ["type", "name"]
        case "basic":
            let username = try text("username")
            guard !username.contains(":") else { throw KeyholdError.badRequest("injection.username may not contain ':'") }
            self = .basic(username: username)
            allowed = ["type", "username"]
        default:
            throw KeyholdError.badRequest("injection.type must be header, query or basic")
        }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw KeyholdError.badRequest("injection.\(unknown) is not a field of a \(type) injection")
        }
    }
}

/// A capability over one secret (issue 23): who may use it, against which destination, how often and until when.
public struct CapabilityLease: Sendable, Hashable {
    public let id: UUID
    public let orgID: UUID
    public let vaultID: UUID
    public let path: String
    public let principalKind: PrincipalKind
    public let principalID: UUID
    /// `https`, or `http` when the operator allows private destinations.
    public let scheme: String
    /// Exact, or `*.suffix`.
    public let host: String
    /// The destination port; nil for the scheme's own (443 or 80).
    public let port: Int?
    public let methods: Set<String>
    public let pathPrefix: String
    public let injection: LeaseInjection
    public let maxUses: Int?
    public var uses: Int
    /// Uses counted under each `uses<=N` caveat a token carried, by its counter key (hex of
    /// `LeaseToken.Verified.counterKey`).
    public var caveatUses: [String: Int]
    public let expiresAt: Timestamp
    public var revokedAt: Timestamp?
    public let createdBy: UUID
    public let createdByType: PrincipalKind
    public let createdAt: Timestamp
    /// A person's note on what the lease is for (not sealed: it grants nothing).
    public let description: String?

    /// A value encrypted with a customer-managed key is ciphertext to the server: it cannot be injected.
    public static let customerManaged = KeyholdError(
        .conflict, "The secret is encrypted with a customer-managed key: the server cannot inject its value")

    /// Distinct `uses<=N` counters a lease keeps at most (tokens attenuated with their own use limits).
    public static let maximumCounters = 256

    public init(
        id: UUID, orgID: UUID, vaultID: UUID, path: String, principalKind: PrincipalKind, principalID: UUID,
        scheme: String, host: String, port: Int?, methods: Set<String>, pathPrefix: String, injection: LeaseInjection,
        maxUses: Int?, uses: Int, caveatUses: [String: Int] = [:], expiresAt: Timestamp, revokedAt: Timestamp?,
        createdBy: UUID, createdByType: PrincipalKind, createdAt: Timestamp, description: String? = nil
    ) {
        self.id = id
        self.orgID = orgID
        self.vaultID = vaultID
        self.path = path
        self.principalKind = principalKind
        self.principalID = principalID
        self.scheme = scheme
        self.host = host
        self.port = port
        self.methods = methods
        self.pathPrefix = pathPrefix
        self.injection = injection
        self.maxUses = maxUses
        self.uses = uses
        self.caveatUses = caveatUses
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.createdBy = createdBy
        self.createdByType = createdByType
        self.createdAt = createdAt
        self.description = description
    }

    /// The lease's state at `now`: why it can no longer be used (revoked, expired, uses spent), or nil.
    public func goneReason(at now: Timestamp) -> String? {
        if revokedAt != nil { return "the lease was revoked" }
        if now >= expiresAt { return "the lease has expired" }
        if let maxUses, uses >= maxUses { return "the lease's uses are spent" }
        return nil
    }

    /// An outgoing request as the proxy is asked to send it (the host lower-cased, the path as sent, unescaped).
    public struct Use: Sendable {
        public let principalKind: PrincipalKind
        public let principalID: UUID
        public let method: String
        public let scheme: String
        public let host: String
        public let port: Int
        public let path: String
        public let at: Timestamp

        public init(
            principalKind: PrincipalKind, principalID: UUID, method: String, scheme: String, host: String, port: Int,
            path: String, at: Timestamp
        ) {
            self.principalKind = principalKind
            self.principalID = principalID
            self.method = method
            self.scheme = scheme
            self.host = host
            self.port = port
            self.path = path
            self.at = at
        }
    }

    /// Why `use` is refused by the lease and the token's caveats together (every one must allow it), or nil. The
    /// lease's state (`goneReason`) and use counts are checked where they are spent, in storage.
    public func refusal(of use: Use, caveats: [LeaseToken.Verified]) -> String? {
        if use.principalKind != principalKind || use.principalID != principalID {
            return "the lease belongs to another principal"
        }
        if use.scheme != scheme { return "the destination's scheme is not the lease's" }
        if !LeaseRules.host(use.host, matches: host) { return "the destination host is not the lease's" }
        if use.port != port ?? LeaseRules.defaultPort(scheme) { return "the destination port is not the lease's" }
        if !methods.contains(use.method) { return "the method is not allowed by the lease" }
        if !LeaseRules.path(use.path, isUnder: pathPrefix) { return "the path is outside the lease's prefix" }
        for verified in caveats {
            switch verified.caveat {
            case .expires(let at) where use.at >= at: return "a caveat's expiry has passed"
            case .methods(let allowed) where !allowed.contains(use.method): return "a caveat does not allow the method"
            case .pathPrefix(let prefix) where !LeaseRules.path(use.path, isUnder: prefix):
                return "the path is outside a caveat's prefix"
            case .host(let pattern) where !LeaseRules.host(use.host, matches: pattern):
                return "a caveat does not allow the host"
            default: continue
            }
        }
        return nil
    }
}

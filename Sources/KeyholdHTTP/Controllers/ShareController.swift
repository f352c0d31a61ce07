import Foundation
import HTTPTypes
import Hummingbird
import KeyholdCore

/// Sharing: `POST /v1/secrets/{secret_id}/share`, `GET|DELETE /v1/share/{id}`, `/v1/shares/...`, and every
/// share of the org for its owners and admins at `GET /v1/org/shares`.
struct ShareController {
    let shares: ShareService
    let authentication: AuthenticationMiddleware
    let publicURL: String
    /// The web console, whose page a browser navigating to a share's link gets (its script then opens the share).
    let console: ConsoleFiles

    func register(on router: Router<KeyholdRequestContext>, authenticated: RouterGroup<KeyholdRequestContext>) {
        authenticated.post("/v1/secrets/:secret_id/share") { request, context in
            let caller = try context.requireCaller()
            let secretID = try context.uuidParameter("secret_id", notFound: .notFound("Secret not found"))
            let body = try await RequestBody.decode(CreateShareRequest.self, from: request)
            let (share, claimToken) = try await shares.create(secretID: secretID, request: try body.request(), by: caller)
            return try JSONResponse.make(
                ShareResponse(share, publicURL: publicURL, claimToken: claimToken), status: .created)
        }
        router.get("/v1/share/:share_id") { request, context in
            let id = try Self.shareID(context)
            // A browser navigating to the link (HTML first in Accept, no credentials) gets the console's page, which
            // opens the share itself: nothing is counted until it does.
            if !AuthenticationMiddleware.presentsCredentials(request),
                request.headers[.accept]?.split(separator: ",").first?.contains("text/html") == true,
                let page = console.file("index.html")
            {
                return ConsoleController.page(page)
            }
            // Link shares need no credentials; when some are sent they must be valid.
            let caller: Principal? =
                AuthenticationMiddleware.presentsCredentials(request)
                ? try await authentication.caller(request, context).principal : nil
            let body = try await RequestBody.decode(AccessShareRequest.self, from: request, emptyAsObject: true)
            // The passphrase in a JSON body (as the SDK sends it) or in `X-Share-Passphrase` (browsers send no body
            // with a GET).
            let passphrase = body.passphrase ?? request.headers[HTTPField.Name("X-Share-Passphrase")!]
            let (share, revealed) = try await shares.access(
                id, passphrase: passphrase, caller: caller, ip: context.clientIP)
            return try JSONResponse.make(SharedSecretResponse(share: share, revealed: revealed))
        }
        for path in ["/v1/share/:share_id", "/v1/shares/:share_id"] {
            authenticated.delete(RouterPath(path)) { request, context in
                let caller = try context.requireCaller()
                try await shares.revoke(try Self.shareID(context), by: caller)
                return JSONResponse.noContent()
            }
        }
        authenticated.get("/v1/shares/outbound") { request, context in
            let caller = try context.requireCaller()
            let list = try await shares.outbound(for: caller.principal)
            return try JSONResponse.make(ShareListResponse(shares: list.map { ShareResponse($0, publicURL: publicURL) }))
        }
        authenticated.get("/v1/shares/inbound") { request, context in
            let caller = try context.requireCaller()
            let list = try await shares.inbound(for: caller.principal)
            return try JSONResponse.make(ShareListResponse(shares: list.map { ShareResponse($0, publicURL: publicURL) }))
        }
        authenticated.get("/v1/org/shares") { request, context in
            let caller = try context.requireCaller()
            let list = try await shares.orgShares(for: caller)
            let me = caller.principal
            return try JSONResponse.make(
                ShareListResponse(
                    shares: list.map {
                        // Someone else's link: its id would open it, so only its reference shows.
                        let theirLink = $0.recipientType == .anyoneWithLink && !($0.createdByType == me.kind && $0.createdBy == me.id)
                        return ShareResponse($0, publicURL: publicURL, revealID: !theirLink)
                    }))
        }
        for (path, accept) in [("/v1/shares/:share_id/accept", true), ("/v1/shares/:share_id/decline", false)] {
            authenticated.post(RouterPath(path)) { request, context in
                let caller = try context.requireCaller()
                let body = try await RequestBody.decode(AnswerShareRequest.self, from: request, emptyAsObject: true)
                try await shares.answer(try Self.shareID(context), accept: accept, claimToken: body.claim_token, by: caller)
                return JSONResponse.noContent()
            }
        }
    }

    static func shareID(_ context: KeyholdRequestContext) throws -> UUID {
        try context.uuidParameter("share_id", notFound: ShareService.notFound)
    }
}

struct CreateShareRequest: Decodable {
    let recipient_type: String
    let recipient_id: String?
    let email: String?
    let recipient_email: String?
    let expires_at: Timestamp?
    let max_access_count: Int?
    let passphrase: String?
    let ip_allowlist: [String]?
    /// A version number, or `"latest"` to follow the latest version; absent: the latest version now.
    let version: JSONValue?

    func request() throws -> ShareService.Request {
        var choice: ShareService.Request.VersionChoice?
        switch version {
        case nil, .null?: choice = nil
        case .string("latest")?: choice = .latest
        case .number(let number)? where number >= 1 && number <= Double(Int32.max) && number.rounded() == number:
            choice = .pinned(Int(number))
        default: throw KeyholdError.badRequest("version must be a version number or \"latest\"")
        }
        return .init(
            recipientType: recipient_type, recipientID: recipient_id, email: email ?? recipient_email,
            expiresAt: expires_at, maxAccessCount: max_access_count, passphrase: passphrase, ipAllowlist: ip_allowlist,
            version: choice)
    }
}

struct AccessShareRequest: Decodable {
    let passphrase: String?
}

struct AnswerShareRequest: Decodable {
    /// For `external_email` shares: the claim token the share's creator handed over.
    let claim_token: String?
}

/// `ShareResponse` and the share list item in one shape: never the passphrase or the value; the claim token of an
/// `external_email` share only in the response that creates it. `reference` names the share in the audit log and
/// in listings of other people's links, where the id (a link's credential) is `null`.
struct ShareResponse: Encodable {
    let id: JSONValue
    let reference: String
    let share_url: JSONValue
    let secret_id: String
    let secret_path: String
    let vault_id: String
    let recipient_type: String
    let recipient_id: String?
    let recipient_email: String?
    let expires_at: Timestamp
    let max_access_count: Int?
    let access_count: Int
    let has_passphrase: Bool
    let ip_allowlist: [String]
    let status: String
    let is_accepted: Bool
    let is_expired: Bool
    let created_at: Timestamp
    /// The version served; `null` when the share follows the latest.
    let version: JSONValue
    let follows_latest: Bool
    let claim_token: String?

    init(_ share: Share, publicURL: String, claimToken: String? = nil, revealID: Bool = true) {
        reference = share.reference.wire
        version = share.version.map { .number(Double($0)) } ?? .null
        follows_latest = share.version == nil
        claim_token = claimToken
        id = revealID ? .string(share.id.wire) : .null
        share_url = revealID ? .string(publicURL + "/v1/share/" + share.id.wire) : .null
        secret_id = share.secretID.wire
        secret_path = share.path
        vault_id = share.vaultID.wire
        recipient_type = share.recipientType.rawValue
        recipient_id = share.recipientID?.wire
        recipient_email = share.recipientEmail
        expires_at = share.expiresAt
        max_access_count = share.maxAccessCount
        access_count = share.accessCount
        has_passphrase = share.passphraseHash != nil
        ip_allowlist = share.ipAllowlist.map(\.description)
        status = share.status.rawValue
        is_accepted = share.status == .accepted
        is_expired = share.isExpired(at: .now)
        created_at = share.createdAt
    }
}

struct ShareListResponse: Encodable {
    let shares: [ShareResponse]
}

struct SharedSecretResponse: Encodable {
    let id: String
    let secret_id: String
    let path: String
    let type: String
    let value: String
    let version: Int
    let access_count: Int
    let max_access_count: Int?
    let expires_at: Timestamp

    init(share: Share, revealed: SecretService.Revealed) {
        id = share.id.wire
        secret_id = share.secretID.wire
        path = revealed.info.path
        type = revealed.info.type.rawValue
        value = revealed.value
        version = revealed.info.version
        access_count = share.accessCount
        max_access_count = share.maxAccessCount
        expires_at = share.expiresAt
    }
}

import Foundation
import Hummingbird
import KeyholdCore

/// Turns the `Authorization: Bearer …` header into a `Principal`, or throws the one 401.
struct Authenticator: Sendable {
    let tokens: TokenService
    let identities: any IdentityStore

    func principal(for request: Request) async throws -> Principal {
        guard let header = request.headers[.authorization], header.utf8.count <= 8192 else {
            throw KeyholdError.unauthenticated
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw KeyholdError.unauthenticated }
        let claims = try await tokens.verify(String(parts[1]).trimmingCharacters(in: .whitespaces))
        let subject = claims.sub.value.split(separator: ":", maxSplits: 1)
        guard subject.count == 2, subject[0] == "user", let id = UUID(uuidString: String(subject[1])),
            let orgID = UUID(uuidString: claims.org)
        else { throw KeyholdError.unauthenticated }
        guard let user = try await identities.user(id: id), user.orgID == orgID else {
            throw KeyholdError.unauthenticated
        }
        return Principal(kind: .user, id: user.id, orgID: user.orgID, role: user.role, tokenID: claims.jti.value)
    }
}

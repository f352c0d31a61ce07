import Foundation
import Hummingbird
import KeyholdCore

/// Turns `Authorization: Bearer …` into a `Caller` (principal, client address, time), or throws the one 401.
struct Authenticator: Sendable {
    let auth: AuthService

    func caller(_ request: Request, _ context: KeyholdRequestContext) async throws -> Caller {
        let ip = context.clientIP
        return Caller(
            try await auth.authenticate(bearer: Self.bearer(request), ip: ip),
            context: AccessContext(clientIP: ip, transport: context.transport))
    }

    static func bearer(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.utf8.count <= 8192 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        // Spaces and tabs around the credential are ignored (Foundation's `trimmingCharacters` was a visible cost).
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = parts[1].firstIndex(where: { !blank($0) }), let last = parts[1].lastIndex(where: { !blank($0) })
        else { return nil }
        return String(parts[1][first...last])
    }
}

extension KeyholdRequestContext {
    func uuidParameter(_ name: String, notFound: KeyholdError) throws -> UUID {
        guard let text = parameters.get(name), let id = UUID(fast: text) else { throw notFound }
        return id
    }
}

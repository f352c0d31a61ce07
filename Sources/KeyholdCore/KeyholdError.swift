import Foundation

/// The one error type of Keyhold's core. Every layer translates its own failures into it; the HTTP layer maps
/// `code` to a status in one table (`ProblemDetails`). `detail` is safe to show a client: it never carries a
/// secret value, key, password or token.
public struct KeyholdError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case badRequest
        case unauthorized
        case forbidden
        case notFound
        case methodNotAllowed
        case conflict
        case gone
        case payloadTooLarge
        case requestHeaderFieldsTooLarge
        case unsupportedMediaType
        case tooManyRequests
        case unavailable
        case internalError
        /// An upstream Keyhold sent a request to (the lease proxy) could not be reached or answered unusably.
        case badGateway
    }

    public let code: Code
    public let detail: String
    /// Problem `type`; `about:blank` unless a client keys on a more specific one.
    public let type: String
    /// For 429: seconds until a retry can succeed (`Retry-After`).
    public let retryAfter: Int?
    /// For `approval_required`: the request a person must approve (`approval_request_id`).
    public let approvalRequestID: UUID?

    public init(
        _ code: Code, _ detail: String, type: String = "about:blank", retryAfter: Int? = nil,
        approvalRequestID: UUID? = nil
    ) {
        self.code = code
        self.detail = detail
        self.type = type
        self.retryAfter = retryAfter
        self.approvalRequestID = approvalRequestID
    }

    public var description: String { "\(code.rawValue): \(detail)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    public static func badRequest(_ detail: String) -> Self { .init(.badRequest, detail) }
    public static func notFound(_ detail: String) -> Self { .init(.notFound, detail) }
    public static func gone(_ detail: String) -> Self { .init(.gone, detail) }
    public static func forbidden(_ detail: String) -> Self { .init(.forbidden, detail) }
    public static let invalidCredentials = Self(.unauthorized, "Invalid credentials")
    public static let unauthenticated = Self(.unauthorized, "Missing or invalid bearer token")
    /// The audit event could not be stored: the request fails closed and changes nothing.
    public static let auditUnavailable = Self(
        .unavailable, "The audit log could not be written, so the request was not carried out")
    /// A read that needs a person's approval first (the SDK's `ApprovalRequiredError`).
    public static func approvalRequired(_ id: UUID) -> Self {
        .init(
            .forbidden, "Human approval is required to access this secret; retry once approval request \(id.wire) is approved",
            type: "approval_required", approvalRequestID: id)
    }
    /// Storage's answer to a gated read without an unspent lease (the service turns it into `approvalRequired`).
    public static let noLease = Self(.forbidden, "Human approval is required to access this secret", type: "approval_required")

    /// A read of a secret type the caller may not read (an agent in intents mode and a private or SSH key).
    public static let typeRefused = Self(
        .forbidden, "Agents with intents_api_enabled cannot read private_key or ssh_key secrets",
        type: "secret_type_refused")

    public static func internalError(_ detail: String = "An unexpected error occurred") -> Self {
        .init(.internalError, detail)
    }
}

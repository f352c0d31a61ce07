import Foundation
import Hummingbird
import KeyholdCore
import Logging

/// RFC 7807 problem details, and the only table in Keyhold that maps errors to HTTP statuses.
public struct ProblemDetails: Encodable, Sendable {
    public let type: String
    public let title: String
    public let status: Int
    public let detail: String
    /// `approval_required`: the approval request to wait for (the SDK reads it into `ApprovalRequiredError`).
    public var approval_request_id: String? = nil

    static func status(for code: KeyholdError.Code) -> HTTPResponse.Status {
        switch code {
        case .badRequest: .badRequest
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .conflict: .conflict
        case .gone: .gone
        case .payloadTooLarge: .contentTooLarge
        case .requestHeaderFieldsTooLarge: .requestHeaderFieldsTooLarge
        case .unsupportedMediaType: .unsupportedMediaType
        case .tooManyRequests: .tooManyRequests
        case .unavailable: .serviceUnavailable
        case .internalError: .internalServerError
        case .badGateway: .badGateway
        }
    }

    /// Translates any error into a problem. Errors Keyhold does not know become a 500 with a generic detail;
    /// their description goes to the log (adapters never put values into their errors).
    static func from(_ error: any Error, logger: Logger) -> (HTTPResponse.Status, ProblemDetails) {
        let keyholdError: KeyholdError
        switch error {
        case let error as KeyholdError:
            keyholdError = error
        case let error as any HTTPResponseError:
            let status = error.status
            let detail: String =
                switch status {
                case .notFound: "No route matches this method and path"
                case .contentTooLarge: "Request body is larger than the limit"
                case .requestHeaderFieldsTooLarge: "Request headers are too large"
                default: status.reasonPhrase
                }
            return (status, ProblemDetails(type: "about:blank", title: status.reasonPhrase, status: status.code, detail: detail))
        case let error as StoredDataError:
            // Fail closed: a row that does not decode grants nothing. The log names where, never what.
            logger.error(
                "A stored row failed to decode; the request was refused",
                metadata: [
                    "keyhold.storage.table": "\(error.table)", "keyhold.storage.column": "\(error.column)",
                    "keyhold.storage.problem": "\(error.problem)",
                ])
            keyholdError = KeyholdError(.unavailable, "Stored data failed an integrity check; the request was refused")
        case is DecodingError:
            keyholdError = .badRequest(RequestBody.describe(error as! DecodingError))
        case StorageError.conflict:
            // A uniqueness constraint met a concurrent request that got there first (services check the common cases
            // themselves with a precise message).
            keyholdError = KeyholdError(.conflict, "A concurrent request changed this first; read it again")
        default:
            logger.error("Unhandled error", metadata: ["keyhold.error.type": "\(Swift.type(of: error))", "keyhold.error": "\(error)"])
            keyholdError = .internalError()
        }
        if keyholdError.code == .internalError || keyholdError.code == .unavailable {
            logger.error("Request failed", metadata: ["keyhold.error": "\(keyholdError.detail)"])
        }
        let status = Self.status(for: keyholdError.code)
        var problem = ProblemDetails(
            type: keyholdError.type, title: status.reasonPhrase, status: status.code, detail: keyholdError.detail)
        problem.approval_request_id = keyholdError.approvalRequestID?.wire
        return (status, problem)
    }

    func response() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        let body = (try? JSONEncoder().encode(self)) ?? Data()
        return Response(
            status: HTTPResponse.Status(code: status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Catches every error thrown below it, including unknown routes and oversized bodies, and answers with
/// `application/problem+json`.
public struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            let (status, problem) = ProblemDetails.from(error, logger: context.logger)
            var response = problem.response()
            if status == .tooManyRequests {
                response.headers[.retryAfter] = String((error as? KeyholdError)?.retryAfter ?? 1)
            }
            return response
        }
    }
}

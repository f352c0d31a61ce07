import Foundation
import Hummingbird
import HummingbirdTesting
import KeyholdHTTP
import Testing

/// Authentication is middleware on the authenticated route group. These tests take every operation from the OpenAPI
/// document the server serves: one that declares the bearer scheme must answer the one 401 to every request
/// without a valid bearer, before its handler reads the body; a public one must answer without one.
extension HTTPTests {
    static let bearerProblem = "Missing or invalid bearer token"
    /// No credential, and credentials of every shape that is not a valid session or key.
    static let badAuthorizations: [String?] = [
        nil, "Bearer garbage", "Bearer 1ck_" + String(repeating: "a", count: 43), "Bearer ocv_garbage",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyOngifQ.", "Bearer ", "Basic dXNlcjpwYXNz",
    ]

    struct Operation: CustomStringConvertible {
        let method: HTTPRequest.Method
        let path: String
        /// The document's `security`: `nil` when the operation takes the global bearer requirement.
        let security: [[String: Any]]?
        var description: String { "\(method) \(path)" }

        /// The path with each placeholder filled: ids with fresh UUIDs, a secret path, a version number.
        var uri: String {
            var uri = path
            while let open = uri.firstIndex(of: "{"), let close = uri[open...].firstIndex(of: "}") {
                let name = uri[uri.index(after: open)..<close]
                uri.replaceSubrange(
                    open...close, with: name == "path" ? "a/b" : name == "version" ? "1" : UUID().uuidString.lowercased())
            }
            return uri
        }
    }

    func operations(_ client: any TestClientProtocol) async throws -> [Operation] {
        let document = try await client.execute(uri: "/openapi.json", method: .get) { response in
            try #require(JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
        }
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        return paths.flatMap { path, operations in
            operations.compactMap { method, operation -> Operation? in
                guard let method = HTTPRequest.Method(method.uppercased()), let operation = operation as? [String: Any]
                else { return nil }
                return Operation(method: method, path: path, security: operation["security"] as? [[String: Any]])
            }
        }.sorted { $0.description < $1.description }
    }

    func expectBearerProblem(_ reply: Reply, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        expectProblem(reply, .unauthorized, comment, sourceLocation: sourceLocation)
        #expect(reply.json["detail"] as? String == Self.bearerProblem, comment, sourceLocation: sourceLocation)
    }

    @Test func everyOperationThatNeedsABearerRefusesRequestsWithoutAValidOneBeforeReadingThem() async throws {
        // Some 300 requests from one address: more than the default rate limit's burst.
        try await withApp(environment: ["KEYHOLD_RATE_LIMIT": "0"]) { client in
            let protected = try await operations(client).filter { $0.security == nil }
            #expect(protected.count == 88)
            for operation in protected {
                for authorization in Self.badAuthorizations {
                    // A body that does not parse: the 401 comes first, as it did when each handler authenticated.
                    let reply = try await call(
                        client, operation.method, operation.uri, authorization: authorization, body: "{not json")
                    expectBearerProblem(reply, "\(operation) with \(authorization ?? "no Authorization")")
                }
            }
        }
    }

    @Test func publicOperationsAnswerWithoutABearer() async throws {
        let expected: [String: HTTPResponse.Status] = [
            "GET /v1/health": .ok, "GET /v1/health/ready": .ok, "GET /v1/health/hsm": .ok, "GET /openapi.json": .ok,
            "GET /v1/auth/jwt-public-key": .ok, "GET /.well-known/jwks.json": .ok,
            "GET /.well-known/openid-configuration": .ok,
            "POST /v1/auth/signup": .badRequest, "POST /v1/auth/token": .badRequest,
            "POST /v1/auth/agent-token": .badRequest, "POST /v1/auth/api-key-token": .badRequest,
            "POST /v1/auth/mfa/verify": .badRequest,
            // Without its token and decision: the link's token is its credential.
            "GET /v1/approvals/quick-decide": .badRequest,
            // Without a body it could read: the enrolment checks its fields before anything else.
            "POST /v1/agents/enroll": .badRequest,
        ]
        try await withApp { client in
            let open = try await operations(client).filter { $0.security?.isEmpty == true }
            #expect(Set(open.map(\.description)) == Set(expected.keys))
            for operation in open {
                // A bearer that is not valid is not looked at either.
                for authorization in [nil, "Bearer garbage"] {
                    let body = operation.method == .post ? "{not json" : nil
                    let reply = try await call(client, operation.method, operation.uri, authorization: authorization, body: body)
                    #expect(reply.status == expected[operation.description], "\(operation)")
                }
            }
        }
    }

    /// The routes whose credentials are optional check them in their handler, in the order they always have.
    @Test func optionalCredentialsAreCheckedOnlyWhenTheyMatter() async throws {
        try await withApp { client in
            let optional = try await operations(client).filter { $0.security?.count == 2 }
            #expect(optional.map(\.description) == ["GET /v1/share/{share_id}", "POST /v1/auth/refresh"])
            // A link share: no credential is fine; a bad one is the 401, but only after the id parses.
            let share = "/v1/share/" + UUID().uuidString.lowercased()
            expectProblem(try await call(client, .get, share), .notFound)
            expectBearerProblem(try await call(client, .get, share, token: "garbage"))
            expectProblem(try await call(client, .get, "/v1/share/not-an-id", token: "garbage"), .notFound)
            // Refresh: the body is read first; only without a refresh token does the bearer count.
            expectProblem(try await call(client, .post, "/v1/auth/refresh", token: "garbage", body: "{not json"), .badRequest)
            expectBearerProblem(try await call(client, .post, "/v1/auth/refresh"))
            expectBearerProblem(try await call(client, .post, "/v1/auth/refresh", token: "garbage", body: "{}"))
            let spent = try await call(
                client, .post, "/v1/auth/refresh", token: "garbage", body: #"{"refresh_token":"rt_garbage"}"#)
            expectProblem(spent, .unauthorized)
            #expect(spent.json["detail"] as? String == "Invalid or expired refresh token")
            // /mcp (not in the document) needs a bearer, then a vault; its tool calls authenticate through the router.
            expectBearerProblem(try await call(client, .post, "/mcp", body: "{}"))
            expectProblem(try await call(client, .post, "/mcp", token: "garbage", body: "{}"), .badRequest)
            #expect(try await call(client, .get, "/mcp").status == .methodNotAllowed)
            // A valid session reaches the handlers behind the middleware.
            let token = try await signup(client)
            #expect(try await call(client, .get, "/v1/auth/me", token: token).status == .ok)
            #expect(try await call(client, .get, "/v1/vaults", token: token).status == .ok)
        }
    }

    /// A handler mounted without `AuthenticationMiddleware` has no caller and answers the one 401, never runs.
    @Test func aHandlerOutsideTheAuthenticatedGroupFailsClosed() async throws {
        let router = Router(context: KeyholdRequestContext.self)
        router.add(middleware: ProblemMiddleware())
        router.get("/unguarded") { _, context in try context.requireCaller().principal.id.uuidString }
        try await Application(router: router).test(.router) { client in
            for authorization in Self.badAuthorizations + ["Bearer " + String(repeating: "x", count: 40)] {
                expectBearerProblem(try await call(client, .get, "/unguarded", authorization: authorization))
            }
        }
    }
}

import Foundation
import Hummingbird
import HummingbirdTesting
import KeyholdHTTP
import KeyholdServer
import Logging
import NIOCore
import Testing

/// HTTP behaviour through the real application builder (real SQLite in a temp dir, real keystore and JWTs).
@Suite struct HTTPTests {
    static let password = "Correct-Horse-9-Battery!"

    func withApp(
        signup: String = "open", environment: [String: String] = [:],
        _ body: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        try await withApp(signup: signup, environment: environment) { client, _ in try await body(client) }
    }

    /// The app and its data directory (for tests that reach under the API, as an attacker with the disk would).
    func withApp(
        signup: String = "open", environment: [String: String] = [:],
        _ body: @Sendable (any TestClientProtocol, String) async throws -> Void
    ) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-http-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configuration = try KeyholdConfiguration(
            flags: .init(port: 0, dataDirectory: dir, signup: signup), environment: environment.merging(["KEYHOLD_BCRYPT_COST": "10"]) { mine, _ in mine })
        let app = try await buildServer(configuration: configuration, logger: Logger(label: "test"))
        try await app.test(.router) { client in try await body(client, dir) }
    }

    struct Reply {
        let status: HTTPResponse.Status
        let contentType: String?
        let json: [String: Any]
    }

    @discardableResult
    func call(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String? = nil,
        authorization: String? = nil, body: String? = nil
    ) async throws -> Reply {
        var headers = HTTPFields()
        headers[.authorization] = authorization ?? token.map { "Bearer " + $0 }
        headers[.contentType] = "application/json"
        return try await client.execute(
            uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }
        ) { response in
            let object = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any]
            return Reply(status: response.status, contentType: response.headers[.contentType], json: object ?? [:])
        }
    }

    func signup(_ client: any TestClientProtocol, email: String = "u-\(UUID().uuidString.prefix(8))@example.com")
        async throws -> String
    {
        let reply = try await call(client, .post, "/v1/auth/signup", body: #"{"email":"\#(email)","password":"\#(Self.password)"}"#)
        #expect(reply.status == .ok)
        let login = try await call(client, .post, "/v1/auth/token", body: #"{"email":"\#(email)","password":"\#(Self.password)"}"#)
        #expect(login.status == .ok)
        return try #require(login.json["access_token"] as? String)
    }

    /// A parsed JSON object as sorted, compact text, so two objects compare field by field.
    func canonical(_ object: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    func expectProblem(
        _ reply: Reply, _ status: HTTPResponse.Status, _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(reply.status == status, comment, sourceLocation: sourceLocation)
        #expect(reply.contentType == "application/problem+json", comment, sourceLocation: sourceLocation)
        #expect(reply.json["status"] as? Int == status.code, comment, sourceLocation: sourceLocation)
        #expect(reply.json["title"] is String && reply.json["detail"] is String && reply.json["type"] is String,
                comment, sourceLocation: sourceLocation)
    }

    @Test func healthAndUnknownRoutes() async throws {
        try await withApp { client in
            let health = try await call(client, .get, "/v1/health")
            #expect(health.status == .ok)
            #expect(health.json["status"] as? String == "healthy")
            expectProblem(try await call(client, .get, "/v1/nothing-here"), .notFound)
            expectProblem(try await call(client, .patch, "/v1/vaults"), .notFound)
        }
    }

    @Test func sealedSecretRoundTrip() async throws {
        try await withApp { client in
            let token = try await signup(client)
            let vault = try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"prod"}"#)
            #expect(vault.status == .created)
            let vaultID = try #require(vault.json["id"] as? String)
            let put = try await call(
                client, .put, "/v1/vaults/\(vaultID)/secrets/api-keys/openai", token: token,
                body: #"{"type":"api_key","value":"sk-proj-1","metadata":{"env":"prod","n":2},"max_access_count":5,"expires_at":"2099-01-01T00:00:00Z"}"#)
            #expect(put.status == .created)
            #expect(put.json["version"] as? Int == 1)
            #expect(put.json["value"] == nil)
            // The single-secret answers are written field by field, lists through `Encodable`: the same object.
            let versions = try await call(client, .get, "/v1/vaults/\(vaultID)/secret-versions/api-keys/openai", token: token)
            let listed = try #require((versions.json["versions"] as? [[String: Any]])?.first)
            #expect(try canonical(listed) == canonical(put.json))
            let get = try await call(client, .get, "/v1/vaults/\(vaultID)/secrets/api-keys%2Fopenai", token: token)
            #expect(get.status == .ok)
            #expect(get.json["value"] as? String == "sk-proj-1")
            #expect(get.json["cmek_encrypted"] as? Bool == false && get.json["access_count"] as? Int == 1)
            var metadataOfGet = get.json
            for key in ["value", "access_count"] { metadataOfGet[key] = nil }
            var metadataOfPut = put.json
            metadataOfPut["access_count"] = nil
            #expect(try canonical(metadataOfGet) == canonical(metadataOfPut))
            #expect(try canonical(get.json["metadata"] as? [String: Any] ?? [:]) == #"{"env":"prod","n":2}"#)
        }
    }

    @Test func badInputIsAProblemNeverAServerError() async throws {
        try await withApp { client in
            let token = try await signup(client)
            let vaultID = try #require(
                try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"v"}"#).json["id"] as? String)
            let secret = "/v1/vaults/\(vaultID)/secrets/a/b"
            expectProblem(try await call(client, .put, secret, token: token, body: "{not json"), .badRequest)
            expectProblem(try await call(client, .put, secret, token: token, body: #"{"value":1}"#), .badRequest)
            expectProblem(try await call(client, .put, secret, token: token, body: #"{"type":"x","value":"v"}"#), .badRequest)
            expectProblem(try await call(client, .put, secret, token: token, body: #"{"value":"v","metadata":[1]}"#), .badRequest)
            expectProblem(try await call(client, .put, secret, token: token, body: #"{"value":"v","max_access_count":0}"#), .badRequest)
            expectProblem(try await call(client, .put, secret, token: token, body: #"{"value":"v","expires_at":"soon"}"#), .badRequest)
            expectProblem(try await call(client, .put, secret, token: token, body: ""), .badRequest)
            let huge = #"{"value":""# + String(repeating: "x", count: 1 << 21) + #""}"#
            expectProblem(try await call(client, .put, secret, token: token, body: huge), .contentTooLarge)
            expectProblem(try await call(client, .put, "/v1/vaults/\(vaultID)/secrets/a/../b", token: token, body: #"{"value":"v"}"#), .badRequest)
            expectProblem(try await call(client, .get, secret, token: token), .notFound)
            expectProblem(try await call(client, .get, secret), .unauthorized)
            expectProblem(try await call(client, .get, secret, token: token + "x"), .unauthorized)
            expectProblem(try await call(client, .post, "/v1/auth/token", body: #"{"email":"a@b.c"}"#), .badRequest)
            expectProblem(
                try await call(client, .post, "/v1/auth/signup", body: #"{"email":"w@example.com","password":"weak"}"#),
                .badRequest)
        }
    }

    @Test func anotherOrgsVaultIsIndistinguishableFromAMissingOne() async throws {
        try await withApp { client in
            let alice = try await signup(client)
            let mallory = try await signup(client)
            let vaultID = try #require(
                try await call(client, .post, "/v1/vaults", token: alice, body: #"{"name":"v"}"#).json["id"] as? String)
            try await call(client, .put, "/v1/vaults/\(vaultID)/secrets/k", token: alice, body: #"{"value":"v"}"#)
            for id in [vaultID, UUID().uuidString.lowercased()] {
                let get = try await call(client, .get, "/v1/vaults/\(id)", token: mallory)
                expectProblem(get, .notFound)
                #expect(get.json["detail"] as? String == "Vault not found")
                let secret = try await call(client, .get, "/v1/vaults/\(id)/secrets/k", token: mallory)
                expectProblem(secret, .notFound)
                #expect(secret.json["detail"] as? String == "Vault not found")
            }
            let list = try await call(client, .get, "/v1/vaults", token: mallory)
            #expect((list.json["vaults"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func wrongPasswordAndUnknownEmailLookTheSame() async throws {
        try await withApp { client in
            _ = try await signup(client, email: "known@example.com")
            let unknown = try await call(
                client, .post, "/v1/auth/token", body: #"{"email":"nobody@example.com","password":"\#(Self.password)"}"#)
            let wrong = try await call(
                client, .post, "/v1/auth/token", body: #"{"email":"known@example.com","password":"Wrong-Horse-9-Battery!"}"#)
            expectProblem(unknown, .unauthorized)
            expectProblem(wrong, .unauthorized)
            #expect(unknown.json["detail"] as? String == "Invalid credentials")
            #expect(wrong.json["detail"] as? String == unknown.json["detail"] as? String)
            expectProblem(try await call(client, .get, "/v1/auth/me"), .unauthorized)
        }
    }

    @Test func closedSignupRefusesNewAccounts() async throws {
        try await withApp(signup: "closed") { client in
            let reply = try await call(
                client, .post, "/v1/auth/signup", body: #"{"email":"a@example.com","password":"\#(Self.password)"}"#)
            expectProblem(reply, .forbidden)
        }
    }

    @Test func configurationPrefersFlagsThenEnvironmentThenDefaults() throws {
        let environment = ["KEYHOLD_PORT": "9000", "KEYHOLD_HOST": "0.0.0.0", "KEYHOLD_MASTER_KEY": "MASTER-KEY-CANARY"]
        let fromEnvironment = try KeyholdConfiguration(environment: environment)
        #expect(fromEnvironment.port == 9000 && fromEnvironment.host == "0.0.0.0")
        #expect(fromEnvironment.dataDirectory == "./keyhold-data" && fromEnvironment.signup == .open)
        #expect(!fromEnvironment.description.contains("MASTER-KEY-CANARY"), "the master key is never printed")
        let fromFlags = try KeyholdConfiguration(flags: .init(port: 7000), environment: environment)
        #expect(fromFlags.port == 7000 && fromFlags.host == "0.0.0.0")
        #expect(throws: (any Error).self) { try KeyholdConfiguration(environment: ["KEYHOLD_PORT": "http"]) }
        #expect(throws: (any Error).self) { try KeyholdConfiguration(flags: .init(signup: "maybe"), environment: [:]) }
    }

    @Test func trustedProxiesComeFromRepeatedFlagsOrACommaSeparatedVariable() throws {
        #expect(try KeyholdConfiguration(environment: [:]).trustedProxies.isEmpty)
        let environment = ["KEYHOLD_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1,fd00::/8"]
        #expect(try KeyholdConfiguration(environment: environment).trustedProxies.map(\.description)
            == ["10.0.0.0/8", "192.0.2.1/32", "fd00:0:0:0:0:0:0:0/8"])
        let fromFlags = try KeyholdConfiguration(flags: .init(trustedProxies: ["127.0.0.1"]), environment: environment)
        #expect(fromFlags.trustedProxies.map(\.description) == ["127.0.0.1/32"], "flags replace the variable")
        #expect(fromFlags.description.contains("trusted_proxies=127.0.0.1/32"))
        #expect(throws: (any Error).self) { try KeyholdConfiguration(environment: ["KEYHOLD_TRUSTED_PROXIES": "proxy.local"]) }
        #expect(throws: (any Error).self) { try KeyholdConfiguration(flags: .init(trustedProxies: ["10.0.0.0/40"]), environment: [:]) }
    }
}

import Foundation
import HummingbirdTesting
import Testing

extension HTTPTests {
    @Test func agentReadsExactlyWhatItsPolicyGrantsUntilRevoked() async throws {
        try await withApp { client in
            let owner = try await signup(client)
            let vaultID = try #require(try await call(client, .post, "/v1/vaults", token: owner, body: #"{"name":"v"}"#).json["id"] as? String)
            for path in ["prod/db", "staging/db"] {
                try await call(client, .put, "/v1/vaults/\(vaultID)/secrets/\(path)", token: owner, body: #"{"value":"v-\#(path)"}"#)
            }
            let created = try await call(client, .post, "/v1/agents", token: owner, body: #"{"name":"bot"}"#)
            #expect(created.status == .created)
            let agent = try #require(created.json["agent"] as? [String: Any])
            let agentID = try #require(agent["id"] as? String)
            let key = try #require(created.json["api_key"] as? String)
            #expect(key.hasPrefix("ocv_") && key.count == 47)

            let exchange = try await call(client, .post, "/v1/auth/agent-token", body: #"{"api_key":"\#(key)"}"#)
            #expect(exchange.json["agent_id"] as? String == agentID)
            #expect(exchange.json["expires_in"] as? Int == 3600)
            let token = try #require(exchange.json["access_token"] as? String)

            expectProblem(try await call(client, .get, "/v1/vaults/\(vaultID)/secrets/prod/db", token: token), .notFound)
            let policy = try await call(
                client, .post, "/v1/vaults/\(vaultID)/policies", token: owner,
                body: #"{"secret_path_pattern":"prod/**","principal_type":"agent","principal_id":"\#(agentID)","permissions":["read"]}"#)
            #expect(policy.status == .created)
            let policyID = try #require(policy.json["id"] as? String)

            #expect(try await call(client, .get, "/v1/vaults/\(vaultID)/secrets/prod/db", token: token).json["value"] as? String == "v-prod/db")
            let denied = try await call(client, .get, "/v1/vaults/\(vaultID)/secrets/staging/db", token: token)
            let missing = try await call(client, .get, "/v1/vaults/\(vaultID)/secrets/staging/none", token: token)
            expectProblem(denied, .forbidden)
            expectProblem(missing, .forbidden)
            #expect(denied.json["detail"] as? String == missing.json["detail"] as? String)
            expectProblem(try await call(client, .put, "/v1/vaults/\(vaultID)/secrets/prod/db", token: token, body: #"{"value":"x"}"#), .forbidden)
            let list = try await call(client, .get, "/v1/vaults/\(vaultID)/secrets", token: token)
            #expect((list.json["secrets"] as? [[String: Any]])?.compactMap { $0["path"] as? String } == ["prod/db"])
            expectProblem(try await call(client, .post, "/v1/agents", token: token, body: #"{"name":"child"}"#), .forbidden)

            #expect(try await call(client, .delete, "/v1/vaults/\(vaultID)/policies/\(policyID)", token: owner).status == .noContent)
            expectProblem(try await call(client, .get, "/v1/vaults/\(vaultID)/secrets/prod/db", token: token), .notFound)

            let rotated = try await call(client, .post, "/v1/agents/\(agentID)/rotate-key", token: owner)
            #expect((rotated.json["api_key"] as? String) != key)
            expectProblem(try await call(client, .get, "/v1/agents/me", token: token), .unauthorized)
            expectProblem(try await call(client, .post, "/v1/auth/agent-token", body: #"{"api_key":"\#(key)"}"#), .unauthorized)
        }
    }

    @Test func revokedAndRefreshedTokensStopWorking() async throws {
        try await withApp { client in
            let email = "r-\(UUID().uuidString.prefix(8))@example.com"
            _ = try await signup(client, email: email)
            let login = try await call(client, .post, "/v1/auth/token", body: #"{"email":"\#(email)","password":"\#(Self.password)"}"#)
            let token = try #require(login.json["access_token"] as? String)
            let refresh = try #require(login.json["refresh_token"] as? String)
            #expect(try await call(client, .get, "/v1/auth/me", token: token).status == .ok)

            let renewed = try await call(client, .post, "/v1/auth/refresh", body: #"{"refresh_token":"\#(refresh)"}"#)
            let next = try #require(renewed.json["refresh_token"] as? String)
            expectProblem(try await call(client, .post, "/v1/auth/refresh", body: #"{"refresh_token":"\#(refresh)"}"#), .unauthorized)
            expectProblem(try await call(client, .post, "/v1/auth/refresh", body: #"{"refresh_token":"\#(next)"}"#), .unauthorized)

            // The reuse ended the family: an access token issued in it mints no new refresh token either.
            expectProblem(try await call(client, .post, "/v1/auth/refresh", token: token), .unauthorized)
            let again = try await call(client, .post, "/v1/auth/token", body: #"{"email":"\#(email)","password":"\#(Self.password)"}"#)
            let second = try #require(again.json["access_token"] as? String)
            let bodiless = try await call(client, .post, "/v1/auth/refresh", token: second)
            let newToken = try #require(bodiless.json["access_token"] as? String)
            expectProblem(try await call(client, .get, "/v1/auth/me", token: second), .unauthorized)
            #expect(try await call(client, .delete, "/v1/auth/token", token: newToken).status == .noContent)
            expectProblem(try await call(client, .get, "/v1/auth/me", token: newToken), .unauthorized)
        }
    }
}

extension HTTPTests {
    @Test func emptyPathSegmentsAreRefusedBeforeRouting() async throws {
        try await withApp { client in
            let token = try await signup(client)
            let vaultID = try #require(try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"v"}"#).json["id"] as? String)
            for path in ["/v1/vaults/\(vaultID)//secrets/a/b", "/v1/vaults/\(vaultID)/secrets/a//b", "//v1/vaults/\(vaultID)/secrets/a/b"] {
                expectProblem(try await call(client, .put, path, token: token, body: #"{"value":"x"}"#), .badRequest)
                expectProblem(try await call(client, .get, path, token: token), .badRequest)
            }
            let list = try await call(client, .get, "/v1/vaults/\(vaultID)/secrets", token: token)
            #expect((list.json["secrets"] as? [Any])?.isEmpty == true, "nothing was stored")
        }
    }

    @Test func auditPagesByOffsetOnlySoFar() async throws {
        try await withApp { client in
            let token = try await signup(client)
            #expect(try await call(client, .get, "/v1/audit/events?offset=10000", token: token).status == .ok)
            expectProblem(try await call(client, .get, "/v1/audit/events?offset=10001", token: token), .badRequest)
            expectProblem(try await call(client, .get, "/v1/audit/events?offset=1000000", token: token), .badRequest)
        }
    }
}

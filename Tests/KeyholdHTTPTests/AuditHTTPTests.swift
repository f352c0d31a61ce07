import Foundation
import HummingbirdTesting
import SQLiteNIO
import Testing

extension HTTPTests {
    func sql(_ dir: String, _ statement: String) async throws {
        let connection = try await SQLiteConnection.open(storage: .file(path: dir + "/keyhold.sqlite"))
        _ = try await connection.query(statement, [])
        try await connection.close()
    }

    @Test func everyChangeIsOnRecordAndTamperingIsFound() async throws {
        try await withApp { client, dir in
            let token = try await signup(client)
            let vaultID = try #require(try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"v"}"#).json["id"] as? String)
            try await call(client, .put, "/v1/vaults/\(vaultID)/secrets/db/password", token: token, body: #"{"value":"VALUE-CANARY-1"}"#)
            try await call(client, .get, "/v1/vaults/\(vaultID)/secrets/db/password", token: token)
            let events = try await call(client, .get, "/v1/audit/events", token: token)
            let list = try #require(events.json["events"] as? [[String: Any]])
            #expect(list.compactMap { $0["action"] as? String } == ["secret.read", "secret.write", "vault.create", "auth.success", "user.signup"])
            let text = String(decoding: try JSONSerialization.data(withJSONObject: list), as: UTF8.self)
            #expect(!text.contains("VALUE-CANARY-1") && !text.contains(Self.password) && !text.contains(token))
            let filtered = try await call(client, .get, "/v1/audit/events?action=secret.write", token: token)
            #expect((filtered.json["events"] as? [[String: Any]])?.count == 1)
            expectProblem(try await call(client, .get, "/v1/audit/events?from=yesterday", token: token), .badRequest)

            let verified = try await call(client, .get, "/v1/audit/verify", token: token)
            #expect(verified.json["chain_valid"] as? Bool == true)
            #expect(verified.json["events_verified"] as? Int == 5)

            let readEvent = try #require(list.first?["id"] as? String)
            let writeEvent = try #require(list[1]["id"] as? String)
            try await sql(dir, "UPDATE audit_events SET ip_address = '10.9.9.9' WHERE id = '\(writeEvent)'")
            let broken = try await call(client, .get, "/v1/audit/verify", token: token)
            #expect(broken.json["chain_valid"] as? Bool == false)
            #expect(broken.json["broken_at_event_id"] as? String == writeEvent)
            try await sql(dir, "UPDATE audit_events SET ip_address = NULL WHERE id = '\(writeEvent)'")
            #expect(try await call(client, .get, "/v1/audit/verify", token: token).json["chain_valid"] as? Bool == true)
            try await sql(dir, "DELETE FROM audit_events WHERE id = '\(writeEvent)'")
            let gap = try await call(client, .get, "/v1/audit/verify", token: token)
            #expect(gap.json["broken_at_event_id"] as? String == readEvent)
        }
    }

    @Test func aRequestThatCannotBeAuditedFailsAndChangesNothing() async throws {
        try await withApp { client, dir in
            let token = try await signup(client)
            let vaultID = try #require(try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"v"}"#).json["id"] as? String)
            let secret = "/v1/vaults/\(vaultID)/secrets/db/password"
            try await call(client, .put, secret, token: token, body: #"{"value":"first"}"#)
            try await sql(dir, "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'refused'); END")
            expectProblem(try await call(client, .put, secret, token: token, body: #"{"value":"second"}"#), .serviceUnavailable)
            expectProblem(try await call(client, .get, secret, token: token), .serviceUnavailable)
            expectProblem(try await call(client, .delete, secret, token: token), .serviceUnavailable)
            expectProblem(try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"w"}"#), .serviceUnavailable)
            try await sql(dir, "DROP TRIGGER audit_refused")
            let read = try await call(client, .get, secret, token: token)
            #expect(read.json["value"] as? String == "first")
            #expect(read.json["version"] as? Int == 1)
            #expect((try await call(client, .get, "/v1/vaults", token: token).json["vaults"] as? [Any])?.count == 1)
        }
    }

    @Test func linkSharesOpenWithTheirPassphraseUntilExhausted() async throws {
        try await withApp { client in
            let token = try await signup(client)
            let vaultID = try #require(try await call(client, .post, "/v1/vaults", token: token, body: #"{"name":"v"}"#).json["id"] as? String)
            let put = try await call(client, .put, "/v1/vaults/\(vaultID)/secrets/db/password", token: token, body: #"{"value":"shared-value"}"#)
            let secretID = try #require(put.json["id"] as? String)
            let tomorrow = Date().addingTimeInterval(86_400).formatted(.iso8601)
            let created = try await call(
                client, .post, "/v1/secrets/\(secretID)/share", token: token,
                body: #"{"recipient_type":"anyone_with_link","expires_at":"\#(tomorrow)","max_access_count":1,"passphrase":"open sesame"}"#)
            #expect(created.status == .created)
            let shareID = try #require(created.json["id"] as? String)
            #expect((created.json["share_url"] as? String)?.hasSuffix("/v1/share/\(shareID)") == true)
            #expect(created.json["passphrase"] == nil)
            expectProblem(try await call(client, .get, "/v1/share/\(shareID)", body: #"{"passphrase":"wrong"}"#), .forbidden)
            let opened = try await call(client, .get, "/v1/share/\(shareID)", body: #"{"passphrase":"open sesame"}"#)
            #expect(opened.json["value"] as? String == "shared-value")
            expectProblem(try await call(client, .get, "/v1/share/\(shareID)", body: #"{"passphrase":"open sesame"}"#), .gone)
            #expect(try await call(client, .delete, "/v1/share/\(shareID)", token: token).status == .noContent)
            expectProblem(try await call(client, .get, "/v1/share/\(shareID)"), .notFound)
            expectProblem(
                try await call(client, .post, "/v1/secrets/\(UUID().uuidString)/share", token: token,
                               body: #"{"recipient_type":"anyone_with_link","expires_at":"\#(tomorrow)"}"#), .notFound)
            expectProblem(
                try await call(client, .post, "/v1/secrets/\(secretID)/share", token: token, body: #"{"recipient_type":"anyone_with_link"}"#),
                .badRequest)
        }
    }
}

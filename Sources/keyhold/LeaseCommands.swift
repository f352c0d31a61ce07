import ArgumentParser
import Foundation
import KeyholdClient

/// `keyhold lease`: capability leases (the use of a secret against one API without seeing it), and narrowing a
/// lease token offline.
struct LeaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease", abstract: "Create, list, revoke and narrow capability leases.",
        discussion: """
            A lease lets its holder call one API with a secret injected by the server (POST /v1/proxy, the MCP tool \
            proxy_request, or `keyhold run --proxy`), without the value ever reaching the holder.
            """,
        subcommands: [Create.self, List.self, Revoke.self, Narrow.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lease a secret's use to an agent (or yourself); prints the lease's token, once.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The secret's path.") var path: String
        @Option(help: "The destination host: a DNS name, an IPv4 address, or *.suffix.") var host: String
        @Option(help: "The destination port (default: the scheme's).") var port: Int?
        @Option(help: "https (default), or http where the server allows private destinations.") var scheme = "https"
        @Option(name: .customLong("method"), help: "An allowed method (repeat for more).") var methods: [String] = []
        @Option(help: "Only paths at or below this one, whole segments (default /).") var pathPrefix: String?
        @Option(help: "Inject as this header, with {{value}} where the secret goes: 'Authorization: Bearer {{value}}'.")
        var header: String?
        @Option(help: "Inject as this query parameter.") var query: String?
        @Option(help: "Inject as HTTP basic authentication with this user name.") var basic: String?
        @Option(help: "How many uses (default: no limit but the expiry).") var maxUses: Int?
        @Option(help: "Seconds until it expires (default 3600, at most 30 days).") var ttl: Int?
        @Option(help: "The agent who may use it (default: you).") var agent: String?
        @Option(help: "A note on what it is for.") var description: String?
        @Flag(help: "Print the server's JSON (with the token).") var json = false

        func run() async throws {
            try await reportingFailure {
                let injection: [String: Any]
                switch (header, query, basic) {
                case (let header?, nil, nil):
                    guard let colon = header.firstIndex(of: ":") else {
                        throw ClientError("--header is 'Name: template', e.g. 'Authorization: Bearer {{value}}'")
                    }
                    injection = [
                        "type": "header", "name": header[..<colon].trimmingCharacters(in: .whitespaces),
                        "template": header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces),
                    ]
                case (nil, let name?, nil): injection = ["type": "query", "name": name]
                case (nil, nil, let user?): injection = ["type": "basic", "username": user]
                default: throw ClientError("give one of --header, --query and --basic")
                }
                guard !methods.isEmpty else { throw ClientError("give at least one --method") }
                var body: [String: Any] = [
                    "path": path, "host": host, "scheme": scheme, "methods": methods.map { $0.uppercased() },
                    "injection": injection,
                ]
                if let port { body["port"] = port }
                if let pathPrefix { body["path_prefix"] = pathPrefix }
                if let maxUses { body["max_uses"] = maxUses }
                if let ttl { body["ttl_seconds"] = ttl }
                if let agent {
                    body["principal_type"] = "agent"
                    body["principal_id"] = agent
                }
                if let description { body["description"] = description }
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                let reply = try await context.api().call(
                    "POST", "/v1/vaults/\(KeyholdAPI.escape(vaultID))/leases", json: body)
                if json { return Terminal.printJSON(reply) }
                FileHandle.standardError.write(
                    Data("lease \(text(reply.object["id"])): placeholder keyhold-lease:\(text(reply.object["id"]))\n".utf8))
                print(text(reply.object["token"]))
            }
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                let reply = try await context.api().call("GET", "/v1/vaults/\(KeyholdAPI.escape(vaultID))/leases")
                if json { return Terminal.printJSON(reply) }
                let leases = reply.object["leases"] as? [JSONObject] ?? []
                Terminal.table(
                    ["ID", "PATH", "DESTINATION", "USES", "STATUS", "EXPIRES"],
                    leases.map { lease in
                        let port = lease["port"] as? Int
                        let uses = "\(text(lease["uses"]))/" + ((lease["max_uses"] as? Int).map(String.init) ?? "-")
                        return [
                            text(lease["id"]), text(lease["path"]),
                            "\(text(lease["scheme"]))://\(text(lease["host"]))" + (port.map { ":\($0)" } ?? ""), uses,
                            text(lease["status"]), text(lease["expires_at"]),
                        ]
                    })
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The lease id.") var id: String

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                try await context.api().call(
                    "DELETE", "/v1/vaults/\(KeyholdAPI.escape(vaultID))/leases/\(KeyholdAPI.escape(id))")
                print("Revoked lease \(id)")
            }
        }
    }

    struct Narrow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Narrow a lease token read from stdin, without the server; prints the narrower token.",
            discussion: """
                Each option appends a caveat the server checks on every use: the token can only lose power. Hand \
                the narrower token on; tokens narrowed from one share its use limit.
                """)
        @Option(help: "At most this many uses of the new token (and of any narrowed from it).") var uses: Int?
        @Option(help: "Unusable after this many seconds.") var expiresIn: Int?
        @Option(name: .customLong("method"), help: "Only this method (repeat for more).") var methods: [String] = []
        @Option(help: "Only paths at or below this one.") var pathPrefix: String?
        @Option(help: "Only this host (or *.suffix).") var host: String?

        func run() async throws {
            try await reportingFailure {
                let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                var token = input.trimmingCharacters(in: .whitespacesAndNewlines)
                var caveats: [String] = []
                if let uses {
                    guard uses >= 0 else { throw ClientError("--uses must be 0 or more") }
                    caveats.append("uses<=\(uses)")
                }
                if let expiresIn {
                    guard expiresIn > 0 else { throw ClientError("--expires-in must be positive") }
                    caveats.append("expires<=\(Int64(Date().timeIntervalSince1970 * 1000) + Int64(expiresIn) * 1000)")
                }
                if !methods.isEmpty { caveats.append("methods=" + Swift.Set(methods.map { $0.uppercased() }).sorted().joined(separator: ",")) }
                if let pathPrefix { caveats.append("path_prefix=\(pathPrefix)") }
                if let host { caveats.append("host=\(host.lowercased())") }
                guard !caveats.isEmpty else { throw ClientError("give at least one of --uses, --expires-in, --method, --path-prefix, --host") }
                for caveat in caveats { token = try LeaseProxy.attenuate(token, with: caveat) }
                print(token)
            }
        }
    }
}

import ArgumentParser
import Foundation
import KeyholdClient

#if canImport(Glibc)
import Glibc
#endif

/// Options every client command takes.
struct ClientOptions: ParsableArguments {
    @Option(help: "Server URL (KEYHOLD_URL; default: the one `keyhold login` saved, else http://127.0.0.1:8443).")
    var url: String?

    func context() throws -> ClientContext { try ClientContext(url: url) }
}

struct VaultOption: ParsableArguments {
    @Option(help: "Vault id (KEYHOLD_VAULT; default: the one `keyhold vault use` saved).") var vault: String?
}

/// Runs a client command: a failure is one line on stderr (`keyhold: …`, the server's detail) and exit code 1.
func reportingFailure(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ClientError {
        FileHandle.standardError.write(Data("keyhold: \(error)\n".utf8))
        throw ExitCode(1)
    } catch let error as ChildProcess.SpawnError {
        FileHandle.standardError.write(Data("keyhold: \(error)\n".utf8))
        throw ExitCode(error.exitCode)
    }
}

enum Terminal {
    static var stdinIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }

    /// A line typed at the terminal (without echo for secrets), or the next line of stdin when it is not one.
    static func line(_ label: String, secret: Bool) throws -> String {
        guard stdinIsTerminal else {
            guard let line = readLine(strippingNewline: true) else {
                throw ClientError("expected \(label.lowercased()) on stdin")
            }
            return line
        }
        FileHandle.standardError.write(Data("\(label): ".utf8))
        var saved = termios()
        let hidden = secret && tcgetattr(STDIN_FILENO, &saved) == 0
        if hidden {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        }
        defer {
            if hidden {
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
                FileHandle.standardError.write(Data("\n".utf8))
            }
        }
        guard let line = readLine(strippingNewline: true) else { throw ClientError("no \(label.lowercased()) given") }
        return line
    }

    static func printJSON(_ reply: KeyholdAPI.Reply) {
        FileHandle.standardOutput.write(reply.body)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    /// Columns padded to their widest cell.
    static func table(_ headers: [String], _ rows: [[String]]) {
        let all = [headers] + rows
        let widths = headers.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        for row in all {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }
            print(cells.joined(separator: "  "))
        }
    }
}

func text(_ value: Any?) -> String {
    switch value {
    case let string as String: string
    case let number as NSNumber: number.stringValue
    case nil, is NSNull: "-"
    default: "\(value!)"
    }
}

// MARK: login, logout, whoami

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sign in and save the session (email and password, a personal API key, or an agent key).",
        discussion: "Secrets are read from the terminal without echo, or as lines on stdin; never from arguments.")

    @OptionGroup var client: ClientOptions
    @Option(help: "The account's email (asked when absent).") var email: String?
    @Flag(name: .customLong("api-key"), help: "Sign in with a personal `1ck_` API key, read from the terminal or stdin.")
    var apiKey = false
    @Option(name: .customLong("agent-id"), help: "Sign in as this agent with its `ocv_` key, read from the terminal or stdin.")
    var agentID: String?

    func run() async throws {
        try await reportingFailure {
            var context = try client.context()
            let api = context.anonymous
            var session: ClientConfig.Session
            let who: String
            if apiKey {
                let key = try Terminal.line("API key", secret: true)
                try await api.call("POST", "/v1/auth/api-key-token", json: ["api_key": key])
                session = .init(kind: .apiKey)
                session.apiKey = key
                who = "an API key"
            } else if let agentID {
                let key = try Terminal.line("Agent API key", secret: true)
                let issued = try await ClientContext.agentToken(api, agentID: agentID, key: key)
                session = .init(kind: .agent)
                session.agentID = agentID
                session.agentAPIKey = key
                session.accessToken = issued.token
                session.expiresAt = issued.expiresAt
                who = "agent \(agentID)"
            } else {
                let email = try email ?? Terminal.line("Email", secret: false)
                let password = try Terminal.line("Password", secret: true)
                let reply = try await api.call("POST", "/v1/auth/token", json: ["email": email, "password": password])
                session = .init(kind: .password)
                session.email = email
                session.accessToken = reply.object["access_token"] as? String
                session.refreshToken = reply.object["refresh_token"] as? String
                session.expiresAt = Date().timeIntervalSince1970 + Double(reply.object["expires_in"] as? Int ?? 900)
                var random = SystemRandomNumberGenerator()
                session.fallbackSecret = (0..<4).map { _ in String(random.next(), radix: 16) }.joined()
                who = email
            }
            context.config.url = context.url
            context.config.session = session
            try context.config.save(to: context.configFile)
            print("Logged in to \(context.url) as \(who)")
        }
    }
}

struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "End the saved session (its access token and refresh tokens) and forget it.")

    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await reportingFailure {
            var context = try client.context()
            guard let session = context.config.session else {
                print("Not logged in")
                return
            }
            if session.kind != .apiKey, let token = session.accessToken {
                // Best effort: an expired token has nothing left to revoke.
                _ = try? await context.anonymous.with(bearer: token).send("DELETE", "/v1/auth/token")
            }
            context.config.session = nil
            try context.config.save(to: context.configFile)
            print(session.kind == .apiKey ? "Logged out (the API key itself stays valid until you delete it)" : "Logged out")
        }
    }
}

struct Whoami: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Who the current credentials are.")

    @OptionGroup var client: ClientOptions
    @Flag(help: "Print the server's JSON.") var json = false

    func run() async throws {
        try await reportingFailure {
            var context = try client.context()
            let api = try await context.api()
            let person = try await api.send("GET", "/v1/auth/me")
            if person.status == 200 {
                if json { return Terminal.printJSON(person) }
                let me = person.object
                print("\(text(me["email"])) (\(text(me["role"])) of org \(text(me["org_id"])), user \(text(me["id"])))")
                return
            }
            let agent = try await api.call("GET", "/v1/agents/me")
            if json { return Terminal.printJSON(agent) }
            print("agent \(text(agent.object["id"])) (\(text(agent.object["name"])))")
        }
    }
}

// MARK: vaults

struct VaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault", abstract: "List, create, inspect, delete and choose vaults.",
        subcommands: [List.self, Create.self, Get.self, Delete.self, Use.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let reply = try await context.api().call("GET", "/v1/vaults")
                if json { return Terminal.printJSON(reply) }
                let vaults = reply.object["vaults"] as? [JSONObject] ?? []
                Terminal.table(["ID", "NAME", "CREATED"], vaults.map { [text($0["id"]), text($0["name"]), text($0["created_at"])] })
            }
        }
    }

    struct Create: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @Argument(help: "The vault's name.") var name: String
        @Option(help: "A description.") var description: String?
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                var body: [String: Any] = ["name": name]
                if let description { body["description"] = description }
                let reply = try await context.api().call("POST", "/v1/vaults", json: body)
                if json { return Terminal.printJSON(reply) }
                print(text(reply.object["id"]))
            }
        }
    }

    struct Get: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @Argument(help: "The vault id.") var id: String
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let reply = try await context.api().call("GET", "/v1/vaults/\(KeyholdAPI.escape(id))")
                if json { return Terminal.printJSON(reply) }
                for key in ["id", "name", "description", "created_at"] { print("\(key): \(text(reply.object[key]))") }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @Argument(help: "The vault id.") var id: String
        @Flag(help: "Do not ask: delete the vault, its secrets and its keys.") var yes = false

        func run() async throws {
            try await reportingFailure {
                if !yes {
                    guard Terminal.stdinIsTerminal else {
                        throw ClientError("deleting a vault destroys its secrets: pass --yes to confirm")
                    }
                    let typed = try Terminal.line("Type the vault id to delete it and all its secrets", secret: false)
                    guard typed == id else { throw ClientError("not confirmed; nothing was deleted") }
                }
                var context = try client.context()
                try await context.api().call("DELETE", "/v1/vaults/\(KeyholdAPI.escape(id))")
                print("Deleted vault \(id)")
            }
        }
    }

    struct Use: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a vault the default for later commands.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The vault id.") var id: String

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                try await context.api().call("GET", "/v1/vaults/\(KeyholdAPI.escape(id))")
                context.config.vault = id
                try context.config.save(to: context.configFile)
                print("Using vault \(id)")
            }
        }
    }
}

// MARK: secrets

struct SecretCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secret", abstract: "Read, write and manage secrets.",
        subcommands: [List.self, Get.self, Set.self, Delete.self, Rotate.self, Versions.self, Describe.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Option(help: "Only paths starting with this.") var prefix: String?
        @Flag(help: "Print JSON: {\"secrets\": [...]} (metadata, never values).") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let items = try await context.api().listSecrets(vault: context.vault(vault.vault), prefix: prefix)
                if json {
                    let data = try JSONSerialization.data(
                        withJSONObject: ["secrets": items], options: [.sortedKeys, .withoutEscapingSlashes])
                    return print(String(decoding: data, as: UTF8.self))
                }
                Terminal.table(["PATH", "TYPE", "VERSION"], items.map { [text($0["path"]), text($0["type"]), text($0["version"])] })
            }
        }
    }

    struct Get: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The secret's path.") var path: String
        @Option(help: "A version number (default: the latest).") var version: Int?
        @Flag(help: "Print the bare value only.") var quiet = false
        @Flag(help: "Print the server's JSON (with the value).") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let api = try await context.api()
                let vaultID = try context.vault(vault.vault)
                let reply = try await api.call("GET", KeyholdAPI.secretRoute(vault: vaultID, path: path, version: version))
                if json { return Terminal.printJSON(reply) }
                let secret = reply.object
                if quiet { return print(text(secret["value"])) }
                for key in ["path", "type", "version"] { print("\(key): \(text(secret[key]))") }
                print("value: \(text(secret["value"]))")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a new version. The value comes from stdin or a prompt, not from arguments (unless --value).")
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The secret's path.") var path: String
        @Option(help: "The type (api_key, password, env_bundle, …; default: the previous version's).") var type: String?
        @Option(help: "The value itself (visible to other users of this machine in the process list).") var value: String?
        @Option(help: "When it expires (ISO 8601).") var expiresAt: String?
        @Option(help: "How many reads it allows.") var maxAccessCount: Int?
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                let secretValue: String
                if let value {
                    secretValue = value
                } else if Terminal.stdinIsTerminal {
                    secretValue = try Terminal.line("Value", secret: true)
                } else {
                    var data = FileHandle.standardInput.readDataToEndOfFile()
                    if data.last == UInt8(ascii: "\n") { data.removeLast() }
                    secretValue = String(decoding: data, as: UTF8.self)
                }
                guard !secretValue.isEmpty else { throw ClientError("no value given: nothing was stored") }
                var body: [String: Any] = ["value": secretValue]
                if let type { body["type"] = type }
                if let expiresAt { body["expires_at"] = expiresAt }
                if let maxAccessCount { body["max_access_count"] = maxAccessCount }
                let reply = try await context.api().call(
                    "PUT", KeyholdAPI.route("secrets", vault: vaultID, path: path), json: body)
                if json { return Terminal.printJSON(reply) }
                print("Stored \(path) version \(text(reply.object["version"]))")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The secret's path.") var path: String

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                try await context.api().call("DELETE", KeyholdAPI.route("secrets", vault: vaultID, path: path))
                print("Deleted \(path)")
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store a new random value generated by the server (never printed).")
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The secret's path.") var path: String
        @Option(help: "Length of the value (8–1024, default 32).") var length: Int?
        @Option(help: "hex, base64, alphanumeric or ascii (default hex).") var charset: String?
        @Flag(help: "Print the server's JSON (metadata only).") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                var body: [String: Any] = [:]
                if let length { body["length"] = length }
                if let charset { body["charset"] = charset }
                let reply = try await context.api().call(
                    "POST", KeyholdAPI.route("secret-rotate", vault: vaultID, path: path), json: body)
                if json { return Terminal.printJSON(reply) }
                print("Rotated \(path) to version \(text(reply.object["version"]))")
            }
        }
    }

    struct Versions: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The secret's path.") var path: String
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                let reply = try await context.api().call(
                    "GET", KeyholdAPI.route("secret-versions", vault: vaultID, path: path))
                if json { return Terminal.printJSON(reply) }
                let versions = reply.object["versions"] as? [JSONObject] ?? []
                Terminal.table(
                    ["VERSION", "CREATED", "DISABLED"],
                    versions.map { [text($0["version"]), text($0["created_at"]), ($0["is_disabled"] as? Bool ?? false) ? "yes" : "no"] })
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The latest version's metadata, without reading the value.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The secret's path.") var path: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reportingFailure {
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                let reply = try await context.api().call(
                    "GET", KeyholdAPI.route("secret-versions", vault: vaultID, path: path))
                guard let latest = (reply.object["versions"] as? [JSONObject])?.last else {
                    throw ClientError("Secret not found", status: 404)
                }
                    if json {
                    let data = try JSONSerialization.data(withJSONObject: latest, options: [.sortedKeys, .withoutEscapingSlashes])
                    return print(String(decoding: data, as: UTF8.self))
                }
                for key in ["path", "id", "type", "version", "created_at", "expires_at", "access_count", "max_access_count"] {
                    print("\(key): \(text(latest[key]))")
                }
                print("is_disabled: \((latest["is_disabled"] as? Bool ?? false) ? "yes" : "no")")
            }
        }
    }
}

// MARK: environment

struct EnvCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env", abstract: "Secrets as environment variables: pull them into a file, push a file.",
        subcommands: [Pull.self, Push.self])

    struct Pull: AsyncParsableCommand {
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Option(help: "Only paths starting with this.") var prefix: String?
        @Option(name: [.short, .long], help: "dotenv, json or shell (default dotenv).") var format = "dotenv"
        @Option(name: [.short, .long], help: "Write to this file (mode 0600) instead of stdout.") var output: String?

        func run() async throws {
            try await reportingFailure {
                guard let format = SecretEnvironment.Format(rawValue: format) else {
                    throw ClientError("format must be dotenv, json or shell")
                }
                var context = try client.context()
                let api = try await context.api()
                let injection = Injection(
                    api: api, vault: try context.vault(vault.vault), prefix: prefix, only: nil, fileLines: [], environment: [:])
                let rendered = try SecretEnvironment.render(
                    try await injection.resolve().assignments.map { ($0.name, $0.value) }, as: format)
                guard let output else { return FileHandle.standardOutput.write(Data(rendered.utf8)) }
                let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw ClientError("cannot write \(output): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                fchmod(fd, 0o600)
                ChildProcess.writeAll(fd, Array(rendered.utf8))
            }
        }
    }

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store a dotenv file as an env_bundle secret.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var vault: VaultOption
        @Argument(help: "The dotenv file.") var file: String
        @Option(name: [.short, .long], help: "The secret's path (default config/env).") var path = "config/env"

        func run() async throws {
            try await reportingFailure {
                guard let data = FileManager.default.contents(atPath: file) else { throw ClientError("cannot read \(file)") }
                var context = try client.context()
                let vaultID = try context.vault(vault.vault)
                let reply = try await context.api().call(
                    "PUT", KeyholdAPI.route("secrets", vault: vaultID, path: path),
                    json: ["value": String(decoding: data, as: UTF8.self), "type": "env_bundle"])
                print("Stored \(path) version \(text(reply.object["version"])) (\(SecretEnvironment.parseLines(String(decoding: data, as: UTF8.self)).count) variables)")
            }
        }
    }
}

// MARK: run

/// The folder of `run --proxy`'s CA files, removed when the process exits.
nonisolated(unsafe) private var runDirectory: String?

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command with the vault's secrets (or, with --environment, its environment variables) in its environment, masked in its output.",
        discussion: """
            Secrets become variables as 1Claw's CLI names them (an env_bundle expands to its KEY=VALUE lines; a \
            secret at a/b-c becomes A_B_C). Variables whose value is keyhold://VAULT/PATH are resolved. The parent \
            environment is kept; secrets win over it, except PATH, HOME, SHELL, USER and the other reserved names. \
            The command's exit code is returned (128+n when a signal n ends it), and signals sent to keyhold are \
            passed on to it. Every injected value, and its base64, base64url, hex and URL-encoded forms, is replaced \
            by <redacted:NAME> in its stdout and stderr unless --no-masking.

            With --proxy, the command also runs behind a local proxy (HTTP_PROXY and HTTPS_PROXY point to it, and it             trusts a CA made for the run through SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and             NODE_EXTRA_CA_CERTS). A request that carries keyhold-lease:<lease id> in a header, or as a query             parameter's value, goes through the server's /v1/proxy with that lease's token, which injects the             secret: the command sees only the placeholder. The tokens come from KEYHOLD_LEASES (space- or             comma-separated) or --lease-file (one a line), never from the command line, and are not passed on to             the command. Other requests are forwarded as they are.
            """)

    @OptionGroup var client: ClientOptions
    @OptionGroup var vault: VaultOption
    @Option(help: "Only secrets whose path starts with this.") var prefix: String?
    @Option(
        help: ArgumentHelp(
            "Inject the vault's environment variables resolved for this environment (shared < vault < branch override) instead of its secrets.",
            discussion: "An agent may pass `-` for the environment it is tagged with."))
    var environment: String?
    @Option(help: "With --environment preview: the branch whose overrides apply.") var gitBranch: String?
    @Option(help: "Only these variables (comma-separated names).") var only: String?
    @Option(help: "A dotenv file whose variables are added (keyhold:// references resolved).") var envFile: String?
    @Flag(help: "Do not mask values in the command's output.") var noMasking = false
    @Flag(help: "Check for changes and restart the command when an injected value changed.") var watch = false
    @Option(help: "Seconds between checks with --watch (default 10).") var interval = 10
    @Option(help: "Seconds a restarted command has to exit after SIGTERM before SIGKILL (default 10).")
    var gracePeriod = 10
    @Option(help: "An encrypted cache of the variables: written after each successful read, used when the server cannot be reached.")
    var fallback: String?
    @Flag(help: "Run the command behind a local proxy that swaps keyhold-lease:<id> placeholders for lease uses.")
    var proxy = false
    @Option(help: "With --proxy: a file of lease tokens, one a line (besides KEYHOLD_LEASES).") var leaseFile: String?
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

    enum Outcome: Sendable {
        case exited(Int32)
        case changed(Injection.Resolved)
        case graceOver
        case stopped
    }

    func run() async throws {
        try await reportingFailure {
            guard !command.isEmpty else { throw ClientError("no command: keyhold run [options] -- CMD ARGS…") }
            guard (1...86_400).contains(interval), (0...3600).contains(gracePeriod) else {
                throw ClientError("--interval must be 1 to 86400 seconds and --grace-period 0 to 3600")
            }
            var context = try client.context()
            // Without a vault, run only resolves keyhold:// references (from the environment or --env-file).
            let defaultVault = try? context.vault(vault.vault)
            let referencesOnly = envFile != nil || context.environment.values.contains { SecretEnvironment.reference($0) != nil }
            if environment != nil, prefix != nil { throw ClientError("--prefix is for secrets; --environment injects variables") }
            if gitBranch != nil, environment == nil { throw ClientError("--git-branch needs --environment") }
            if leaseFile != nil, !proxy { throw ClientError("--lease-file needs --proxy") }
            if defaultVault == nil, vault.vault != nil || prefix != nil || environment != nil || !(referencesOnly || proxy) {
                throw ClientError("no vault: pass --vault, set KEYHOLD_VAULT, or run `keyhold vault use ID`")
            }
            var fileLines: [(String, String)] = []
            if let envFile {
                guard let data = FileManager.default.contents(atPath: envFile) else { throw ClientError("cannot read \(envFile)") }
                fileLines = SecretEnvironment.parseLines(String(decoding: data, as: UTF8.self))
            }
            let wanted = only.map { Swift.Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
            var resolved: Injection.Resolved
            var injection: Injection?
            do {
                let api = try await context.api()
                injection = Injection(
                    api: api, vault: defaultVault, prefix: prefix, only: wanted, fileLines: fileLines,
                    environment: context.environment,
                    envVars: environment.map { .init(environment: $0 == "-" ? nil : $0, gitBranch: gitBranch) })
                resolved = try await injection!.resolve()
                if let fallback { try FallbackCache.write(resolved, to: fallback, secret: try context.credentialSecret()) }
            } catch let error as ClientError where error.unreachable && fallback != nil {
                let (cached, writtenAt) = try FallbackCache.read(from: fallback!, secret: try context.credentialSecret())
                FileHandle.standardError.write(
                    Data("keyhold: \(error.message); using the fallback cache written at \(writtenAt)\n".utf8))
                resolved = cached
            }

            var parent = context.environment
            if proxy { parent = try await startProxy(context: &context, environment: parent) }
            ChildProcess.forwardSignals()
            while true {
                let child = try start(resolved, environment: parent)
                guard watch, let injection else { throw ExitCode(await child.wait()) }
                let known = resolved
                let grace = gracePeriod
                let every = Duration.seconds(interval)
                let outcome = await withTaskGroup(of: Outcome.self) { group -> Outcome in
                    group.addTask { .exited(await child.wait()) }
                    group.addTask {
                        let warn: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
                        guard let fresh = try? await injection.nextChange(after: known, interval: every, warn: warn) else {
                            return .stopped
                        }
                        return .changed(fresh)
                    }
                    let first = await group.next() ?? .stopped
                    if case .changed = first {
                        child.signal(SIGTERM)
                        group.addTask {
                            try? await Task.sleep(for: .seconds(grace))
                            return .graceOver
                        }
                        while let next = await group.next() {
                            if case .graceOver = next { child.signal(SIGKILL) }
                            if case .exited = next { break }
                        }
                    }
                    group.cancelAll()
                    return first
                }
                switch outcome {
                case .exited(let code): throw ExitCode(code)
                case .changed(let fresh):
                    FileHandle.standardError.write(Data("keyhold: a secret changed; restarting the command\n".utf8))
                    resolved = fresh
                    if let fallback { try? FallbackCache.write(resolved, to: fallback, secret: try context.credentialSecret()) }
                case .graceOver, .stopped: throw ExitCode(1)
                }
            }
        }
    }

    /// Starts the lease proxy and returns the command's environment: the proxy's address, the run's CA (with the
    /// system's roots, so that requests it does not proxy still verify), and no lease token.
    func startProxy(context: inout ClientContext, environment: [String: String]) async throws -> [String: String] {
        var texts = [environment["KEYHOLD_LEASES"] ?? ""]
        if let leaseFile {
            guard let data = FileManager.default.contents(atPath: leaseFile) else { throw ClientError("cannot read \(leaseFile)") }
            texts.append(String(decoding: data, as: UTF8.self))
        }
        var tokens: [UUID: String] = [:]
        for text in texts {
            for token in text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" || $0 == "\t" || $0 == "\r" }) {
                guard let id = LeaseProxy.leaseID(ofToken: String(token)) else {
                    throw ClientError("KEYHOLD_LEASES and --lease-file hold lease tokens (khl_…) only")
                }
                tokens[id] = String(token)
            }
        }
        let proxy = try await LeaseProxy.start(api: try await context.api(), tokens: tokens)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keyhold-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var bundle = proxy.caPEM
        for system in [environment["SSL_CERT_FILE"], "/etc/ssl/certs/ca-certificates.crt"].compactMap({ $0 }) {
            if let roots = FileManager.default.contents(atPath: system) {
                bundle += "\n" + String(decoding: roots, as: UTF8.self)
                break
            }
        }
        let bundlePath = directory.appendingPathComponent("ca-bundle.pem").path
        let caPath = directory.appendingPathComponent("run-ca.pem").path
        try Data(bundle.utf8).write(to: URL(fileURLWithPath: bundlePath))
        try Data(proxy.caPEM.utf8).write(to: URL(fileURLWithPath: caPath))
        // Removed at exit (the CA's key is never written; its certificate is worthless after the run).
        runDirectory = directory.path
        atexit { if let runDirectory { try? FileManager.default.removeItem(atPath: runDirectory) } }
        var child = environment
        child.removeValue(forKey: "KEYHOLD_LEASES")
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] { child[name] = proxy.url }
        for name in ["NO_PROXY", "no_proxy"] { child.removeValue(forKey: name) }
        for name in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] { child[name] = bundlePath }
        child["NODE_EXTRA_CA_CERTS"] = caPath
        child["KEYHOLD_LEASE_PLACEHOLDERS"] = tokens.keys.map { LeaseProxy.placeholderPrefix + $0.uuidString.lowercased() }
            .sorted().joined(separator: " ")
        return child
    }

    /// The parent's environment with the variables set (reserved names never), and the command started with its
    /// output masked.
    func start(_ resolved: Injection.Resolved, environment parent: [String: String]) throws -> ChildProcess {
        var environment = parent
        var masked: [(name: String, value: String)] = []
        for assignment in resolved.assignments where !SecretEnvironment.isReserved(assignment.name) {
            environment[assignment.name] = assignment.value
            if assignment.secret { masked.append((assignment.name, assignment.value)) }
        }
        var masker: OutputMasker?
        if !noMasking {
            let short = OutputMasker.tooShort(masked)
            if !short.isEmpty {
                FileHandle.standardError.write(
                    Data("keyhold: not masking values shorter than \(OutputMasker.minimumLength) bytes: \(short.joined(separator: ", "))\n".utf8))
            }
            masker = OutputMasker(values: masked)
        }
        return try ChildProcess.start(command, environment: environment, masker: masker)
    }
}

import Crypto
import Foundation

/// What `keyhold run` puts in a program's environment, and how it finds out that it changed.
public struct Injection: Sendable {
    /// A variable to set; `secret` ones are masked in the program's output.
    public struct Assignment: Sendable, Codable, Equatable {
        public let name: String
        public let value: String
        public let secret: Bool
    }

    public let api: KeyholdAPI
    /// The vault whose secrets are injected (nil: only references and the env file).
    public let vault: String?
    public let prefix: String?
    /// Only these names, when given.
    public let only: Set<String>?
    /// `--env-file`'s lines.
    public let fileLines: [(String, String)]
    /// The parent's environment, searched for `keyhold://` references.
    public let environment: [String: String]
    /// `--environment`: the vault's environment variables resolved for this environment (and branch) are injected
    /// instead of its secrets.
    public let envVars: EnvVarChoice?

    public struct EnvVarChoice: Sendable {
        /// nil: an agent's own environment.
        public let environment: String?
        public let gitBranch: String?

        public init(environment: String?, gitBranch: String?) {
            self.environment = environment
            self.gitBranch = gitBranch
        }
    }

    public init(
        api: KeyholdAPI, vault: String?, prefix: String?, only: Set<String>?, fileLines: [(String, String)],
        environment: [String: String], envVars: EnvVarChoice? = nil
    ) {
        self.api = api
        self.vault = vault
        self.prefix = prefix
        self.only = only
        self.fileLines = fileLines
        self.environment = environment
        self.envVars = envVars
    }

    /// The variables and the version each secret was read at (`vault|path` → version).
    public struct Resolved: Sendable, Codable, Equatable {
        public var assignments: [Assignment]
        public var versions: [String: Int]
    }

    /// Reads every secret the program gets (each read counted and audited by the server).
    public func resolve() async throws -> Resolved {
        var resolved = Resolved(assignments: [], versions: [:])
        if let vault, let envVars {
            let vars = try await api.resolveEnvironment(vault: vault, environment: envVars.environment, gitBranch: envVars.gitBranch)
            for (name, value) in vars.sorted(by: { $0.key < $1.key }) where only?.contains(name) ?? true {
                resolved.assignments.append(Assignment(name: name, value: value, secret: true))
            }
            resolved.versions[envVarsKey(vault)] = Self.fingerprint(vars)
        } else if let vault {
            for item in try await api.listSecrets(vault: vault, prefix: prefix) {
                guard let path = item["path"] as? String else { continue }
                let secret = try await read(vault: vault, path: path, into: &resolved)
                for (name, value) in SecretEnvironment.variables(
                    path: path, type: secret["type"] as? String, value: secret["value"] as? String ?? "")
                where only?.contains(name) ?? true {
                    resolved.assignments.append(Assignment(name: name, value: value, secret: true))
                }
            }
        }
        for (name, value) in fileLines { resolved.assignments.append(Assignment(name: name, value: value, secret: false)) }
        let candidates = environment.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } + fileLines
        for (name, value) in candidates {
            guard let (vault, path) = SecretEnvironment.reference(value) else { continue }
            let secret = try await read(vault: vault, path: path, into: &resolved)
            resolved.assignments.append(Assignment(name: name, value: secret["value"] as? String ?? "", secret: true))
        }
        return resolved
    }

    private func envVarsKey(_ vault: String) -> String { "env|\(vault)|\(envVars?.environment ?? "")|\(envVars?.gitBranch ?? "")" }

    /// A digest of the variables, as an Int, to tell a change from none.
    static func fingerprint(_ vars: [String: String]) -> Int {
        var hash = SHA256()
        for (name, value) in vars.sorted(by: { $0.key < $1.key }) {
            hash.update(data: Data("\(name.utf8.count):\(name)\(value.utf8.count):\(value)".utf8))
        }
        return Array(hash.finalize()).prefix(7).reduce(0) { $0 << 8 | Int($1) }
    }

    private func read(vault: String, path: String, into resolved: inout Resolved) async throws -> JSONObject {
        let secret = try await api.secret(vault: vault, path: path)
        resolved.versions["\(vault)|\(path)"] = secret["version"] as? Int ?? 0
        return secret
    }

    /// The versions the secrets have now, from metadata only (no value is read, no access counted): the vault's
    /// listing, and each referenced secret's version list.
    public func currentVersions(like known: [String: Int]) async throws -> [String: Int] {
        var versions: [String: Int] = [:]
        if let vault, let envVars {
            // Variables carry no listing of versions across shared and vault values: a resolve (one audit event)
            // tells whether anything changed.
            versions[envVarsKey(vault)] = Self.fingerprint(
                try await api.resolveEnvironment(vault: vault, environment: envVars.environment, gitBranch: envVars.gitBranch))
        } else if let vault {
            for item in try await api.listSecrets(vault: vault, prefix: prefix) {
                guard let path = item["path"] as? String else { continue }
                versions["\(vault)|\(path)"] = item["version"] as? Int ?? 0
            }
        }
        for key in known.keys where versions[key] == nil && !key.hasPrefix("env|") {
            let parts = key.split(separator: "|", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0] != vault else { continue }
            let reply = try await api.call(
                "GET", "/v1/vaults/\(KeyholdAPI.escape(parts[0]))/secret-versions/\(KeyholdAPI.escape(parts[1]))")
            versions[key] = ((reply.object["versions"] as? [JSONObject])?.last?["version"] as? Int) ?? 0
        }
        return versions
    }

    /// Polls every `interval` until a variable's value actually changed (a new version with the same value, or a
    /// server that cannot be reached for a while, changes nothing), then returns the new variables.
    public func nextChange(after current: Resolved, interval: Duration, warn: @Sendable (String) -> Void) async throws
        -> Resolved
    {
        var known = current
        var warned = false
        while true {
            try await Task.sleep(for: interval)
            do {
                guard try await currentVersions(like: known.versions) != known.versions else { continue }
                let fresh = try await resolve()
                if fresh.assignments != known.assignments { return fresh }
                known = fresh
                warned = false
            } catch let error as ClientError {
                if !warned { warn("keyhold: cannot check for changes (\(error)); still running the command") }
                warned = true
            }
        }
    }
}

/// `keyhold run --fallback FILE`: the injected variables of the last successful run, sealed with AES-256-GCM under
/// a key derived (HKDF-SHA256, random salt) from the credential in use, for when the server cannot be reached. It
/// protects the values from whoever gets the file without the credential (a copied file, a backup, another
/// account's process); not from someone who can read the credential as well (the config file or the environment).
public enum FallbackCache {
    struct Sealed: Codable {
        let version: Int
        let created_at: String
        let salt: String
        let box: String
    }

    static func key(_ secret: String, salt: Data) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Data(secret.utf8)), salt: salt,
            info: Data("keyhold run fallback v1".utf8), outputByteCount: 32)
    }

    public static func write(_ resolved: Injection.Resolved, to path: String, secret: String) throws {
        var salt = Data(count: 16)
        var random = SystemRandomNumberGenerator()
        for index in salt.indices { salt[index] = random.next() }
        let box = try AES.GCM.seal(JSONEncoder().encode(resolved), using: key(secret, salt: salt))
        guard let combined = box.combined else { throw ClientError("cannot seal the fallback cache") }
        let sealed = Sealed(
            version: 1, created_at: ISO8601DateFormatter().string(from: Date()), salt: salt.base64EncodedString(),
            box: combined.base64EncodedString())
        let data = try JSONEncoder().encode(sealed)
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ClientError("cannot write the fallback cache \(path): \(String(cString: strerror(errno)))") }
        fchmod(fd, 0o600)
        ChildProcess.writeAll(fd, Array(data))
        fsync(fd)
        close(fd)
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ClientError("cannot write the fallback cache \(path)")
        }
    }

    /// The cached variables and when they were written.
    public static func read(from path: String, secret: String) throws -> (Injection.Resolved, String) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClientError("the server cannot be reached and there is no fallback cache at \(path)")
        }
        guard let sealed = try? JSONDecoder().decode(Sealed.self, from: data), sealed.version == 1,
            let salt = Data(base64Encoded: sealed.salt), let combined = Data(base64Encoded: sealed.box),
            let box = try? AES.GCM.SealedBox(combined: combined),
            let plain = try? AES.GCM.open(box, using: key(secret, salt: salt)),
            let resolved = try? JSONDecoder().decode(Injection.Resolved.self, from: plain)
        else {
            throw ClientError("the fallback cache \(path) cannot be opened with these credentials")
        }
        return (resolved, sealed.created_at)
    }
}

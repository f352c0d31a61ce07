import Foundation
import KeyholdCore
import Logging

/// Every setting of the server, read in one place: command-line flags first, then `KEYHOLD_*` environment
/// variables, then defaults. Secrets (the master key) come from the environment only and are never printed.
public struct KeyholdConfiguration: Sendable, CustomStringConvertible {
    public enum SignupMode: String, Sendable { case open, closed }

    public var host: String
    public var port: Int
    public var dataDirectory: String
    public var signup: SignupMode
    public var bcryptCost: Int
    public var logLevel: Logger.Level
    /// The URL clients reach the server at (the issuer in discovery documents).
    public var publicURL: String
    /// Base64 or hex; from `KEYHOLD_MASTER_KEY` only.
    public var masterKey: String?

    /// Flags as given on the command line (nil when absent).
    public struct Flags: Sendable {
        public var host: String?
        public var port: Int?
        public var dataDirectory: String?
        public var signup: String?
        public var logLevel: String?
        public var publicURL: String?

        public init(
            host: String? = nil, port: Int? = nil, dataDirectory: String? = nil, signup: String? = nil,
            logLevel: String? = nil, publicURL: String? = nil
        ) {
            self.host = host
            self.port = port
            self.dataDirectory = dataDirectory
            self.signup = signup
            self.logLevel = logLevel
            self.publicURL = publicURL
        }
    }

    public init(flags: Flags = .init(), environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        func env(_ name: String) -> String? {
            guard let value = environment["KEYHOLD_" + name], !value.isEmpty else { return nil }
            return value
        }
        host = flags.host ?? env("HOST") ?? "127.0.0.1"
        let port = flags.port ?? env("PORT").map { Int($0) ?? -1 } ?? 8443
        guard (0...65535).contains(port) else {
            throw KeyholdError.badRequest("port must be between 0 and 65535")
        }
        self.port = port
        dataDirectory = flags.dataDirectory ?? env("DATA_DIR") ?? "./keyhold-data"
        guard let signup = SignupMode(rawValue: flags.signup ?? env("SIGNUP") ?? "open") else {
            throw KeyholdError.badRequest("signup must be open or closed")
        }
        self.signup = signup
        guard let cost = Int(env("BCRYPT_COST") ?? "12"), (10...16).contains(cost) else {
            throw KeyholdError.badRequest("KEYHOLD_BCRYPT_COST must be between 10 and 16")
        }
        bcryptCost = cost
        guard let level = Logger.Level(rawValue: flags.logLevel ?? env("LOG_LEVEL") ?? "info") else {
            throw KeyholdError.badRequest("log level must be one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = level
        publicURL = flags.publicURL ?? env("PUBLIC_URL") ?? "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        masterKey = env("MASTER_KEY")
    }

    public var description: String {
        "host=\(host) port=\(port) data_dir=\(dataDirectory) signup=\(signup.rawValue) bcrypt_cost=\(bcryptCost) "
            + "public_url=\(publicURL) master_key=\(masterKey == nil ? "file" : "<REDACTED>")"
    }
}

import ArgumentParser
import Foundation
import KeyholdHTTP
import Logging

@main
struct KeyholdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyhold",
        abstract: "A self-hosted secrets vault for people and AI agents, speaking the 1Claw API.",
        version: Keyhold.version,
        subcommands: [Serve.self])
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Keyhold server.")

    @Option(help: "Address to listen on (KEYHOLD_HOST, default 127.0.0.1).") var host: String?
    @Option(help: "Port to listen on (KEYHOLD_PORT, default 8443).") var port: Int?
    @Option(help: "Directory for the database and keys (KEYHOLD_DATA_DIR, default ./keyhold-data).")
    var dataDir: String?
    @Option(help: "Whether anyone may sign up: open or closed (KEYHOLD_SIGNUP, default open).") var signup: String?
    @Option(help: "Log level (KEYHOLD_LOG_LEVEL, default info).") var logLevel: String?
    @Option(help: "URL clients use to reach this server (KEYHOLD_PUBLIC_URL).") var publicURL: String?

    func run() async throws {
        let configuration: KeyholdConfiguration
        do {
            configuration = try KeyholdConfiguration(
                flags: .init(
                    host: host, port: port, dataDirectory: dataDir, signup: signup, logLevel: logLevel,
                    publicURL: publicURL))
        } catch {
            throw ValidationError("\(error)")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = configuration.logLevel
            return handler
        }
        var logger = Logger(label: "keyhold")
        logger.logLevel = configuration.logLevel
        logger.info("Starting Keyhold", metadata: ["keyhold.config": .string(configuration.description)])
        let app = try await buildApplication(configuration: configuration, logger: logger)
        try await app.runService()
    }
}


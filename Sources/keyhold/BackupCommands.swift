import ArgumentParser
import Foundation
import KeyholdCore
import KeyholdHTTP
import KeyholdServer
import Logging

/// `keyhold backup`, `keyhold restore` and `keyhold verify-backup`, run by an operator beside the server (the data
/// dir and keystore read as `serve` reads them). Each prints a JSON summary on stdout; a refusal says why on stderr
/// and exits 1.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the SQLite store while the server runs, into one file with an authenticated manifest.",
        discussion: """
            The copy is the database as of one commit, values still encrypted, checked (schema, every audit chain, \
            every key with this keystore) before the file is written. The master key and the HSM's keys are NOT in \
            the backup: keep them apart; a restore needs them. For PostgreSQL use pg_dump (see the README).
            """)
    @Option(help: "The backup file to write (mode 0600; replaced only once complete).") var to: String
    @OptionGroup var options: ServerOptions

    func run() async throws {
        let manifest = try await runReporting {
            try await Backups.backup(try options.configuration(), to: to, logger: quietLogger())
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(manifest), as: UTF8.self))
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a backup into a new data dir, after verifying it.",
        discussion: """
            The data dir must hold no database. The file's length and SHA-256 are checked before anything is \
            written; its manifest's MAC, SQLite's integrity check, the schema, the counts, every audit chain and \
            every key are checked, with the keystore the options name, before the database takes its place. With the \
            software keystore, copy master.key into the data dir first (or set KEYHOLD_MASTER_KEY).
            """)
    @Option(help: "The backup file.") var from: String
    @OptionGroup var options: ServerOptions

    func run() async throws {
        let report = try await runReporting {
            try await Backups.restore(from: from, try options.configuration(), logger: quietLogger())
        }
        printReport(report)
    }
}

struct VerifyBackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-backup",
        abstract: "Check a backup file (or, with --database-url, a restored PostgreSQL database) as a restore would.",
        discussion: "Needs the keystore the backup was sealed with (the options name it, as for serve).")
    @Argument(help: "The backup file; leave it out to check the database --database-url names.") var file: String?
    @OptionGroup var options: ServerOptions

    func run() async throws {
        let report = try await runReporting {
            let configuration = try options.configuration()
            return if let file {
                try await Backups.verify(file: file, configuration, logger: quietLogger())
            } else {
                try await Backups.verifyDatabase(configuration, logger: quietLogger())
            }
        }
        printReport(report)
        if !report.valid { throw ExitCode(1) }
    }
}

private func quietLogger() -> Logger {
    var logger = Logger(label: "keyhold")
    logger.logLevel = .warning
    return logger
}

/// Runs `body`; a `BackupError` or `KeyholdError` is printed on stderr and ends the command with status 1.
private func runReporting<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as BackupError {
        FileHandle.standardError.write(Data("keyhold: \(error.description)\n".utf8))
        throw ExitCode(1)
    } catch let error as KeyholdError {
        FileHandle.standardError.write(Data("keyhold: \(error.detail)\n".utf8))
        throw ExitCode(1)
    }
}

/// The summary of a verification, as JSON on stdout; its problems also on stderr.
private func printReport(_ report: StoreReport) {
    let stats = report.statistics
    let summary: [String: Any] = [
        "valid": report.valid, "schema_version": report.schemaVersion,
        "counts": [
            "orgs": stats.orgs, "vaults": stats.vaults, "secrets": stats.secrets,
            "secret_versions": stats.secretVersions, "audit_events": stats.auditEvents,
        ],
        "audit_chains": report.auditHeads.count, "events_verified": report.eventsVerified,
        "keys_checked": report.keysChecked, "keys_unused": report.keysUnused,
        "server_keys_checked": report.serverKeysChecked, "problems": report.problems,
    ]
    if let data = try? JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted]) {
        print(String(decoding: data, as: UTF8.self))
    }
    for problem in report.problems { FileHandle.standardError.write(Data("keyhold: \(problem)\n".utf8)) }
}

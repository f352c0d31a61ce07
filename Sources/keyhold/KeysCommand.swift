import ArgumentParser
import Crypto
import Foundation
import KeyholdCore
import KeyholdHTTP
import KeyholdServer
import Logging

/// `keyhold keys …`: key rotation, run by an operator against the same database and keystore as the server.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rotate vault keys, rewrap data keys, retire old keys, rotate the master key.",
        subcommands: [Rotate.self, Rewrap.self, Retire.self, RotateMaster.self])

    static func runtime(_ options: ServerOptions) async throws -> KeyholdRuntime {
        let configuration = try options.configuration()
        var logger = Logger(label: "keyhold")
        logger.logLevel = .warning
        return try await KeyholdRuntime.open(configuration, logger: logger)
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new KEK version for a vault; new writes use it, existing data keys wait for rewrap.")
        @Option(help: "The vault's id.") var vault: String
        @OptionGroup var options: ServerOptions

        func run() async throws {
            guard let id = UUID(uuidString: vault) else { throw ValidationError("--vault must be a UUID") }
            let runtime = try await Keys.runtime(options)
            let kek = try await runtime.keys.rotate(vaultID: id)
            print("vault \(id.uuidString.lowercased()): new key \(kek.id); run `keyhold keys rewrap` to move data keys to it")
            try await runtime.storage.close()
        }
    }

    struct Rewrap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rewrap every data key under its vault's newest KEK, in batches; safe to interrupt and run again.")
        @Option(help: "Data keys per transaction.") var batchSize: Int = 500
        @OptionGroup var options: ServerOptions

        func run() async throws {
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
            let runtime = try await Keys.runtime(options)
            let progress = try await runtime.keys.rewrap(batchSize: batchSize) { progress in
                print("batch \(progress.batches): \(progress.rewrapped) data keys rewrapped so far")
            }
            print("rewrapped \(progress.rewrapped) data keys in \(progress.batches) batches; none is left under an older key")
            try await runtime.storage.close()
        }
    }

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete KEKs that no vault and no data key uses any more (after a rewrap).")
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let runtime = try await Keys.runtime(options)
            let retired = try await runtime.keys.retireUnused()
            print(retired.isEmpty ? "no unused keys" : "retired \(retired.count) keys: " + retired.joined(separator: ", "))
            try await runtime.storage.close()
        }
    }

    struct RotateMaster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-master",
            abstract: "Re-seal every vault key and server secret under a new software master key.",
            discussion: """
                With the master key in the data dir, a new random key replaces master.key. With KEYHOLD_MASTER_KEY, \
                set KEYHOLD_NEW_MASTER_KEY to the new key; afterwards give every node the new KEYHOLD_MASTER_KEY.
                """)
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let configuration = try options.configuration()
            guard configuration.keystore == .software else {
                throw ValidationError("rotate-master is for the software keystore; an HSM rotates with `keys rotate`")
            }
            let runtime = try await Keys.runtime(options)
            guard let current = runtime.keystore as? SoftwareKeystore else { throw ValidationError("not a software keystore") }
            var newKey = SymmetricKey(size: .bits256)
            var directory: String? = configuration.dataDirectory
            if configuration.masterKey != nil {
                guard let text = ProcessInfo.processInfo.environment["KEYHOLD_NEW_MASTER_KEY"],
                    let key = try? SoftwareKeystore.open(directory: "/", environmentKey: text)
                else { throw ValidationError("set KEYHOLD_NEW_MASTER_KEY (64 hex characters or base64 of 32 bytes)") }
                newKey = key.masterKey
                directory = nil
            }
            let counts = try await SoftwareKeystore.rotateMasterKey(
                directory: directory, store: runtime.storage, current: current, newKey: newKey)
            print("re-sealed \(counts.keks) vault keys and \(counts.systemValues) server secrets under the new master key")
            try await runtime.storage.close()
        }
    }
}

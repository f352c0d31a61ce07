import Foundation
import Hummingbird
import KeyholdCore
import KeyholdHTTP
import KeyholdPKCS11
import KeyholdPostgres
import KeyholdSQLite
import Logging

/// The composition root: the only place that names the concrete storage and keystore. It opens what the
/// configuration asks for and hands it to the HTTP layer, which knows only Core's protocols.
extension KeyholdRuntime {
    public static func open(_ configuration: KeyholdConfiguration, logger: Logger, measured: Bool = false) async throws
        -> KeyholdRuntime
    {
        try FileSecurity.ensurePrivateDirectory(configuration.dataDirectory)
        let opened = try await openKeystore(configuration)
        let keystore: any Keystore = measured ? MeasuredKeystore(opened) : opened
        let storage: any Storage =
            if let url = configuration.databaseURL {
                try await PostgresStorage.open(url: url, logger: logger)
            } else {
                try await SQLiteStorage.open(path: configuration.dataDirectory + "/keyhold.sqlite", logger: logger)
            }
        do {
            return try await KeyholdRuntime(storage: storage, keystore: keystore)
        } catch {
            try? await storage.close()
            throw error
        }
    }

    /// The keystore the configuration names. The software keystore's master key is a file in the data dir unless
    /// `KEYHOLD_MASTER_KEY` is set; the PKCS#11 keystore logs in to its token now, so a wrong PIN stops start-up.
    static func openKeystore(_ configuration: KeyholdConfiguration) async throws -> any Keystore {
        switch configuration.keystore {
        case .software:
            return try SoftwareKeystore.open(directory: configuration.dataDirectory, environmentKey: configuration.masterKey)
        case .pkcs11:
            return try await PKCS11Keystore.open(
                modulePath: configuration.pkcs11Module ?? "", tokenLabel: configuration.pkcs11TokenLabel ?? "",
                pin: configuration.pkcs11PIN ?? "")
        }
    }
}

/// The server as `keyhold serve` runs it: storage and keystore opened from the configuration, then the application
/// (with `metrics`, the keystore's calls measured and `/metrics` served).
public func buildServer(configuration: KeyholdConfiguration, logger: Logger, metrics: ServerMetrics? = nil) async throws
    -> some ApplicationProtocol
{
    try await buildApplication(
        configuration: configuration,
        runtime: try await KeyholdRuntime.open(configuration, logger: logger, measured: metrics != nil), logger: logger,
        metrics: metrics)
}

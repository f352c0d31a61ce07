import Foundation
import Hummingbird
import HummingbirdCore
import KeyholdCore
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The server's TLS: the certificate chain and key of `--tls-cert` / `--tls-key` (PEM), TLS 1.2 or later with
/// swift-nio-ssl's default (modern, forward-secret AEAD) cipher suites, and with `--tls-client-ca` a client
/// certificate signed by that CA required of every connection (mTLS). Reloaded from the same files on SIGHUP: each
/// new connection takes the context current when it is accepted, so connections already open keep theirs and none
/// is dropped; files that do not load leave the previous context in place.
final class TLSContextSource: Sendable {
    struct Files: Sendable {
        let certificate: String
        let key: String
        let clientCA: String?
    }

    let files: Files
    private let current: Mutex<NIOSSLContext>

    init(files: Files) throws {
        self.files = files
        current = Mutex(try Self.context(files))
    }

    var context: NIOSSLContext { current.withLock { $0 } }

    /// Loads the files again; throws (keeping the context in use) when they do not make a usable context.
    func reload() throws {
        let fresh = try Self.context(files)
        current.withLock { $0 = fresh }
    }

    static func context(_ files: Files) throws -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
            guard !chain.isEmpty else { throw KeyholdError.badRequest("no certificate in \(files.certificate)") }
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: files.key, format: .pem)))
            configuration.minimumTLSVersion = .tlsv12
            // TLS 1.2: ECDHE key exchange with AEAD ciphers only (forward secrecy, no CBC); TLS 1.3's suites are all
            // of that kind.
            configuration.cipherSuiteValues = [
                .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
            if let clientCA = files.clientCA {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(clientCA))
                configuration.certificateVerification = .noHostnameVerification
            }
            return try NIOSSLContext(configuration: configuration)
        } catch let error as KeyholdError {
            throw error
        } catch {
            throw KeyholdError.badRequest("The TLS certificate or key cannot be used: \(error)")
        }
    }
}

/// Hummingbird's HTTP/1 child channel behind a TLS handler made from the source's current context. Its idle timeout
/// also ends a connection that never completes its handshake (nothing decrypted arrives).
struct ReloadableTLSChannel<Base: ServerChildChannel & HTTPChannelHandler>: ServerChildChannel, HTTPChannelHandler {
    typealias Value = Base.Value
    let base: Base
    let source: TLSContextSource

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: source.context))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }

    var responder: HTTPChannelHandler.Responder { base.responder }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 over TLS from `source`.
    static func reloadableTLS(_ source: TLSContextSource, configuration: HTTP1Channel.Configuration) -> HTTPServerBuilder {
        .init { responder in
            ReloadableTLSChannel(base: HTTP1Channel(responder: responder, configuration: configuration), source: source)
        }
    }
}

/// Reloads the TLS files on each SIGHUP until the server shuts down, logging the outcome (never the key).
struct TLSReloadService: Service, CustomStringConvertible {
    let source: TLSContextSource
    let logger: Logger
    var description: String { "TLSReloadService" }

    func run() async throws {
        signal(SIGHUP, SIG_IGN)
        let signals = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        let hangups = AsyncStream<Void> { continuation in
            signals.setEventHandler { continuation.yield() }
            signals.resume()
        }
        defer { signals.cancel() }
        try await cancelWhenGracefulShutdown {
            for await _ in hangups {
                do {
                    try source.reload()
                    logger.notice("TLS certificate reloaded", metadata: ["keyhold.tls.certificate": .string(source.files.certificate)])
                } catch {
                    logger.error("TLS reload failed; the previous certificate stays in use", metadata: ["keyhold.error": "\(error)"])
                }
            }
        }
    }
}

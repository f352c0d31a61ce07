import Hummingbird
import NIOCore

/// The request context: Hummingbird's core storage plus the peer address (for IP conditions and rate limits).
public struct KeyholdRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    public var maxUploadSize: Int { RequestBody.maxBytes }
}

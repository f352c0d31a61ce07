import AsyncHTTPClient
import Foundation
import KeyholdCore
import NIOCore

/// Webhook requests over AsyncHTTPClient, behind the SSRF guard of every outgoing request (`Outbound`). 10 s to
/// connect and 10 s for the whole request; the response body is never read.
struct HTTPWebhookTransport: WebhookTransport {
    let outbound: Outbound
    static let timeout = TimeAmount.seconds(10)

    func post(url: String, headers: [(String, String)], body: Data) async -> WebhookTransportResult {
        func refused(_ reason: String) -> WebhookTransportResult { WebhookTransportResult(statusCode: nil, error: reason) }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else { return refused("the URL does not parse") }
        let route: Outbound.Route
        switch await outbound.route(scheme: scheme, host: host) {
        case .success(let checked): route = checked
        case .failure(let refusal): return refused("refused: " + refusal.reason)
        }
        let client = outbound.client(for: route, connectTimeout: Self.timeout, readTimeout: Self.timeout)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let result: WebhookTransportResult
        do {
            let response = try await client.execute(request, timeout: Self.timeout)
            let code = Int(response.status.code)
            result = WebhookTransportResult(
                statusCode: code, error: (200...299).contains(code) ? nil : "HTTP \(code) \(response.status.reasonPhrase.prefix(60))")
        } catch {
            result = refused(Outbound.describe(error, timeout: Self.timeout))
        }
        try? await client.shutdown()
        return result
    }
}

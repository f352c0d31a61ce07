import Foundation
import MCP

/// Keyhold's MCP server: 1Claw's secret tools and the `vault://secrets` resource, on any MCP transport.
public enum KeyholdMCPServer {
    public static let version = "0.1.0"

    public static func make(tools: SecretTools) async -> Server {
        let server = Server(
            name: "keyhold", version: version,
            instructions: tools.reveal
                ? "Secrets of one Keyhold vault. Reads are counted and audited; prefer describe_secret when the value is not needed."
                : "Secrets of one Keyhold vault, in value-free mode: no tool returns a secret value. Use describe_secret, and `keyhold run -- CMD` to give a program the values.",
            capabilities: .init(resources: .init(), tools: .init()))
        await server.withMethodHandler(ListTools.self) { _ in .init(tools: tools.tools) }
        await server.withMethodHandler(CallTool.self) { params in await tools.call(params.name, params.arguments ?? [:]) }
        await server.withMethodHandler(ListResources.self) { _ in
            .init(
                resources: [
                    Resource(
                        name: "secrets", uri: SecretTools.resourceURI,
                        description: "The vault's secret paths, types and versions (never values)",
                        mimeType: "application/json")
                ], nextCursor: nil)
        }
        await server.withMethodHandler(ReadResource.self) { params in
            guard params.uri == SecretTools.resourceURI else {
                throw MCPError.invalidParams("Unknown resource: \(params.uri)")
            }
            return .init(contents: [.text(try await tools.listing(), uri: params.uri, mimeType: "application/json")])
        }
        return server
    }
}

import ArgumentParser
import Foundation
import KeyholdClient
import KeyholdMCP
import MCP

struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve MCP over stdio: 1Claw's secret tools for one vault, as the configured agent or person.",
        discussion: """
            Credentials and vault as for the other client commands (KEYHOLD_AGENT_ID with KEYHOLD_AGENT_API_KEY, \
            KEYHOLD_TOKEN, KEYHOLD_API_KEY, or the saved session; KEYHOLD_VAULT or --vault; 1Claw's ONECLAW_* names \
            too). Every tool call is an ordinary API request: the server's policies, audit log and rate limits apply.
            """)

    @OptionGroup var client: ClientOptions
    @OptionGroup var vault: VaultOption
    @Flag(name: .customLong("no-reveal"), help: "Value-free mode: no tool ever returns a secret value (KEYHOLD_MCP_NO_REVEAL=true).")
    var noReveal = false

    func run() async throws {
        try await reportingFailure {
            var environment = ProcessInfo.processInfo.environment
            // 1Claw's MCP server takes a static agent JWT as ONECLAW_AGENT_TOKEN.
            if (environment["KEYHOLD_TOKEN"] ?? "").isEmpty, let token = environment["ONECLAW_AGENT_TOKEN"], !token.isEmpty {
                environment["KEYHOLD_TOKEN"] = token
            }
            let context = try ClientContext(url: client.url, environment: environment)
            let tools = SecretTools(
                credentials: CredentialSource(context: context), vault: try context.vault(vault.vault),
                reveal: !noReveal && !["1", "true"].contains(ClientContext.variable("MCP_NO_REVEAL", in: environment) ?? ""))
            let server = await KeyholdMCPServer.make(tools: tools)
            try await server.start(transport: StdioTransport())
            await server.waitUntilCompleted()
        }
    }
}

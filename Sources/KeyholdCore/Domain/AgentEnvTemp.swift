// TEMPORARY until the agent-env branch lands.
extension Agent {
    var environment: String? { nil }
    var environmentLocked: Bool { false }
    var envAutoResolve: Bool { true }
}

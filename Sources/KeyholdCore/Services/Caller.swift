/// Who is asking, from where and when: what every authorization decision needs.
public struct Caller: Sendable {
    public let principal: Principal
    public let context: AccessContext

    public init(_ principal: Principal, context: AccessContext) {
        self.principal = principal
        self.context = context
    }
}

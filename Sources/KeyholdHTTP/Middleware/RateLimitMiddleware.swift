import Hummingbird
import KeyholdCore

/// Per-client-address token bucket (1Claw's default: 100 requests per second, bursts of 200), before any other
/// work: an exhausted client gets 429 with `Retry-After`.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = KeyholdRequestContext
    let limiter: RateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if let wait = limiter.take(context.clientIP?.description ?? "unknown") {
            let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
            throw KeyholdError(.tooManyRequests, "Rate limit exceeded; retry after \(seconds) seconds", retryAfter: seconds)
        }
        return try await next(request, context)
    }
}

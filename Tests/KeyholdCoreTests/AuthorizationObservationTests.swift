import KeyholdCore
import Testing

@Suite struct AuthorizationObservationTests {
    /// A background job a request starts (a CMEK rotation) inherits the task-local but must not check the request's
    /// facts, nor record into it, once the request has been answered.
    @Test func aTaskThatOutlivesItsRequestSeesNoActiveObservation() async {
        let observation = AuthorizationObservation()
        let (requestEnded, signal) = AsyncStream<Void>.makeStream()
        let job = AuthorizationObservation.$current.withValue(observation) {
            #expect(AuthorizationObservation.active === observation)
            return Task {
                for await _ in requestEnded {}
                return (AuthorizationObservation.current === observation, AuthorizationObservation.active == nil)
            }
        }
        observation.end()
        signal.finish()
        let (inherited, inactive) = await job.value
        #expect(inherited && inactive)
    }
}

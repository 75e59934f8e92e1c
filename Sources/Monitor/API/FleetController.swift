import HeartbeatDomain
import Hummingbird
import ServerSupport

/// Fleet-wide operations of the ops API: releasing a mass-offline hold of the storm guard.
struct FleetController<Context: RequestContext> {
    let leadership: Leadership
    let stormGuard: SharedStormGuard

    func addRoutes(to api: RouterGroup<Context>) {
        api.post("/fleet/release-hold", use: releaseHold)
    }

    /// `{"released": true}` when a hold was released, `false` when none was held.
    @Sendable func releaseHold(request: Request, context: Context) async throws -> [String: Bool] {
        guard leadership.isLeader else {
            throw APIError(status: .conflict, code: "not_leader", message: "this instance is a standby; send it to the active monitor")
        }
        return ["released": stormGuard.withLock { $0.requestRelease() }]
    }
}

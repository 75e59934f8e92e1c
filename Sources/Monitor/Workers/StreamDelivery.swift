/// How a ``StreamWorker`` reads a consumer group's entries and marks them done.
enum StreamDelivery: Sendable {
    /// `XREADGROUP` then `XACK`: each entry read sits in the group's pending list until it is
    /// acknowledged, and one an instance read and never acknowledged is claimed by the next
    /// (`XAUTOCLAIM`). Redis keeps two records per entry in flight.
    case pendingList
    /// `XRANGE` after the group's position, which moves past a batch only once it is stored
    /// (`XGROUP SETID`, fenced: ``StreamGroupScript/advance``): no pending list. A crash between
    /// storing and moving hands the batch over again, so the handler must tolerate a batch twice.
    case position
}

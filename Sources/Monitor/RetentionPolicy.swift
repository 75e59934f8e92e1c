/// How long the monitor keeps what it no longer needs: published outbox rows, status events and
/// the replay keys of applied transitions (purged by ``HistoryStore/purge(_:)`` in slices).
struct RetentionPolicy: Sendable {
    /// Published outbox rows (`OUTBOX_RETENTION_HOURS`, default 168): kept a while to answer
    /// "was it sent?", and the replay keys of applied transitions with them (a replay comes within
    /// seconds of a crash, never days).
    var outbox: Duration
    /// Device status events (`EVENTS_RETENTION_DAYS`, default 90): the events and uptime history.
    var events: Duration
    /// With alerts on, an outbox row is kept until Alertmanager took it too (`alerted_at`).
    var keepsUnalerted = false
}

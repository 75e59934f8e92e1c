import Metrics
import ServerSupport

/// The monitor's metrics, exposed on `/metrics`.
struct MonitorMetrics: Sendable {
    let leader = Gauge(label: "monitor_leader")
    let scanDuration = Metrics.Timer(label: "monitor_scan_duration_seconds", preferredDisplayUnit: .seconds)
    let staleFound = Counter(label: "monitor_devices_stale_total")
    let declaredOffline = Counter(label: "monitor_devices_declared_offline_total")
    let stormTrips = Counter(label: "monitor_storm_guard_trips_total")
    let stormHolding = Gauge(label: "monitor_storm_guard_holding_devices")
    let outboxBacklog = Gauge(label: "monitor_outbox_backlog")
    let outboxOldestAge = Gauge(label: "monitor_outbox_oldest_age_seconds")
    let published = Counter(label: "monitor_events_published_total")
    let kafkaDeliveryErrors = Counter(label: "monitor_kafka_delivery_errors_total")
    let applyErrors = Counter(label: "monitor_apply_errors_total")
    /// Devices PostgreSQL holds offline, and registered but never heard from (``FleetCensus``).
    let devicesOffline = Gauge(label: "monitor_devices_offline")
    let devicesUnknown = Gauge(label: "monitor_devices_unknown")
    /// Devices in the online sets at the last scan, and when the last scan succeeded (Unix seconds):
    /// a scanner that stops succeeding shows as an age that grows (`time() - …` in an alert rule).
    let devicesOnline = Gauge(label: "monitor_devices_online")
    let lastScan = Gauge(label: "monitor_last_scan_timestamp_seconds")
    /// Terms this instance started as leader.
    let leaderTerms = Counter(label: "monitor_leader_terms_total")
    /// Devices PostgreSQL held online that Redis had lost, put back on the normal offline path.
    let reconcileRepaired = Counter(label: "monitor_reconcile_repaired_total")
    /// Registry re-seeds after Redis lost data, and how long the last one took.
    let registryReseeds = Counter(label: "monitor_registry_reseeds_total")
    let registryReseedSeconds = Gauge(label: "monitor_registry_reseed_duration_seconds")

    /// Alerts Alertmanager took, and alerts whose post failed (posted again).
    let alertsSent = Counter(label: "monitor_alerts_sent_total")
    let alertsFailed = Counter(label: "monitor_alerts_failed_total")
    /// History rows written to PostgreSQL.
    let historyWritten = Counter(label: "monitor_history_rows_written_total")
    /// Rows lost to the history stream cap before they were written (at least this many).
    let historyShed = Counter(label: "monitor_history_stream_overflow_total")
    /// History entries that could not be read (not a device id, time and payload): skipped, never retried.
    let historyUnreadable = Counter(label: "monitor_history_rows_unreadable_total")
    /// Published outbox rows, replay keys and status events deleted past retention.
    let retentionPurged = Counter(label: "monitor_retention_purged_rows_total")

    func transitionsApplied(_ kind: String, _ count: Int) {
        Counter(label: "monitor_transitions_applied_total", dimensions: [("kind", kind)]).increment(by: count)
    }

    /// Stream entries delivered to a consumer group and not yet acknowledged, and entries not yet
    /// delivered, summed over the buckets (``FleetCensus``).
    func streamBacklog(group: String, pending: Int, unread: Int) {
        Gauge(label: "monitor_stream_pending_entries", dimensions: [("group", group)]).record(pending)
        Gauge(label: "monitor_stream_unread_entries", dimensions: [("group", group)]).record(unread)
    }

    /// `# HELP` texts of everything the monitor exports.
    static let help = MetricHelp.common.merging([
        "monitor_leader": "1 while this instance holds the leader lock, 0 on a standby.",
        "monitor_leader_terms_total": "Terms this instance started as leader.",
        "monitor_scan_duration_seconds": "Time an offline scan took, in seconds.",
        "monitor_devices_stale_total": "Devices found silent past OFFLINE_AFTER by the scans.",
        "monitor_devices_declared_offline_total": "Devices the scans declared offline.",
        "monitor_devices_online": "Devices in Redis's online sets at the last scan.",
        "monitor_devices_offline": "Devices PostgreSQL holds offline.",
        "monitor_devices_unknown": "Devices registered and never heard from.",
        "monitor_last_scan_timestamp_seconds": "When the last offline scan succeeded, in seconds since the Unix epoch.",
        "monitor_storm_guard_trips_total": "Times the storm guard held a mass offline.",
        "monitor_storm_guard_holding_devices": "Devices the storm guard holds back from offline now (0 when not holding).",
        "monitor_outbox_backlog": "Outbox rows not yet published to Kafka.",
        "monitor_outbox_oldest_age_seconds": "Age of the oldest unpublished outbox row, in seconds.",
        "monitor_events_published_total": "Events Kafka acknowledged.",
        "monitor_kafka_delivery_errors_total": "Events Kafka refused or did not acknowledge in time (retried).",
        "monitor_apply_errors_total": "Transition batches that failed to apply (retried).",
        "monitor_transitions_applied_total": "Status transitions applied to PostgreSQL, by kind.",
        "monitor_reconcile_repaired_total": "Devices online in PostgreSQL but missing from Redis, put back on the offline path.",
        "monitor_registry_reseeds_total": "Times the Redis registry was re-seeded from PostgreSQL.",
        "monitor_registry_reseed_duration_seconds": "How long the last registry re-seed took, in seconds.",
        "monitor_history_rows_written_total": "Heartbeat history rows written to PostgreSQL.",
        "monitor_history_stream_overflow_total": "History rows lost to the stream cap before they were written (at least this many).",
        "monitor_history_rows_unreadable_total": "History stream entries that were not a heartbeat (skipped).",
        "monitor_retention_purged_rows_total": "Outbox rows, replay keys and status events deleted past retention.",
        "monitor_alerts_sent_total": "Alerts Alertmanager accepted (raised, refreshed and resolved).",
        "monitor_alerts_failed_total": "Alerts whose post to Alertmanager failed (posted again with backoff).",
        "monitor_stream_pending_entries": "Stream entries delivered to a consumer group and not yet acknowledged, by group.",
        "monitor_stream_unread_entries": "Stream entries not yet delivered to a consumer group, by group.",
    ]) { common, _ in common }
}

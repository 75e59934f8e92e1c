import Metrics

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
}

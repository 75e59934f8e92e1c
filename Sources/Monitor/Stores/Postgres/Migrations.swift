import PostgresAdapter

/// The PostgreSQL schema as ordered, append-only migrations. Never edit a shipped migration; add one.
public enum Migrations {
    public struct Migration: Sendable {
        public let version: Int
        public let name: String
        public let sql: String
    }

    /// Advisory-lock key that serializes migration runs across monitor instances.
    public static let lockKey: Int64 = 7_220_000

    public static let all: [Migration] = [
        Migration(
            version: 1, name: "devices, status events, outbox, history",
            sql: #"""
                CREATE TABLE devices (
                    id uuid PRIMARY KEY,
                    name text,
                    status text NOT NULL DEFAULT 'unknown' CHECK (status IN ('online', 'offline', 'unknown')),
                    last_heartbeat timestamptz,
                    status_changed_at timestamptz,
                    status_version bigint NOT NULL DEFAULT 0,
                    token_hash text,
                    assigned_playlist text,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE INDEX devices_status_id ON devices (status, id);

                CREATE TABLE device_status_events (
                    id bigserial PRIMARY KEY,
                    event_id uuid NOT NULL UNIQUE,
                    device_id uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
                    from_status text NOT NULL,
                    to_status text NOT NULL,
                    at timestamptz NOT NULL,
                    last_heartbeat timestamptz,
                    reason text NOT NULL,
                    status_version bigint NOT NULL,
                    source text NOT NULL UNIQUE
                );
                CREATE INDEX device_status_events_device ON device_status_events (device_id, id DESC);

                CREATE TABLE outbox (
                    id bigserial PRIMARY KEY,
                    event_id uuid NOT NULL UNIQUE,
                    topic text NOT NULL,
                    key text NOT NULL,
                    payload text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    published_at timestamptz
                );
                CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

                CREATE TABLE heartbeat_history (
                    device_id uuid NOT NULL,
                    received_at timestamptz NOT NULL,
                    device_time timestamptz,
                    payload jsonb NOT NULL
                ) PARTITION BY RANGE (received_at);
                CREATE INDEX heartbeat_history_device_time ON heartbeat_history (device_id, received_at DESC);
                """#),
        Migration(
            version: 2, name: "apply_transitions",
            sql: #"""
                -- Applies a bucket's transitions in stream order, in the caller's transaction.
                -- Idempotent: an entry already applied (same bucket and stream id, the event's `source`) is
                -- skipped, and a transition to the status the device already has changes nothing.
                -- Returns the number of status changes.
                CREATE FUNCTION apply_transitions(
                    p_bucket int, p_ids text[], p_devices uuid[], p_kinds text[], p_at_ms bigint[],
                    p_last_ms bigint[], p_reasons text[], p_offline_after double precision
                ) RETURNS int LANGUAGE plpgsql AS $$
                DECLARE
                    v_source text;
                    v_old text; v_version bigint;
                    v_at timestamptz; v_last timestamptz;
                    v_event uuid;
                    v_applied int := 0;
                BEGIN
                    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
                        v_source := p_bucket || ':' || p_ids[i];
                        CONTINUE WHEN EXISTS (SELECT 1 FROM device_status_events WHERE source = v_source);

                        v_at := to_timestamp(p_at_ms[i] / 1000.0);
                        v_last := to_timestamp(p_last_ms[i] / 1000.0);
                        INSERT INTO devices (id) VALUES (p_devices[i]) ON CONFLICT (id) DO NOTHING;
                        SELECT status INTO v_old FROM devices WHERE id = p_devices[i] FOR UPDATE;
                        IF v_old = p_kinds[i] THEN
                            UPDATE devices SET last_heartbeat = greatest(last_heartbeat, v_last) WHERE id = p_devices[i];
                            CONTINUE;
                        END IF;
                        UPDATE devices
                           SET status = p_kinds[i], status_version = status_version + 1, status_changed_at = v_at,
                               last_heartbeat = greatest(coalesce(last_heartbeat, v_last), v_last), updated_at = now()
                         WHERE id = p_devices[i]
                        RETURNING status_version INTO v_version;
                        v_event := gen_random_uuid();
                        INSERT INTO device_status_events
                            (event_id, device_id, from_status, to_status, at, last_heartbeat, reason, status_version, source)
                        VALUES (v_event, p_devices[i], v_old, p_kinds[i], v_at, v_last, p_reasons[i], v_version, v_source);
                        INSERT INTO outbox (event_id, topic, key, payload)
                        VALUES (v_event, 'device.' || p_kinds[i], p_devices[i]::text, json_build_object(
                            'event_id', v_event,
                            'type', 'device.' || p_kinds[i],
                            'device_id', p_devices[i],
                            'status', p_kinds[i],
                            'previous_status', v_old,
                            'status_version', v_version,
                            'occurred_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            'last_heartbeat', to_char(v_last AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            'reason', p_reasons[i],
                            'offline_after_seconds', p_offline_after)::text);
                        v_applied := v_applied + 1;
                    END LOOP;
                    RETURN v_applied;
                END $$;
                """#),
        Migration(
            version: 3, name: "iso timestamps, daily history partitions",
            sql: #"""
                -- ISO-8601 in UTC with milliseconds, as every API answers.
                CREATE FUNCTION iso(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
                    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                $$;

                -- Creates the day's partition of heartbeat_history if missing (UTC days).
                CREATE FUNCTION ensure_history_partition(p_day date) RETURNS void LANGUAGE plpgsql AS $$
                BEGIN
                    EXECUTE format(
                        'CREATE TABLE IF NOT EXISTS %I PARTITION OF heartbeat_history FOR VALUES FROM (%L) TO (%L)',
                        'heartbeat_history_' || to_char(p_day, 'YYYYMMDD'),
                        p_day::text || ' 00:00:00+00', (p_day + 1)::text || ' 00:00:00+00');
                END $$;

                -- Drops the partitions of days before p_day. Returns how many were dropped.
                CREATE FUNCTION drop_history_partitions_before(p_day date) RETURNS int LANGUAGE plpgsql AS $$
                DECLARE
                    v_name text;
                    v_dropped int := 0;
                BEGIN
                    FOR v_name IN
                        SELECT c.relname FROM pg_inherits i
                        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                        WHERE p.relname = 'heartbeat_history' AND c.relname ~ '^heartbeat_history_[0-9]{8}$'
                          AND to_date(right(c.relname, 8), 'YYYYMMDD') < p_day
                    LOOP
                        EXECUTE format('DROP TABLE %I', v_name);
                        v_dropped := v_dropped + 1;
                    END LOOP;
                    RETURN v_dropped;
                END $$;
                """#),
        Migration(
            version: 4, name: "fencing, replay-proof transitions, retention",
            sql: #"""
                -- Fails (SQLSTATE HB001) unless backend p_pid holds the leader lock (7220001) in this
                -- database: writes on connections other than the lock session call it first, so an
                -- instance that lost the lock without knowing yet writes nothing.
                CREATE FUNCTION assert_leader(p_pid int) RETURNS void LANGUAGE plpgsql AS $$
                BEGIN
                    IF NOT EXISTS (
                        SELECT 1 FROM pg_locks
                        WHERE locktype = 'advisory' AND classid = 0 AND objid = 7220001 AND objsubid = 1 AND granted
                          AND pid = p_pid AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    ) THEN
                        RAISE EXCEPTION 'backend % does not hold the leader lock', p_pid USING ERRCODE = 'HB001';
                    END IF;
                END $$;

                -- Every transition entry applied, whether it changed the status or not, keyed by its
                -- content as well as its stream id: a replay (crash between commit and XACK) is skipped,
                -- and a Redis failover that hands out a stream id again does not hide a new entry.
                CREATE TABLE applied_transitions (
                    source text PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE INDEX applied_transitions_applied_at ON applied_transitions (applied_at);
                CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
                CREATE INDEX device_status_events_at ON device_status_events (at);

                -- The history stream entry a row came from (`bucket:stream id`): a batch written twice
                -- (COPY committed, XACK lost) is told apart from two heartbeats, and readers skip the copy.
                ALTER TABLE heartbeat_history ADD COLUMN entry_id text;

                CREATE OR REPLACE FUNCTION apply_transitions(
                    p_bucket int, p_ids text[], p_devices uuid[], p_kinds text[], p_at_ms bigint[],
                    p_last_ms bigint[], p_reasons text[], p_offline_after double precision
                ) RETURNS int LANGUAGE plpgsql AS $$
                DECLARE
                    v_source text;
                    v_old text; v_version bigint;
                    v_at timestamptz; v_last timestamptz;
                    v_event uuid;
                    v_applied int := 0;
                BEGIN
                    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
                        v_source := p_bucket || ':' || p_ids[i] || ':' || p_devices[i] || ':' || p_kinds[i] || ':' || p_at_ms[i];
                        INSERT INTO applied_transitions (source) VALUES (v_source) ON CONFLICT DO NOTHING;
                        CONTINUE WHEN NOT FOUND;
                        -- entries applied by the version before this table existed
                        CONTINUE WHEN EXISTS (SELECT 1 FROM device_status_events WHERE source = p_bucket || ':' || p_ids[i]);

                        v_at := to_timestamp(p_at_ms[i] / 1000.0);
                        v_last := to_timestamp(p_last_ms[i] / 1000.0);
                        INSERT INTO devices (id) VALUES (p_devices[i]) ON CONFLICT (id) DO NOTHING;
                        SELECT status INTO v_old FROM devices WHERE id = p_devices[i] FOR UPDATE;
                        IF v_old = p_kinds[i] THEN
                            UPDATE devices SET last_heartbeat = greatest(last_heartbeat, v_last) WHERE id = p_devices[i];
                            CONTINUE;
                        END IF;
                        UPDATE devices
                           SET status = p_kinds[i], status_version = status_version + 1, status_changed_at = v_at,
                               last_heartbeat = greatest(coalesce(last_heartbeat, v_last), v_last), updated_at = now()
                         WHERE id = p_devices[i]
                        RETURNING status_version INTO v_version;
                        v_event := gen_random_uuid();
                        INSERT INTO device_status_events
                            (event_id, device_id, from_status, to_status, at, last_heartbeat, reason, status_version, source)
                        VALUES (v_event, p_devices[i], v_old, p_kinds[i], v_at, v_last, p_reasons[i], v_version, v_source);
                        INSERT INTO outbox (event_id, topic, key, payload)
                        VALUES (v_event, 'device.' || p_kinds[i], p_devices[i]::text, json_build_object(
                            'event_id', v_event,
                            'type', 'device.' || p_kinds[i],
                            'device_id', p_devices[i],
                            'status', p_kinds[i],
                            'previous_status', v_old,
                            'status_version', v_version,
                            'occurred_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            'last_heartbeat', to_char(v_last AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            'reason', p_reasons[i],
                            'offline_after_seconds', p_offline_after)::text);
                        v_applied := v_applied + 1;
                    END LOOP;
                    RETURN v_applied;
                END $$;
                """#),
        Migration(
            version: 5, name: "alert delivery column on the outbox",
            sql: #"""
                -- The outbox has one column per consumer: Kafka (`published_at`) and Alertmanager
                -- (`alerted_at`). Rows written before alerting existed count as alerted, so
                -- enabling it later does not replay the past.
                ALTER TABLE outbox ADD COLUMN alerted_at timestamptz;
                UPDATE outbox SET alerted_at = coalesce(published_at, now());
                CREATE INDEX outbox_unalerted ON outbox (id) WHERE alerted_at IS NULL;
                """#),
        Migration(
            version: 6, name: "set-based apply_transitions",
            sql: #"""
                -- Migration 4's loop runs seven statements per transition: 100,000 devices going offline
                -- in a fleet of 10,000,000 took 35 s to apply. A batch whose devices are distinct (the
                -- common case: a device rarely changes twice within one batch) is now applied by a few
                -- statements over the whole batch, in device order; a batch naming a device twice keeps
                -- the loop, renamed, whose per-entry order it needs.
                ALTER FUNCTION apply_transitions(int, text[], uuid[], text[], bigint[], bigint[], text[], double precision)
                    RENAME TO apply_transitions_in_order;

                CREATE FUNCTION apply_transitions(
                    p_bucket int, p_ids text[], p_devices uuid[], p_kinds text[], p_at_ms bigint[],
                    p_last_ms bigint[], p_reasons text[], p_offline_after double precision
                ) RETURNS int LANGUAGE plpgsql
                -- planned for each batch's own arrays: after five calls in a session PostgreSQL switched to
                -- a generic plan that scanned the tables, 10 times slower (2.4 s instead of 0.22 s per 5,000)
                SET plan_cache_mode = force_custom_plan AS $$
                DECLARE
                    v_fresh text[];
                    v_devices uuid[];
                    v_legacy text[];
                    v_applied int;
                BEGIN
                    IF (SELECT count(DISTINCT d) FROM unnest(p_devices) d) <> coalesce(array_length(p_devices, 1), 0) THEN
                        RETURN apply_transitions_in_order(p_bucket, p_ids, p_devices, p_kinds, p_at_ms, p_last_ms, p_reasons, p_offline_after);
                    END IF;
                    -- The arrays are read with unnest, never subscripted (a subscript of a text[] walks the
                    -- array from its start: 80 ms per 5,000), and devices are reached with `id = ANY(…)`
                    -- (joined with the batch, the planner estimated 25 times the rows and scanned the table).

                    -- entries applied by the version before applied_transitions existed (their events' source
                    -- is `bucket:entry id`), looked up by index: a join scanned the events table
                    SELECT array_agg(e.source) INTO v_legacy FROM device_status_events e
                    WHERE e.source = ANY(ARRAY(SELECT p_bucket || ':' || id FROM unnest(p_ids) id));

                    -- the entries not applied before (a replay after a crash between commit and XACK is skipped)
                    WITH input AS (
                        SELECT id, device, p_bucket || ':' || id || ':' || device || ':' || kind || ':' || at_ms AS source
                        FROM unnest(p_ids, p_devices, p_kinds, p_at_ms) AS t(id, device, kind, at_ms)
                    ), fresh AS (
                        INSERT INTO applied_transitions (source) SELECT source FROM input ORDER BY source
                        ON CONFLICT DO NOTHING RETURNING source
                    )
                    SELECT array_agg(source), array_agg(device) INTO v_fresh, v_devices FROM input JOIN fresh USING (source)
                    WHERE v_legacy IS NULL OR p_bucket || ':' || input.id <> ALL(v_legacy);
                    IF v_fresh IS NULL THEN RETURN 0; END IF;

                    -- a device the registry never had (`ON CONFLICT` alone took 58 ms per 5,000 existing rows,
                    -- `NOT EXISTS` a scan of the whole table)
                    INSERT INTO devices (id)
                    SELECT d FROM unnest(v_devices) d EXCEPT SELECT id FROM devices WHERE id = ANY(v_devices)
                    ON CONFLICT (id) DO NOTHING;

                    WITH input AS (
                        SELECT device, kind, reason, to_timestamp(at_ms / 1000.0) AS at, to_timestamp(last_ms / 1000.0) AS last,
                               p_bucket || ':' || id || ':' || device || ':' || kind || ':' || at_ms AS source
                        FROM unnest(p_ids, p_devices, p_kinds, p_at_ms, p_last_ms, p_reasons) AS t(id, device, kind, at_ms, last_ms, reason)
                    ), todo AS (
                        SELECT input.* FROM input JOIN unnest(v_fresh) AS f(source) USING (source)
                    ), locked AS (
                        SELECT d.id, d.status FROM devices d WHERE d.id = ANY(v_devices) ORDER BY d.id FOR UPDATE
                    ), unchanged AS (
                        UPDATE devices d SET last_heartbeat = greatest(d.last_heartbeat, t.last)
                          FROM todo t JOIN locked l ON l.id = t.device
                         WHERE d.id = ANY(v_devices) AND d.id = t.device AND l.status = t.kind
                    ), changed AS (
                        UPDATE devices d
                           SET status = t.kind, status_version = d.status_version + 1, status_changed_at = t.at,
                               last_heartbeat = greatest(coalesce(d.last_heartbeat, t.last), t.last), updated_at = now()
                          FROM todo t JOIN locked l ON l.id = t.device
                         WHERE d.id = ANY(v_devices) AND d.id = t.device AND l.status <> t.kind
                        RETURNING d.id, l.status AS old_status, d.status_version, t.kind, t.at, t.last, t.reason, t.source
                    ), events AS (
                        INSERT INTO device_status_events
                            (event_id, device_id, from_status, to_status, at, last_heartbeat, reason, status_version, source)
                        SELECT gen_random_uuid(), id, old_status, kind, at, last, reason, status_version, source FROM changed ORDER BY id
                        RETURNING event_id, device_id, from_status, to_status, at, last_heartbeat, reason, status_version
                    ), published AS (
                        INSERT INTO outbox (event_id, topic, key, payload)
                        SELECT event_id, 'device.' || to_status, device_id::text, json_build_object(
                            'event_id', event_id,
                            'type', 'device.' || to_status,
                            'device_id', device_id,
                            'status', to_status,
                            'previous_status', from_status,
                            'status_version', status_version,
                            'occurred_at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            'last_heartbeat', to_char(last_heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            'reason', reason,
                            'offline_after_seconds', p_offline_after)::text
                        FROM events ORDER BY at, device_id
                        RETURNING 1
                    )
                    SELECT count(*) INTO v_applied FROM published;
                    RETURN v_applied;
                END $$;
                """#),
        // The history writer's write-behind sets `last_heartbeat` on about one device row per
        // heartbeat. With room left in each page PostgreSQL updates a row in place (a HOT update:
        // no new entry in the two indexes, the dead version pruned on the page). Measured here on
        // 100,000 rows updated in batches of 5,000, twice: 742–841 ms at fillfactor 70 against
        // 1,059–1,517 ms at 100, 57–72% of the updates HOT against 0.5%, and the table 39% smaller
        // (the index-bloating versions are gone). Existing pages keep their rows; the space frees
        // up as they are vacuumed.
        Migration(
            version: 7, name: "devices fillfactor 70 for in-place last_heartbeat updates",
            sql: "ALTER TABLE devices SET (fillfactor = 70)"),
        Migration(
            version: 8, name: "transitions applied on pool sessions, fenced; no JIT for the batch statements",
            sql: #"""
                -- Several buckets' batches are applied at once, each on a pool session, so a burst uses
                -- more than the one core of the lock session. Those sessions need a fence of their own
                -- (the lock session's was its death): each call takes this lock shared for its
                -- transaction and checks the caller still holds the leader lock; a new leader takes it
                -- exclusively once, right after winning the leader lock (``PostgresLeaderLock``), which
                -- waits out the calls of an old leader already past the check, and every later one fails.
                CREATE FUNCTION apply_transitions_fenced(
                    p_leader_pid int, p_bucket int, p_ids text[], p_devices uuid[], p_kinds text[], p_at_ms bigint[],
                    p_last_ms bigint[], p_reasons text[], p_offline_after double precision
                ) RETURNS int LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_advisory_xact_lock_shared(7220002);
                    PERFORM assert_leader(p_leader_pid);
                    RETURN apply_transitions(p_bucket, p_ids, p_devices, p_kinds, p_at_ms, p_last_ms, p_reasons, p_offline_after);
                END $$;

                -- The batch statements' cost estimates pass jit_above_cost, and compiling them took 20–30 ms
                -- of a 5,000-transition call (~300 ms): each plan runs once, so JIT never pays back.
                ALTER FUNCTION apply_transitions(int, text[], uuid[], text[], bigint[], bigint[], text[], double precision)
                    SET jit = off;
                ALTER FUNCTION apply_transitions_in_order(int, text[], uuid[], text[], bigint[], bigint[], text[], double precision)
                    SET jit = off;
                """#),
        Migration(
            version: 9, name: "record_last_heartbeats: the write-behind by primary key, whatever the fleet's size",
            sql: #"""
                -- The history writer's write-behind of `last_heartbeat`, once per batch. As one statement
                -- with the batch's ids as an array literal, PostgreSQL planned it afresh each time (0.6–1.2
                -- ms) and, on a fleet of 10,000, chose two sequential scans of `devices` with hash joins:
                -- 3.4–3.6 ms per batch of 265 rows, growing with the fleet rather than the batch. Here the
                -- plan is cached, and it reaches each row by primary key (1.3 ms, measured on the same
                -- batch); for the batch sizes the writer uses, that is never the slower way.
                CREATE FUNCTION record_last_heartbeats(p_ids uuid[], p_ms bigint[]) RETURNS void LANGUAGE plpgsql
                    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off AS $$
                BEGIN
                    -- rows a transition is being applied to are skipped (SKIP LOCKED): the next batch or the
                    -- transition itself brings them up to date
                    UPDATE devices d SET last_heartbeat = to_timestamp(v.ms / 1000.0)
                    FROM (SELECT l.id, u.ms FROM unnest(p_ids, p_ms) AS u(id, ms) JOIN devices l ON l.id = u.id
                          FOR UPDATE OF l SKIP LOCKED) v
                    WHERE d.id = v.id AND (d.last_heartbeat IS NULL OR d.last_heartbeat < to_timestamp(v.ms / 1000.0));
                END $$;
                """#),
        Migration(
            version: 10, name: "last_heartbeat_of: the exact newest heartbeat while the column is written behind",
            sql: #"""
                -- The history writer writes `devices.last_heartbeat` for a device at most once per half
                -- OFFLINE_AFTER, no longer once per heartbeat. Where the exact newest heartbeat matters (the
                -- registry re-seed, the reconciler, the ops API), it is the newer of the column and the
                -- device's history since: an index probe of the partitions from the column's day on (1–2
                -- of them), ~13 µs per device on a fleet of 10,000.
                CREATE FUNCTION last_heartbeat_of(p_device uuid, p_written timestamptz) RETURNS timestamptz
                    LANGUAGE sql STABLE PARALLEL SAFE AS $$
                    SELECT greatest(p_written, (SELECT max(received_at) FROM heartbeat_history
                                                WHERE device_id = p_device AND received_at > coalesce(p_written, '-infinity')))
                $$;
                """#),
        Migration(
            version: 11, name: "unpublished outbox rows by topic, read by a plain index scan",
            sql: #"""
                -- The relay reads each topic's oldest unpublished rows every poll. On migration 1's
                -- index PostgreSQL chose a bitmap scan, which visits the heap page of every entry,
                -- those of rows published since the last vacuum included, and never marks them
                -- dead: after 10,000 devices came online, each poll read ~620 pages (1.1 ms) until
                -- autovacuum ran. A plain index scan on (topic, id) needs no sort for `ORDER BY id
                -- LIMIT n`, stops after n rows, and marks the entries of published rows dead in the
                -- index as it passes them, so later polls skip them without reading the heap.
                -- Building it reads the outbox once (seconds for millions of rows) while rows wait
                -- to be inserted, at the first start of this version.
                CREATE INDEX outbox_unpublished_by_topic ON outbox (topic, id) WHERE published_at IS NULL;
                DROP INDEX outbox_unpublished;
                """#),
    ]

    /// Applies every migration not yet applied, under an advisory lock so concurrent starts never race.
    /// - Returns: the versions applied by this call.
    @discardableResult
    public static func run(on connection: PostgresConnection) async throws -> [Int] {
        try await connection.simpleQuery("BEGIN")
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))")
            try await connection.simpleQuery(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let versions: [Int] = try await connection.query("SELECT version FROM schema_migrations").decode(Int.self)
            let done = Set(versions)
            var applied: [Int] = []
            for migration in all where !done.contains(migration.version) {
                try await connection.simpleQuery(migration.sql)
                try await connection.query("INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))")
                applied.append(migration.version)
            }
            try await connection.simpleQuery("COMMIT")
            return applied
        } catch {
            _ = try? await connection.simpleQuery("ROLLBACK")
            throw error
        }
    }
}

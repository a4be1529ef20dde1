-- Cold tier: closed UTC days compacted from ~134 B to ~2-3 B per reading (fleetdb.cold).
--
-- A day moves open -> compacting -> compacted, recorded in fleet_days. While open its readings
-- live in the daily partitions of the history and rollup tables. Compaction writes, per kind:
--   *_cold        one row per (day, hour, device group): every reading of that hour of ~1/64
--                 of the devices, encoded column by column (fleetdb.cold.codec), zlib-compressed
--                 by the application: PostgreSQL's pglz/lz4 have no entropy coder and left
--                 these columns at 6-9 B per reading where zlib over byte planes reaches 2-3 B.
--   *_cold_hours  one row per (day, device group) holding its devices' 24 hourly rollups:
--                 what whole hours of a report read, without decoding any reading.
-- then drops the day's raw and rollup partitions.
--
-- Late data: a reading for a day that is no longer open goes to *_late (same columns as the
-- history) and only if it is not stored already; the next compaction run merges it into the
-- day's blocks. Reports add *_late to every window, so such a reading counts from the moment
-- it commits, exactly once. Writers take a shared advisory lock per day (fleet_lock_days), and
-- every state change and merge an exclusive one: a writer sees a day's state and its stored
-- readings as they are when it writes.

CREATE TABLE IF NOT EXISTS fleet_days (
    day           date PRIMARY KEY,
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'compacting', 'compacted')),
    changed_at    timestamptz NOT NULL DEFAULT now()
);

INSERT INTO fleet_days (day)
SELECT DISTINCT to_date(substring(c.relname from '_p(\d{8})$'), 'YYYYMMDD')
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_class p ON p.oid = i.inhparent
 WHERE p.relname IN ('meter_readings', 'vehicle_readings') AND c.relname ~ '_p\d{8}$'
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS meter_late (
    ts              timestamptz   NOT NULL,
    received_at     timestamptz   NOT NULL,
    voltage         real          NOT NULL,
    meter_id        text COLLATE "C" NOT NULL,
    kwh_consumed_ac numeric(12,6) NOT NULL,
    PRIMARY KEY (meter_id, ts)
);

CREATE TABLE IF NOT EXISTS vehicle_late (
    ts               timestamptz   NOT NULL,
    received_at      timestamptz   NOT NULL,
    soc              real          NOT NULL,
    battery_temp     real          NOT NULL,
    vehicle_id       text COLLATE "C" NOT NULL,
    kwh_delivered_dc numeric(12,6) NOT NULL,
    PRIMARY KEY (vehicle_id, ts)
);

CREATE INDEX IF NOT EXISTS meter_late_ts ON meter_late (ts);
CREATE INDEX IF NOT EXISTS vehicle_late_ts ON vehicle_late (ts);

CREATE TABLE IF NOT EXISTS meter_cold (
    day       date     NOT NULL,
    hour      smallint NOT NULL,   -- 0-23, UTC
    grp       smallint NOT NULL,   -- fleetdb.cold.layout.group_of(device id)
    readings  integer  NOT NULL,
    body      bytea    NOT NULL,
    PRIMARY KEY (day, hour, grp)
) PARTITION BY RANGE (day);

CREATE TABLE IF NOT EXISTS vehicle_cold (
    day       date     NOT NULL,
    hour      smallint NOT NULL,
    grp       smallint NOT NULL,
    readings  integer  NOT NULL,
    body      bytea    NOT NULL,
    PRIMARY KEY (day, hour, grp)
) PARTITION BY RANGE (day);

-- Blocks are compressed already: no second attempt by TOAST, stored out of line as they are.
ALTER TABLE meter_cold ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE vehicle_cold ALTER COLUMN body SET STORAGE EXTERNAL;

-- The day's hourly rollups of the devices of one group, as [devices x 24] columns
-- (fleetdb.cold.summary): a fleet report's whole hours decode 64 rows per day.
CREATE TABLE IF NOT EXISTS meter_cold_hours (
    day       date     NOT NULL,
    grp       smallint NOT NULL,
    readings  integer  NOT NULL,
    body      bytea    NOT NULL,
    PRIMARY KEY (day, grp)
) PARTITION BY RANGE (day);

CREATE TABLE IF NOT EXISTS vehicle_cold_hours (
    day       date     NOT NULL,
    grp       smallint NOT NULL,
    readings  integer  NOT NULL,
    body      bytea    NOT NULL,
    PRIMARY KEY (day, grp)
) PARTITION BY RANGE (day);

ALTER TABLE meter_cold_hours ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE vehicle_cold_hours ALTER COLUMN body SET STORAGE EXTERNAL;

-- Partitions of the cold tables for one day (compaction creates them; SECURITY DEFINER so
-- fleetd's maintenance, logged in as fleet_ingest, can).
CREATE OR REPLACE FUNCTION fleet_ensure_cold_day(day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent  text;
    part    text;
    created integer := 0;
BEGIN
    FOREACH parent IN ARRAY ARRAY['meter_cold', 'vehicle_cold', 'meter_cold_hours',
                                  'vehicle_cold_hours'] LOOP
        part := parent || '_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        PERFORM pg_advisory_xact_lock(hashtext('fleet_partition'), hashtext(part));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       part, parent, day, day + 1);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;

-- Writers: a shared lock per day, then each day's state as committed once the lock is held
-- (plpgsql takes a new snapshot per statement, after the wait).
CREATE OR REPLACE FUNCTION fleet_lock_days(days date[]) RETURNS TABLE (day date, state text)
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    d date;
BEGIN
    FOREACH d IN ARRAY days LOOP
        PERFORM pg_advisory_xact_lock_shared(hashtext('fleet_day'), d - DATE '2000-01-01');
    END LOOP;
    RETURN QUERY SELECT u.d, coalesce(f.state, 'open')
                   FROM unnest(days) AS u(d) LEFT JOIN fleet_days f ON f.day = u.d;
END $$;

-- Compaction: move a day from one state to the next under the exclusive day lock. False when
-- the day is not in `from_state` (another run moved it).
CREATE OR REPLACE FUNCTION fleet_set_day_state(d date, from_state text, to_state text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('fleet_day'), d - DATE '2000-01-01');
    INSERT INTO fleet_days (day) VALUES (d) ON CONFLICT DO NOTHING;
    UPDATE fleet_days SET state = to_state, changed_at = now()
     WHERE day = d AND state = from_state;
    RETURN FOUND;
END $$;

-- The exclusive day lock, for a merge of late readings (a transaction of its own).
CREATE OR REPLACE FUNCTION fleet_lock_day_exclusive(d date) RETURNS void
LANGUAGE sql SET search_path = public, pg_temp AS $$
    SELECT pg_advisory_xact_lock(hashtext('fleet_day'), d - DATE '2000-01-01');
$$;

-- After compaction: drop the day's raw and rollup partitions (only of a compacted day). The
-- caller sets lock_timeout: DROP locks the parent for the moment of the drop.
CREATE OR REPLACE FUNCTION fleet_drop_compacted_day(d date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent  text;
    part    text;
    dropped integer := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM fleet_days WHERE day = d AND state = 'compacted') THEN
        RAISE EXCEPTION 'day % is not compacted', d;
    END IF;
    FOREACH parent IN ARRAY ARRAY['meter_readings', 'vehicle_readings', 'meter_hourly',
                                  'vehicle_hourly', 'meter_10min', 'vehicle_10min',
                                  'meter_4h', 'vehicle_4h'] LOOP
        part := parent || '_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NULL;
        EXECUTE format('DROP TABLE %I', part);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

-- fleet_ensure_day as in 009, plus the day's row in fleet_days; a day that is no longer open
-- gets no raw partitions back (its late readings go to *_late).
CREATE OR REPLACE FUNCTION fleet_ensure_day(day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent  text;
    part    text;
    created integer := 0;
BEGIN
    INSERT INTO fleet_days AS f (day) VALUES (fleet_ensure_day.day) ON CONFLICT DO NOTHING;
    IF EXISTS (SELECT FROM fleet_days f WHERE f.day = fleet_ensure_day.day
                                          AND f.state <> 'open') THEN
        RETURN 0;
    END IF;
    FOREACH parent IN ARRAY ARRAY['meter_readings', 'vehicle_readings', 'meter_hourly',
                                  'vehicle_hourly', 'meter_10min', 'vehicle_10min',
                                  'meter_4h', 'vehicle_4h'] LOOP
        part := parent || '_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        PERFORM pg_advisory_xact_lock(hashtext('fleet_partition'), hashtext(part));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        -- Rollup rows are updated in place once per flush holding a reading of their bucket:
        -- free space on each page keeps those updates HOT (no index write).
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = %s)',
            part, parent,
            to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00',
            CASE WHEN parent LIKE '%readings' THEN 100 ELSE 70 END);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;

REVOKE EXECUTE ON FUNCTION fleet_ensure_cold_day(date), fleet_set_day_state(date, text, text),
    fleet_drop_compacted_day(date) FROM PUBLIC;
-- fleetd compacts in its hourly maintenance as fleet_ingest.
GRANT EXECUTE ON FUNCTION fleet_ensure_cold_day(date), fleet_set_day_state(date, text, text),
    fleet_drop_compacted_day(date) TO fleet_ingest;
GRANT SELECT ON fleet_days TO fleet_ingest, fleet_analytics;
-- Late readings are inserted by writers and deleted by the merge that moves them into blocks.
GRANT SELECT, INSERT, DELETE ON meter_late, vehicle_late TO fleet_ingest;
-- Blocks and summaries are upserted (compaction, merges); only partition drops remove them.
GRANT SELECT, INSERT, UPDATE ON meter_cold, vehicle_cold, meter_cold_hours, vehicle_cold_hours
    TO fleet_ingest;
GRANT SELECT ON meter_late, vehicle_late, meter_cold, vehicle_cold, meter_cold_hours,
    vehicle_cold_hours TO fleet_analytics;
-- Compaction reads every column of the raw history.
GRANT SELECT ON meter_readings, vehicle_readings TO fleet_ingest;

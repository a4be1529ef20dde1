-- Daily partitions for history and rollups, created ahead by `fleetd migrate` and by the daemon,
-- and on demand by the ingest path for any day a valid reading needs (late data is accepted).
-- There is no DEFAULT partition on purpose: one holding rows would block creating the day's
-- proper partition later.
--
-- Two flushes (or two daemons) may need the same new day at once: a transaction-scoped advisory
-- lock per partition name serialises them and the second finds the table already there.
-- SECURITY DEFINER lets the least-privilege ingest role create partitions without CREATE rights.

CREATE OR REPLACE FUNCTION fleet_ensure_day(day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent  text;
    part    text;
    created integer := 0;
BEGIN
    FOREACH parent IN ARRAY ARRAY['meter_readings', 'vehicle_readings', 'meter_hourly', 'vehicle_hourly'] LOOP
        part := parent || '_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        PERFORM pg_advisory_xact_lock(hashtext('fleet_partition'), hashtext(part));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        -- Rollup rows are updated in place ~60 times an hour (once per flush that has a reading
        -- of that device-hour): free space on each page keeps those updates HOT (no index write).
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = %s)',
            part, parent,
            to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00',
            CASE WHEN parent LIKE '%hourly' THEN 70 ELSE 100 END);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;

-- Partitions for today (UTC) and the two days ahead.
SELECT fleet_ensure_day((now() AT TIME ZONE 'UTC')::date + d) FROM generate_series(0, 2) AS d;

-- The day's partitions of every kind in fleet_kinds: created ahead and on demand (history and
-- rollups, fleet_ensure_day), created for compaction (blocks and summaries,
-- fleet_ensure_cold_day), and dropped once the day is compacted (fleet_drop_compacted_day).
--
-- Applied by every `fleetd migrate` after the numbered migrations (fleetdb.migrate): the one
-- definition of these functions. Change them here, never in a new migration. Each statement
-- is idempotent (CREATE OR REPLACE keeps owner and grants).
--
-- Two flushes (or two daemons) may need the same new day at once: a transaction-scoped
-- advisory lock per partition name serialises them and the second finds the table there.
-- SECURITY DEFINER lets the least-privilege ingest role create partitions without CREATE
-- rights. There is no DEFAULT partition on purpose: one holding rows would block creating the
-- day's proper partition later.

-- History and rollups of one day, plus the day's row in fleet_days; a day that is no longer
-- open gets no raw partitions back (its late readings go to *_late).
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
    FOR parent IN
        SELECT k.name || s.suffix
          FROM unnest(ARRAY['_readings', '_hourly', '_10min', '_4h']) WITH ORDINALITY AS s(suffix, o)
         CROSS JOIN fleet_kinds k
         ORDER BY s.o, k.name
    LOOP
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
            CASE WHEN parent LIKE '%\_readings' THEN 100 ELSE 70 END);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;

-- Partitions of the cold tables for one day (compaction creates them; SECURITY DEFINER so
-- fleetd's maintenance, logged in as fleet_ingest, can).
CREATE OR REPLACE FUNCTION fleet_ensure_cold_day(day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent  text;
    part    text;
    created integer := 0;
BEGIN
    FOR parent IN
        SELECT k.name || s.suffix
          FROM unnest(ARRAY['_cold', '_cold_hours']) WITH ORDINALITY AS s(suffix, o)
         CROSS JOIN fleet_kinds k
         ORDER BY s.o, k.name
    LOOP
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
    FOR parent IN
        SELECT k.name || s.suffix
          FROM unnest(ARRAY['_readings', '_hourly', '_10min', '_4h']) WITH ORDINALITY AS s(suffix, o)
         CROSS JOIN fleet_kinds k
         ORDER BY s.o, k.name
    LOOP
        part := parent || '_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NULL;
        EXECUTE format('DROP TABLE %I', part);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

-- SECURITY DEFINER: only the roles that need them may call them (functions are executable by
-- PUBLIC by default). fleetd creates partitions on demand and compacts in its maintenance.
REVOKE EXECUTE ON FUNCTION fleet_ensure_day(date), fleet_ensure_cold_day(date),
    fleet_drop_compacted_day(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleet_ensure_day(date), fleet_ensure_cold_day(date),
    fleet_drop_compacted_day(date) TO fleet_ingest;

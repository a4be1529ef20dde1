-- Two more rollup levels beside the hourly one: 10-minute and 4-hour buckets (UTC-aligned), with
-- the same columns and the same exactly-once maintenance (the ingest transaction feeds every
-- level from the rows its INSERT ... RETURNING really inserted).
--
-- Why: a fleet report over 24 h read ~24 hourly rows per device plus every raw reading of the
-- partial hours at its edges (up to 60 per device per edge), ~400,000-800,000 rows per kind,
-- hash-aggregated in ~100-180 ms per kind on two cores. With 4-hour blocks in the middle and
-- 10-minute blocks at the edges a 24 h window needs ~6 block rows, a few hourly and 10-minute
-- rows and at most 9 raw readings per edge per device.
--
-- Existing data: the new levels are filled here from what is stored (10-minute buckets from the
-- raw history, 4-hour blocks from the exact hourly rollups), in this migration's transaction.
-- Stop fleetd while this migration runs: a flush committed by the previous version after this
-- transaction would not reach the new levels. (On 7 days x 20,000 devices, 201 M readings,
-- this took 353 s here, with a test run sharing the two cores.)

CREATE TABLE IF NOT EXISTS meter_10min (
    bucket    timestamptz NOT NULL,   -- start of the UTC 10-minute bucket
    readings  integer     NOT NULL,
    meter_id  text COLLATE "C" NOT NULL,
    kwh_sum   numeric     NOT NULL,
    PRIMARY KEY (meter_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE IF NOT EXISTS meter_4h (
    bucket    timestamptz NOT NULL,   -- start of the UTC 4-hour block (00, 04, ... 20)
    readings  integer     NOT NULL,
    meter_id  text COLLATE "C" NOT NULL,
    kwh_sum   numeric     NOT NULL,
    PRIMARY KEY (meter_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE IF NOT EXISTS vehicle_10min (
    bucket       timestamptz      NOT NULL,
    soc_first_ts timestamptz      NOT NULL,
    soc_last_ts  timestamptz      NOT NULL,
    temp_sum     double precision NOT NULL,
    readings     integer          NOT NULL,
    temp_min     real             NOT NULL,
    temp_max     real             NOT NULL,
    soc_first    real             NOT NULL,
    soc_last     real             NOT NULL,
    vehicle_id   text COLLATE "C" NOT NULL,
    kwh_sum      numeric          NOT NULL,
    PRIMARY KEY (vehicle_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE IF NOT EXISTS vehicle_4h (
    bucket       timestamptz      NOT NULL,
    soc_first_ts timestamptz      NOT NULL,
    soc_last_ts  timestamptz      NOT NULL,
    temp_sum     double precision NOT NULL,
    readings     integer          NOT NULL,
    temp_min     real             NOT NULL,
    temp_max     real             NOT NULL,
    soc_first    real             NOT NULL,
    soc_last     real             NOT NULL,
    vehicle_id   text COLLATE "C" NOT NULL,
    kwh_sum      numeric          NOT NULL,
    PRIMARY KEY (vehicle_id, bucket)
) PARTITION BY RANGE (bucket);

-- Fleet reports read one bucket range across all devices (see 008).
CREATE INDEX IF NOT EXISTS meter_10min_bucket_brin ON meter_10min
    USING brin (bucket) WITH (pages_per_range = 8, autosummarize = on);
CREATE INDEX IF NOT EXISTS vehicle_10min_bucket_brin ON vehicle_10min
    USING brin (bucket) WITH (pages_per_range = 8, autosummarize = on);
CREATE INDEX IF NOT EXISTS meter_4h_bucket_brin ON meter_4h
    USING brin (bucket) WITH (pages_per_range = 8, autosummarize = on);
CREATE INDEX IF NOT EXISTS vehicle_4h_bucket_brin ON vehicle_4h
    USING brin (bucket) WITH (pages_per_range = 8, autosummarize = on);

-- The same function as 005, for all eight partitioned tables.
CREATE OR REPLACE FUNCTION fleet_ensure_day(day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent  text;
    part    text;
    created integer := 0;
BEGIN
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

-- Partitions of the new levels for every day that has history or rollups.
SELECT fleet_ensure_day(to_date(substring(c.relname from '_p(\d{8})$'), 'YYYYMMDD'))
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_class p ON p.oid = i.inhparent
 WHERE p.relname IN ('meter_readings', 'vehicle_readings', 'meter_hourly', 'vehicle_hourly')
   AND c.relname ~ '_p\d{8}$'
 GROUP BY 1;

INSERT INTO meter_10min (meter_id, bucket, kwh_sum, readings)
SELECT meter_id, date_bin(interval '600 seconds', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       sum(kwh_consumed_ac), count(*)
  FROM meter_readings GROUP BY 1, 2 ORDER BY 2, 1;

INSERT INTO vehicle_10min (vehicle_id, bucket, kwh_sum, readings, temp_sum, temp_min, temp_max,
                           soc_first, soc_first_ts, soc_last, soc_last_ts)
SELECT vehicle_id, date_bin(interval '600 seconds', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       sum(kwh_delivered_dc), count(*), sum(battery_temp::float8), min(battery_temp),
       max(battery_temp), (array_agg(soc ORDER BY ts))[1], min(ts),
       (array_agg(soc ORDER BY ts DESC))[1], max(ts)
  FROM vehicle_readings GROUP BY 1, 2 ORDER BY 2, 1;

INSERT INTO meter_4h (meter_id, bucket, kwh_sum, readings)
SELECT meter_id, date_bin(interval '14400 seconds', hour, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       sum(kwh_sum), sum(readings)
  FROM meter_hourly GROUP BY 1, 2 ORDER BY 2, 1;

INSERT INTO vehicle_4h (vehicle_id, bucket, kwh_sum, readings, temp_sum, temp_min, temp_max,
                        soc_first, soc_first_ts, soc_last, soc_last_ts)
SELECT vehicle_id, date_bin(interval '14400 seconds', hour, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       sum(kwh_sum), sum(readings), sum(temp_sum), min(temp_min), max(temp_max),
       (array_agg(soc_first ORDER BY soc_first_ts))[1], min(soc_first_ts),
       (array_agg(soc_last ORDER BY soc_last_ts DESC))[1], max(soc_last_ts)
  FROM vehicle_hourly GROUP BY 1, 2 ORDER BY 2, 1;

-- Privileges as 006 grants them on the hourly rollups.
GRANT SELECT, INSERT, UPDATE ON meter_10min, vehicle_10min, meter_4h, vehicle_4h TO fleet_ingest;
GRANT SELECT ON meter_10min, vehicle_10min, meter_4h, vehicle_4h TO fleet_analytics;

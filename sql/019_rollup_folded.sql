-- How far each rollup level is folded (fleetdb.fold, issue 27): a level's buckets before
-- `folded_to` are complete in its table; later buckets are not read from it (reports take the
-- finer level there, down to raw history). fleetd's fold task aggregates newly closed buckets
-- from the finer source and moves `folded_to` on in one transaction under an exclusive
-- advisory lock; ingest transactions hold it shared and add to a level only readings of
-- buckets already folded (late readings), so every reading is counted once per level.
--
-- Existing data: the previous fleetd fed every level at ingest, so every bucket before now is
-- complete; the current, partly fed bucket is re-aggregated from its finer source (the fold
-- replaces rows, it never adds). Stop fleetd while this migration runs, as for 009.

CREATE TABLE IF NOT EXISTS fleet_rollup_folded (
    level      text        PRIMARY KEY,   -- fleetdb.rollups.Level.name
    folded_to  timestamptz NOT NULL       -- a bucket start of the level (UTC-aligned)
);

INSERT INTO fleet_rollup_folded (level, folded_to)
VALUES ('10min', date_bin(interval '10 minutes', now(), TIMESTAMPTZ '2000-01-01 00:00:00+00')),
       ('hourly', date_trunc('hour', now(), 'UTC')),
       ('4h', date_bin(interval '4 hours', now(), TIMESTAMPTZ '2000-01-01 00:00:00+00'))
ON CONFLICT DO NOTHING;

GRANT SELECT, UPDATE ON fleet_rollup_folded TO fleet_ingest;
GRANT SELECT ON fleet_rollup_folded TO fleet_analytics;

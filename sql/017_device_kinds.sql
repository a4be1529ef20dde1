-- The device kinds the database holds tables for (fleetdb.kinds is the code's registry). The
-- functions that create and drop a day's partitions (sql/functions/, applied by every
-- `fleetd migrate` after the numbered files) loop over this table instead of naming the kinds'
-- tables: a new kind is one migration that creates its tables and inserts its row here.

CREATE TABLE IF NOT EXISTS fleet_kinds (
    name      text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,30}$'),
    added_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO fleet_kinds (name) VALUES ('meter'), ('vehicle') ON CONFLICT DO NOTHING;

GRANT SELECT ON fleet_kinds TO fleet_ingest, fleet_analytics;

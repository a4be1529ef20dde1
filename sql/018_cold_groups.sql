-- Device groups sized by fleet size (fleetdb.cold.groups): each compacted (day, kind) records
-- how many groups its blocks and summaries split the devices into, chosen from the day's
-- readings (~9,400 readings per block: one group for a fleet of 60, 64 for 10,000). A day
-- without a row was compacted before this table existed, with 64 groups.

CREATE TABLE IF NOT EXISTS fleet_cold_groups (
    day     date     NOT NULL,
    kind    text     NOT NULL,
    groups  smallint NOT NULL CHECK (groups >= 1),
    PRIMARY KEY (day, kind)
);

-- Compaction (fleetd's maintenance, as fleet_ingest) records a day's count before its blocks.
GRANT SELECT, INSERT ON fleet_cold_groups TO fleet_ingest;
GRANT SELECT ON fleet_cold_groups TO fleet_analytics;

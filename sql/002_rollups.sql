-- Hourly rollups, maintained exactly once by the ingest transaction from the rows its
-- INSERT ... RETURNING reports as really inserted (a redelivery inserts nothing, so adds nothing).
-- A fleet-wide 24 h report reads ~20,000 x 24 rollup rows instead of 28.8M raw rows.
-- Partitioned by day like the history so retention can keep them longer and drop them cheaply.

CREATE TABLE IF NOT EXISTS meter_hourly (
    hour      timestamptz NOT NULL,   -- start of the UTC hour
    readings  integer     NOT NULL,
    meter_id  text COLLATE "C" NOT NULL,
    kwh_sum   numeric     NOT NULL,   -- exact sum of kwh_consumed_ac
    PRIMARY KEY (meter_id, hour)
) PARTITION BY RANGE (hour);

CREATE TABLE IF NOT EXISTS vehicle_hourly (
    hour         timestamptz      NOT NULL,
    soc_first_ts timestamptz      NOT NULL,  -- ts of the earliest reading in the hour
    soc_last_ts  timestamptz      NOT NULL,  -- ts of the latest reading in the hour
    temp_sum     double precision NOT NULL,
    readings     integer          NOT NULL,
    temp_min     real             NOT NULL,
    temp_max     real             NOT NULL,
    soc_first    real             NOT NULL,
    soc_last     real             NOT NULL,
    vehicle_id   text COLLATE "C" NOT NULL,
    kwh_sum      numeric          NOT NULL,  -- exact sum of kwh_delivered_dc
    PRIMARY KEY (vehicle_id, hour)
) PARTITION BY RANGE (hour);

-- History (cold): one row per reading, append-only, range-partitioned by day (UTC).
--
-- Keys: (device_id, ts) is the primary key, so a redelivered message or a device resending the
-- same reading is a no-op under INSERT ... ON CONFLICT DO NOTHING. It is also the index every
-- per-device query needs (range scan on ts within one device).
--
-- Types, chosen for size and exactness:
--   ts, received_at  timestamptz: 8 B, microsecond resolution, unambiguous UTC instants.
--   kwh_*            numeric(12,6): energy is summed for billing and efficiency. Decimal sums
--                    are exact, so hourly rollups plus raw edge rows equal a raw-data sum to the
--                    last digit, and a device's "2.345678" is stored as exactly that. Resolution
--                    is 1e-6 kWh (1 mWh); ~7-9 B per value, about the same as float8.
--   voltage, soc,    real (float4): sensor values with 3-4 significant digits; 4 B instead of 8.
--   battery_temp     They are averaged, never billed.
--   device ids       text COLLATE "C": ids are the devices' own (METER-00001, 12 B on disk).
--                    Byte order (memcmp) instead of the database's linguistic collation: ids
--                    are codes, not words, and every PK lookup, sort and join compares them.
-- Fixed-width columns come first so the row needs no alignment padding between them.

CREATE TABLE IF NOT EXISTS meter_readings (
    ts              timestamptz   NOT NULL,
    received_at     timestamptz   NOT NULL,
    voltage         real          NOT NULL,
    meter_id        text COLLATE "C" NOT NULL,
    kwh_consumed_ac numeric(12,6) NOT NULL,
    PRIMARY KEY (meter_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE IF NOT EXISTS vehicle_readings (
    ts               timestamptz   NOT NULL,
    received_at      timestamptz   NOT NULL,
    soc              real          NOT NULL,
    battery_temp     real          NOT NULL,
    vehicle_id       text COLLATE "C" NOT NULL,
    kwh_delivered_dc numeric(12,6) NOT NULL,
    PRIMARY KEY (vehicle_id, ts)
) PARTITION BY RANGE (ts);

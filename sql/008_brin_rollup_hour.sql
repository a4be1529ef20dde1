-- Rollup rows are created in hour order (the first reading of an hour inserts its row; later
-- flushes update it in place, fillfactor 70), so a 24 h report that needs 9 of the 24 hours in
-- yesterday's partition finds them through a BRIN index on hour instead of scanning the whole
-- partition (measured: the scan part of the fleet report's rollup read fell by about a third).
CREATE INDEX IF NOT EXISTS meter_hourly_hour_brin ON meter_hourly
    USING brin (hour) WITH (pages_per_range = 8, autosummarize = on);
CREATE INDEX IF NOT EXISTS vehicle_hourly_hour_brin ON vehicle_hourly
    USING brin (hour) WITH (pages_per_range = 8, autosummarize = on);

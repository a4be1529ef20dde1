-- Fleet-wide reports read, for every device, the raw rows of the partial hours at the window's
-- edges: one ts range per edge across all devices. Rows arrive in time order, so a BRIN index on
-- ts finds that range in a few contiguous pages instead of a scan of the day's partition; it
-- costs a few kB per partition and almost nothing at insert. autosummarize keeps it current
-- without waiting for VACUUM (pages not yet summarized are always read, which is exactly the
-- newest data).
CREATE INDEX IF NOT EXISTS meter_readings_ts_brin ON meter_readings
    USING brin (ts) WITH (pages_per_range = 16, autosummarize = on);
CREATE INDEX IF NOT EXISTS vehicle_readings_ts_brin ON vehicle_readings
    USING brin (ts) WITH (pages_per_range = 16, autosummarize = on);

"""Writes and maintenance an operator runs: meter assignments (one or a CSV import), compaction
into the cold tier, partitions. Each needs a login with more rights than the analytics one
(fleet_admin, or the schema owner for partitions and compaction). Replaying dead letters is
fleetdb.ingest.replay, beside the writer it uses."""

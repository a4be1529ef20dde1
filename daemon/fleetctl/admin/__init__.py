"""Writes and maintenance an operator runs: meter assignments (one or a CSV import), compaction
into the cold tier, partitions, replaying dead letters. Each needs a login with more rights
than the analytics one (fleet_admin, or the schema owner for partitions and compaction)."""

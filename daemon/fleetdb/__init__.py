"""The schema and the database, shared by fleetd (ingest) and fleetctl (analytics): connecting,
migrations, daily partitions, rollup levels and retention. It imports neither of them."""

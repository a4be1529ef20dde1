"""fleetctl: AC→DC efficiency analytics over fleet-telemetry's PostgreSQL schema, and its CLI."""

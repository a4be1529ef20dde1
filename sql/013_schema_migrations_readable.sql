-- Every login may read which migrations are applied: fleetd compares them with the ones it
-- ships when a writer connects, so a database that was never migrated, or restored from an
-- older backup, is named as such ("run `fleetd migrate`") before the first flush fails on a
-- missing function. A database older than this file refuses the read itself, which fleetd
-- takes as "older" too (fleetdb.migrate.check_schema).
GRANT SELECT ON schema_migrations TO fleet_ingest, fleet_analytics, fleet_admin;

-- Least-privilege group roles. They cannot log in; ops create login users inside them:
--
--   CREATE ROLE fleetd   LOGIN PASSWORD '...' IN ROLE fleet_ingest;     -- the daemon
--   CREATE ROLE grafana  LOGIN PASSWORD '...' IN ROLE fleet_analytics;  -- dashboards, fleetctl
--   CREATE ROLE dispatch LOGIN PASSWORD '...' IN ROLE fleet_admin;      -- fleetctl assign
--
-- Migrations (this file, partitions ahead, retention) run as the schema owner, which needs
-- CREATEROLE for this file once per cluster (or a superuser creates the three roles first: the
-- blocks below skip roles that exist). Roles are cluster-wide, so the blocks are idempotent and
-- tolerate a concurrent migration of another database creating the same role.
--
-- Partitions: privileges are checked on the table named in the query only, so grants on the
-- partitioned parents cover every partition, including ones fleet_ensure_day creates later.
-- Direct access to a partition (meter_readings_p20260101) is refused, which is intended.
-- A later migration that adds a table must grant on it too.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['fleet_ingest', 'fleet_analytics', 'fleet_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a concurrent migration of another database
            END;
        END IF;
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA public TO fleet_ingest, fleet_analytics, fleet_admin;

-- fleet_ingest: what one flush (fleetd.db.writer) and partition creation need, nothing more.
-- History is append-only: INSERT, no UPDATE/DELETE/TRUNCATE. INSERT ... RETURNING needs SELECT
-- on the returned columns (the rollups are fed from RETURNING), so those columns only.
GRANT INSERT ON meter_readings, vehicle_readings TO fleet_ingest;
GRANT SELECT (meter_id, ts, kwh_consumed_ac) ON meter_readings TO fleet_ingest;
GRANT SELECT (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp) ON vehicle_readings
    TO fleet_ingest;
-- Rollups and current state are upserted: ON CONFLICT DO UPDATE reads the existing row.
GRANT SELECT, INSERT, UPDATE ON meter_hourly, vehicle_hourly, meter_current, vehicle_current
    TO fleet_ingest;
-- Dead letters are written, never read back by the daemon (payloads may hold anything).
GRANT INSERT ON rejected_messages TO fleet_ingest;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO fleet_ingest;
-- fleet_ensure_day is SECURITY DEFINER (it creates partitions as the schema owner), so only the
-- roles that need it may call it: functions are executable by PUBLIC by default.
REVOKE EXECUTE ON FUNCTION fleet_ensure_day(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleet_ensure_day(date) TO fleet_ingest;

-- fleet_analytics: read everything fleetctl and dashboards query; write nothing.
GRANT SELECT ON meter_readings, vehicle_readings, meter_hourly, vehicle_hourly, meter_current,
    vehicle_current, vehicle_meter_assignments, rejected_messages TO fleet_analytics;

-- fleet_admin: analytics plus maintaining which meter feeds which vehicle (fleetctl assign
-- inserts a period and closes the previous one by setting valid_to). No DELETE: corrections
-- close or replace a period, so the assignment history stays auditable.
GRANT fleet_analytics TO fleet_admin;
GRANT INSERT, UPDATE ON vehicle_meter_assignments TO fleet_admin;

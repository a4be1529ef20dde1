-- Dead letters can be replayed with today's rules (fleetctl rejects replay) and expire
-- (FLEET_REJECT_RETENTION_DAYS). Each replay records its outcome on the reject, which stays as
-- the audit of what arrived.

ALTER TABLE rejected_messages
    ADD COLUMN IF NOT EXISTS replayed_at    timestamptz,
    ADD COLUMN IF NOT EXISTS replay_outcome text;

-- Replaying reads payloads (fleet_analytics, which fleet_admin has) and writes readings the way
-- fleetd does (fleet_ingest): fleet_admin, the operators' login, gets both.
GRANT fleet_ingest TO fleet_admin;
GRANT UPDATE (replayed_at, replay_outcome) ON rejected_messages TO fleet_admin;

-- Retention of dead letters by fleetd's hourly maintenance, whose fleet_ingest login may not
-- read or delete rejects: this function deletes only those received before the cutoff.
CREATE OR REPLACE FUNCTION fleet_drop_rejects_before(cutoff timestamptz) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (DELETE FROM rejected_messages WHERE received_at < cutoff RETURNING 1)
    SELECT count(*) FROM gone
$$;
REVOKE EXECUTE ON FUNCTION fleet_drop_rejects_before(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleet_drop_rejects_before(timestamptz) TO fleet_ingest;

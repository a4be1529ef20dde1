-- Alerts (fleetctl.alerts): one row per opening of a condition (kind, subject), resolved in
-- place; the partial unique index makes "open" unique, so a restart or a second evaluator can
-- neither fire twice nor forget. Deliveries are an outbox: one row per (alert, event, channel),
-- sent by a worker with retries, never inside the evaluation.

CREATE TABLE IF NOT EXISTS fleet_alerts (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    subject       text NOT NULL,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    last_value    double precision,
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS fleet_alerts_open ON fleet_alerts (kind, subject)
    WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS fleet_alerts_resolved ON fleet_alerts (resolved_at);

CREATE TABLE IF NOT EXISTS fleet_alert_deliveries (
    id               bigserial PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES fleet_alerts (id),
    event            text NOT NULL CHECK (event IN ('open', 'resolve')),
    channel          text NOT NULL,   -- 'mqtt' or a webhook URL
    idempotency_key  text NOT NULL UNIQUE,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX IF NOT EXISTS fleet_alert_deliveries_due ON fleet_alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL;

-- What each evaluation saw (status counts), for `fleetctl serve`'s /metrics: the fleet gauges
-- Prometheus alerts on, without a report per scrape.
CREATE TABLE IF NOT EXISTS fleet_alert_runs (
    evaluated_at  timestamptz PRIMARY KEY,
    chargers      jsonb NOT NULL,   -- {status: count} of the charger diagnosis
    vehicles      jsonb NOT NULL    -- {status: count} of the fleet report
);

-- The evaluator runs as fleet_admin (FLEET_ADMIN_DATABASE_URL); dashboards read.
GRANT SELECT, INSERT, UPDATE ON fleet_alerts, fleet_alert_deliveries TO fleet_admin;
GRANT SELECT, INSERT, DELETE ON fleet_alert_runs TO fleet_admin;
GRANT SELECT ON fleet_alert_runs TO fleet_analytics;
GRANT USAGE ON SEQUENCE fleet_alerts_id_seq, fleet_alert_deliveries_id_seq TO fleet_admin;
GRANT SELECT ON fleet_alerts, fleet_alert_deliveries TO fleet_analytics;

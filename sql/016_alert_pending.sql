-- Conditions that hold but whose alert waits for more consecutive evaluations (a rule's
-- `evaluations`, e.g. FLEET_ALERT_SOC_STALLED_EVALUATIONS): one row per (kind, subject) with
-- how many evaluations in a row saw it. An evaluation that does not see the condition deletes
-- its row, so the count is of consecutive evaluations; the alert opens when it reaches the
-- rule's number, and the row goes. Kept in the database like the open set, so a restarted
-- evaluator counts on.

CREATE TABLE IF NOT EXISTS fleet_alert_pending (
    kind           text NOT NULL,
    subject        text NOT NULL,
    evaluations    integer NOT NULL,
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (kind, subject)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON fleet_alert_pending TO fleet_admin;
GRANT SELECT ON fleet_alert_pending TO fleet_analytics;

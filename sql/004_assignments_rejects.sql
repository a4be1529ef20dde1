-- Which meter feeds which vehicle, over time. valid_to NULL means "still assigned".
-- The exclusion constraint makes the database refuse two assignments of one vehicle whose
-- periods overlap: a vehicle has at most one meter at any instant. Half-open [from, to).
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE IF NOT EXISTS vehicle_meter_assignments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vehicle_id text COLLATE "C" NOT NULL,
    meter_id   text COLLATE "C" NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to   timestamptz,
    CONSTRAINT assignment_period_valid CHECK (valid_to IS NULL OR valid_to > valid_from),
    CONSTRAINT one_meter_per_vehicle_at_a_time
        EXCLUDE USING gist (vehicle_id WITH =, tstzrange(valid_from, valid_to) WITH &&)
);
-- Analytics look up "which vehicles did this meter feed" (shared meters).
CREATE INDEX IF NOT EXISTS vehicle_meter_assignments_meter
    ON vehicle_meter_assignments USING gist (meter_id, tstzrange(valid_from, valid_to));

-- Dead letters: every message that failed validation, kept with the reason.
-- payload_sha256 makes a redelivered reject (same topic, same bytes) a no-op like readings.
CREATE TABLE IF NOT EXISTS rejected_messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL,
    topic          text        NOT NULL,
    payload        bytea       NOT NULL,
    reason         text        NOT NULL,
    payload_sha256 bytea       NOT NULL,
    CONSTRAINT rejected_messages_once UNIQUE (topic, payload_sha256)
);
CREATE INDEX IF NOT EXISTS rejected_messages_received_at ON rejected_messages (received_at);

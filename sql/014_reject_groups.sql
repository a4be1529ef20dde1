-- Dead letters counted by what broke, not by the values that broke it. A reason quotes values,
-- ids and parser offsets ("meterId: 'XMETER-00123' does not match topic id 'METER-00123'",
-- "payload: not valid JSON (... at line 1 column 57)"), so grouping by its text gave one row per
-- device or column: 79 rows for one broken firmware. fleetd now stores each reject's field and
-- rule without them (fleetd/messages.py decides both), and `fleetctl rejects` / GET /v1/rejects
-- group by (kind, field, rule).
--
-- fleet_ingest's INSERT on rejected_messages is table-wide, so it covers the new columns;
-- fleet_analytics' SELECT too.

ALTER TABLE rejected_messages
    ADD COLUMN IF NOT EXISTS field text,
    ADD COLUMN IF NOT EXISTS rule  text;

-- The rule of a reason written before these columns existed (or by a fleetd older than this
-- migration, until it is restarted): the same words fleetd/messages.py stores today for the
-- reasons it wrote then, else the first error's text without its "(got ...)".
-- tests/integration/test_reject_groups.py checks it against messages.py for every rule.
CREATE OR REPLACE FUNCTION fleet_reject_rule(reason text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN r LIKE 'payload: not valid JSON%' THEN 'not valid JSON'
        WHEN r LIKE 'payload: not UTF-8%' THEN 'not UTF-8'
        WHEN r ~ '^payload: \d+ bytes exceeds \d+$'
            THEN regexp_replace(r, '^payload: \d+ bytes exceeds (\d+)$', 'larger than \1 bytes')
        WHEN r LIKE 'packet: %' THEN 'exceeds FLEET_MQTT_MAX_PACKET_BYTES'
        WHEN r ~ '^timestamp: -?\d+s in the future \(limit \d+s\)$'
            THEN regexp_replace(r, '^.*\(limit (\d+)s\)$', 'more than \1s in the future')
        WHEN r ~ '^(meterId|vehicleId): ''.*'' does not match topic id ''.*''$'
            THEN 'does not match the topic''s id'
        WHEN r LIKE 'database: %' THEN 'refused'
        WHEN strpos(r, ': ') = 0 THEN r
        ELSE regexp_replace(substr(r, strpos(r, ': ') + 2), ' \(got .*\)$', '')
    END
    FROM (SELECT split_part(reason, '; ', 1)) AS first_error(r)
$$;

-- The field is the reason's first word (every reason starts with "field: ").
CREATE OR REPLACE FUNCTION fleet_reject_field(reason text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT split_part(reason, ':', 1)
$$;

UPDATE rejected_messages
   SET field = fleet_reject_field(reason), rule = fleet_reject_rule(reason)
 WHERE rule IS NULL;

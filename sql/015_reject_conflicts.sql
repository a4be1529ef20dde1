-- Conflicts: a reading whose key (device, ts) is stored already with other values. The stored
-- reading stays (first write wins, so history, rollups and reports never change under an
-- operator's feet); the received one is kept here as a reject so that the disagreement shows
-- (`fleetctl rejects`, GET /v1/rejects): its payload is the received reading in the wire
-- format, `stored` the stored values by wire field name, its reason names each field that
-- differs ("kwhConsumedAc: conflicts with the stored reading (got 3.1, stored 2.5)").
-- A reject with `stored` NULL is a message that failed validation. fleetd writes a conflict
-- in the transaction of its batch, so it is acked exactly when kept; a redelivery of the same
-- reading is the same payload, stored once (rejected_messages_once).
--
-- fleet_ingest's INSERT on rejected_messages is table-wide and covers the column, as does
-- fleet_analytics' SELECT; the daemon still reads no dead letter back.

ALTER TABLE rejected_messages ADD COLUMN IF NOT EXISTS stored jsonb;

"""The storage side of ingest, shared by fleetd and fleetctl: decoding a message into readings
or a reject (messages), one batch in one transaction (writer, conflicts), and the replay of
dead letters through that same writer (replay)."""

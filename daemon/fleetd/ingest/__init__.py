"""The ingest pipeline between MQTT and PostgreSQL: buffer, batch, write, ack."""

"""fleetd: MQTT telemetry ingestion into PostgreSQL with ack-after-commit."""

__version__ = "0.1.0"

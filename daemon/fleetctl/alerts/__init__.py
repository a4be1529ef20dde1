"""Alerts: rules (which conditions should be open, with hysteresis), evaluation (one
transaction that opens and resolves them in fleet_alerts), delivery (the outbox, over MQTT and
webhooks), the store (listing and gauges) and the `alerts run` service."""

"""Prometheus metrics of one daemon, on its own registry (no global state)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric fleetd exports at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_received = Counter(
            "fleet_messages_received", "MQTT messages received", ["kind"], registry=r
        )
        self.messages_valid = Counter(
            "fleet_messages_valid", "Messages that passed validation", ["kind"], registry=r
        )
        self.messages_rejected = Counter(
            "fleet_messages_rejected",
            "Messages that failed validation (stored in rejected_messages)",
            ["kind", "field"],
            registry=r,
        )
        self.rows_written = Counter(
            "fleet_rows_written", "History rows inserted (new readings)", ["kind"], registry=r
        )
        self.duplicates = Counter(
            "fleet_duplicate_readings", "Readings already stored (redeliveries)", registry=r
        )
        self.conflicts = Counter(
            "fleet_conflicting_readings",
            "Readings whose key was stored with other values: kept as conflict rejects, the "
            "stored reading unchanged (first write wins)",
            ["kind"],
            registry=r,
        )
        self.flush_duration = Histogram(
            "fleet_flush_duration_seconds",
            "Duration of one flush transaction",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_size = Histogram(
            "fleet_batch_rows",
            "Messages per flush",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
            registry=r,
        )
        self.buffer_depth = Gauge(
            "fleet_buffer_depth", "Messages received and not yet committed", registry=r
        )
        self.lag = Histogram(
            "fleet_publish_to_commit_seconds",
            "Reading timestamp to commit (device clock vs ours)",
            buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.db_reconnects = Counter("fleet_db_reconnects", "Database reconnects", registry=r)
        self.broker_reconnects = Counter("fleet_broker_reconnects", "Broker reconnects", registry=r)
        self.oldest_unacked_age = Gauge(
            "fleet_oldest_unacked_age_seconds", "Age of the oldest unacked message", registry=r
        )
        self.acks_skipped = Counter(
            "fleet_acks_skipped",
            "Acks not sent because the connection changed (the broker redelivers)",
            registry=r,
        )
        self.db_errors = Counter("fleet_db_errors", "Failed flush attempts", ["kind"], registry=r)
        # -1 until a writer has asked (fleetdb.replication): 1 = a commit waits for a
        # synchronous standby, so a failover loses nothing acked; 0 = asynchronous (or none).
        self.db_synchronous_replication = Gauge(
            "fleet_db_synchronous_replication",
            "1 if the database written to replicates synchronously, 0 if not, -1 unknown yet",
            registry=r,
        )
        self.db_synchronous_replication.set(-1)
        # Read at scrape time from the daemon (watch()): what the alert rules in
        # config/prometheus/fleet-rules.yml ask about.
        self.broker_connected = Gauge(
            "fleet_broker_connected", "1 while connected to the MQTT broker", registry=r
        )
        self.healthy = Gauge(
            "fleet_healthy", "1 while /healthz says healthy (broker, database, flushes)", registry=r
        )
        self.last_commit_age = Gauge(
            "fleet_last_commit_age_seconds", "Seconds since the last committed flush", registry=r
        )
        self.subscription_refused = Gauge(
            "fleet_mqtt_subscription_refused",
            "1 while the broker refuses this topic filter (the gateway filter: the device "
            "topics are ingested without it), else 0",
            ["filter"],
            registry=r,
        )

    def watch(
        self,
        connected: Callable[[], bool],
        healthy: Callable[[], bool],
        last_commit_age_s: Callable[[], float],
    ) -> None:
        """Sample these when scraped."""
        self.broker_connected.set_function(lambda: float(connected()))
        self.healthy.set_function(lambda: float(healthy()))
        self.last_commit_age.set_function(last_commit_age_s)

    def watch_subscriptions(self, filters: Iterable[str], refused: Callable[[str], bool]) -> None:
        """Sample, when scraped, whether the broker refuses each of `filters`."""
        for name in filters:
            self.subscription_refused.labels(filter=name).set_function(
                functools.partial(_as_float, refused, name)
            )


def _as_float(test: Callable[[str], bool], name: str) -> float:
    return float(test(name))

"""One definition of "healthy", shared by /healthz, /readyz and the systemd watchdog."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetd.service import Daemon

# A flush that has not committed for this long while messages wait is "stuck". Never below 10 s:
# a PostgreSQL checkpoint or a burst after a reconnect can legitimately take a few seconds.
MIN_STUCK_S = 10.0
STUCK_FLUSH_INTERVALS = 5


@dataclass(frozen=True)
class Health:
    """The verdict plus the facts behind it (what /healthz returns as JSON)."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)


def stuck_after_s(daemon: Daemon) -> float:
    """Seconds without a commit, while rows wait, after which the flush counts as stuck."""
    return max(MIN_STUCK_S, STUCK_FLUSH_INTERVALS * daemon.settings.flush_interval_ms / 1000)


def check(daemon: Daemon, now: float | None = None) -> Health:
    """Healthy = broker connected and answering, database reachable, last flush succeeded, and
    no flush stuck.

    "Broker silent" starts once a PINGREQ went unanswered past its deadline (fleetd.mqtt.liveness):
    the link may be dead although the connection is not given up yet (1.5 x keepalive).

    "Stuck" needs both: the oldest buffered message has waited longer than the limit AND nothing
    committed for that long. Either alone is normal (idle hours; a burst after an idle hour).
    """
    now = time.monotonic() if now is None else now
    reasons: list[str] = []
    if daemon.mqtt.refusal is not None:
        reasons.append(f"broker refused: {daemon.mqtt.refusal}")
    elif not daemon.mqtt.connected:
        error = daemon.mqtt.last_error
        if error:
            reasons.append(f"broker disconnected: {error}")
        elif not daemon.mqtt.generation:  # start-up waits for the database first
            reasons.append("broker not connected yet")
        else:
            reasons.append("broker disconnected")
    silent = daemon.mqtt.silent_s(now)
    if silent is not None:
        reasons.append(f"broker silent for {silent:.0f} s")
    if daemon.flusher.problem is not None:
        reasons.append(f"database refused: {daemon.flusher.problem}")
    elif not daemon.flusher.healthy:
        error = daemon.flusher.last_error
        reasons.append("database unreachable" + (f": {error}" if error else ""))
    if not daemon.last_flush_ok:
        reasons.append("last flush failed")
    buffered = len(daemon.batcher)
    since_commit = now - daemon.last_flush_mono
    oldest = daemon.batcher.oldest_age_s(now) if buffered else 0.0
    limit = stuck_after_s(daemon)
    if buffered and oldest > limit and since_commit > limit:
        reasons.append(
            f"flush stuck: {buffered} messages buffered, no commit for {since_commit:.0f} s"
        )
    elif daemon.oldest_flush_age_s(now) > limit:
        # One transaction hanging with nothing else arriving (e.g. a lock wait).
        reasons.append(
            f"flush stuck: a transaction of {daemon.in_flight} messages running for "
            f"{daemon.oldest_flush_age_s(now):.0f} s"
        )
    c = daemon.counters
    details: dict[str, object] = {
        "broker_connected": daemon.mqtt.connected,
        "broker_url": daemon.mqtt.url,
        "broker_silence_s": round(daemon.mqtt.silence_s(now), 1),
        # A filter the broker refuses while the others are ingested (the gateway filter), with
        # the broker's reason: degraded, not unhealthy (docs/brokers.md).
        "subscriptions_refused": dict(daemon.mqtt.refused_filters),
        "database_reachable": daemon.flusher.healthy,
        # Causes no retry fixes (a login refused, the schema not migrated): the operator's.
        "waiting_for_operator": blocked(daemon),
        "database_writers_connected": daemon.flusher.connected_writers,
        # Whether a failover can lose acked readings (None until a writer has asked).
        "synchronous_replication": (
            None if daemon.flusher.replication is None else daemon.flusher.replication.synchronous
        ),
        "buffered": buffered,
        "oldest_buffered_age_s": round(oldest, 3),
        "last_commit_age_s": round(since_commit, 3),
        "received": c.received,
        "written": c.written,
        "rejected": c.rejected,
        "duplicates": c.duplicates,
        "conflicts": c.conflicts,
        "acked": c.acked,
        "acks_skipped": c.acks_skipped,
    }
    return Health(not reasons, reasons, details)


def blocked(daemon: Daemon) -> list[str]:
    """What the database or the broker refuses (cause: fix), which fleetd keeps retrying slowly
    and no restart fixes; [] when nothing is refused."""
    found = [daemon.flusher.problem, daemon.mqtt.refusal]
    return [str(p) for p in found if p is not None]


def summary(daemon: Daemon) -> str:
    """One short line for systemd's STATUS= (shown by `systemctl status fleetd`)."""
    c = daemon.counters
    return (
        f"received {c.received}, written {c.written}, rejected {c.rejected}, "
        f"buffered {len(daemon.batcher)}"
    )

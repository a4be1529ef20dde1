"""Alerts: evaluated every FLEET_ALERT_INTERVAL_S over a trailing window, kept in fleet_alerts,
delivered through an outbox (fleetctl.alerts.delivery).

One evaluation, in one transaction under an advisory lock: the reports (charger diagnosis,
fleet report, devices past the offline limit) give the alerts that should be open
(fleetctl.alerts.rules, with hysteresis); an alert that should be open and is not opens (and
queues its 'open' deliveries) once its condition held for the evaluations its rule asks
(fleet_alert_pending counts them), one that is open and should not resolves (and queues
'resolve').
The open set lives in the database, so a restarted evaluator neither fires twice nor forgets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from fleetctl.alerts.rules import RULES, Rule, wanted
from fleetctl.alerts.rules.soc_stalled import EVALUATIONS, SOC_DROP_PCT, SocStalled
from fleetctl.analytics.assignment_check import assignment_check
from fleetctl.analytics.chargers import chargers
from fleetctl.analytics.fleet import fleet_report
from fleetctl.analytics.window import Window
from fleetdb.kinds import REGISTRY, VEHICLE

log = structlog.get_logger("fleetctl.alerts")

_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('fleet_alerts'))"

# Devices of every kind (fleetdb.kinds) by their current row.
_OFFLINE = (
    "\n"
    + "\nUNION ALL\n".join(
        f"""SELECT '{k.name}', {k.device}, extract(epoch FROM $1 - ts)::float8 FROM {k.current}
 WHERE ts < $1 - $2 * interval '1 second'"""
        for k in REGISTRY
    )
    + "\n"
)


# Each vehicle's readings with DC in the last hour, ordered by their own timestamps (not by
# arrival): their energy, the SoC of the first and last of them (a vehicle that charged, then
# drove, ends its hour lower: only the charging readings say whether SoC follows DC), and how
# often SoC fell between two consecutive ones by more than $3 (a mixed series: soc_stalled).
_V, _SOC = VEHICLE, VEHICLE.edges.name if VEHICLE.edges else ""
_CHARGING = f"""
SELECT {_V.device}, sum({_V.kwh}), (array_agg({_SOC} ORDER BY ts))[1],
       (array_agg({_SOC} ORDER BY ts DESC))[1], count(*) FILTER (WHERE step < -$3::real)::int
  FROM (SELECT {_V.device}, ts, {_SOC}, {_V.kwh},
               {_SOC} - lag({_SOC}) OVER (PARTITION BY {_V.device} ORDER BY ts) AS step
          FROM {_V.history} WHERE ts >= $1 AND ts < $2 AND {_V.kwh} > 0) c
 GROUP BY {_V.device}
"""

# A condition counted once more by this evaluation (see sql/016); its count after.
_PENDING = """
INSERT INTO fleet_alert_pending AS p (kind, subject, evaluations, first_seen_at, last_seen_at)
VALUES ($1, $2, 1, $3, $3)
ON CONFLICT (kind, subject) DO UPDATE SET evaluations = p.evaluations + 1, last_seen_at = $3
RETURNING evaluations
"""


@dataclass(frozen=True)
class AlertConfig:
    """What and how often to evaluate, and where to deliver."""

    interval_s: float = 600.0
    window_h: float = 24.0
    offline_intervals: int = 10
    reading_interval_s: int = 60
    soc_stalled_evaluations: int = EVALUATIONS
    channels: tuple[str, ...] = ()  # "mqtt" and/or webhook URLs


@dataclass(frozen=True)
class Outcome:
    """What one evaluation changed."""

    opened: list[tuple[str, str]]
    resolved: list[tuple[str, str]]
    still_open: int


async def evaluate(
    conn: asyncpg.Connection, config: AlertConfig, now: datetime | None = None
) -> Outcome:
    """One evaluation (see the module docstring). `conn` needs fleet_admin's rights."""
    now = now or datetime.now(UTC)
    window = Window(now - timedelta(hours=config.window_h), now)
    diagnosis = await chargers(conn, window, interval_s=config.reading_interval_s)
    fleet = await fleet_report(conn, window, interval_s=config.reading_interval_s)
    check = await assignment_check(conn, window, interval_s=config.reading_interval_s, every=True)
    limit = config.offline_intervals * config.reading_interval_s
    offline = [(r[0], r[1], r[2]) for r in await conn.fetch(_OFFLINE, now, float(limit))]
    charging = [
        (r[0], float(r[1]), r[2], r[3], r[4])
        for r in await conn.fetch(_CHARGING, now - timedelta(hours=1), now, SOC_DROP_PCT)
    ]
    async with conn.transaction():
        if not await conn.fetchval(_LOCK):
            return Outcome([], [], -1)  # another evaluator is at it
        rows = await conn.fetch(
            "SELECT id, kind, subject FROM fleet_alerts WHERE resolved_at IS NULL FOR UPDATE"
        )
        open_now = {(r["kind"], r["subject"]): r["id"] for r in rows}
        want = {
            (w.kind, w.subject): w
            for w in wanted(
                diagnosis["chargers"],
                fleet["vehicles"],
                offline,
                open_now,
                charging,
                assignments=check["vehicles"],
                rules=_rules(config),
            )
        }
        # Conditions not seen now start counting again (sql/016).
        await conn.execute(
            """DELETE FROM fleet_alert_pending
                WHERE (kind, subject) NOT IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
            [k for k, _ in want],
            [s for _, s in want],
        )
        opened, resolved = [], []
        for key, w in want.items():
            if key in open_now:
                await conn.execute(
                    "UPDATE fleet_alerts SET last_value = coalesce($2, last_value),"
                    " last_seen_at = $3, details = $4 WHERE id = $1",
                    open_now[key],
                    w.value,
                    now,
                    json.dumps(w.details),
                )
                continue
            if w.evaluations > 1:
                seen = await conn.fetchval(_PENDING, w.kind, w.subject, now)
                if seen < w.evaluations:
                    continue
                await conn.execute(
                    "DELETE FROM fleet_alert_pending WHERE kind = $1 AND subject = $2", *key
                )
            alert_id = await conn.fetchval(
                """INSERT INTO fleet_alerts (kind, subject, opened_at, last_value, last_seen_at,
                                             details)
                   VALUES ($1, $2, $3, $4, $3, $5)
                   ON CONFLICT (kind, subject) WHERE resolved_at IS NULL DO NOTHING
                   RETURNING id""",
                w.kind,
                w.subject,
                now,
                w.value,
                json.dumps(w.details),
            )
            if alert_id is not None:
                opened.append(key)
                await _queue(conn, alert_id, "open", config.channels)
        await conn.execute(
            """WITH gone AS (DELETE FROM fleet_alert_runs
                              WHERE evaluated_at < $1::timestamptz - interval '7 days')
               INSERT INTO fleet_alert_runs (evaluated_at, chargers, vehicles) VALUES ($1, $2, $3)
               ON CONFLICT (evaluated_at) DO NOTHING""",
            now,
            json.dumps(diagnosis["statusCounts"]),
            json.dumps(fleet["statusCounts"]),
        )
        for key, alert_id in open_now.items():
            if key not in want:
                await conn.execute(
                    "UPDATE fleet_alerts SET resolved_at = $2 WHERE id = $1", alert_id, now
                )
                resolved.append(key)
                await _queue(conn, alert_id, "resolve", config.channels)
    return Outcome(opened, resolved, len(want))


def _rules(config: AlertConfig) -> tuple[Rule, ...]:
    """The registry's rules, soc_stalled with the configured number of evaluations."""
    return tuple(
        SocStalled(config.soc_stalled_evaluations) if isinstance(r, SocStalled) else r
        for r in RULES
    )


async def _queue(
    conn: asyncpg.Connection, alert_id: int, event: str, channels: tuple[str, ...]
) -> None:
    for channel in channels:
        await conn.execute(
            """INSERT INTO fleet_alert_deliveries (alert_id, event, channel, idempotency_key)
               VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING""",
            alert_id,
            event,
            channel,
            f"fleet-alert-{alert_id}-{event}-{_slug(channel)}",
        )


def _slug(channel: str) -> str:
    # Stable across processes (the key is what a webhook receiver deduplicates on).
    return (
        "mqtt"
        if channel == "mqtt"
        else "webhook-" + hashlib.sha256(channel.encode()).hexdigest()[:12]
    )


async def run(conn: asyncpg.Connection, config: AlertConfig) -> None:
    """Evaluate every config.interval_s until cancelled (failures are logged, not fatal)."""
    while True:
        try:
            out = await evaluate(conn, config)
            log.info(
                "alerts_evaluated",
                opened=len(out.opened),
                resolved=len(out.resolved),
                open=out.still_open,
            )
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("alerts_evaluation_failed", error=f"{exc.__class__.__name__}: {exc}")
        await asyncio.sleep(config.interval_s)

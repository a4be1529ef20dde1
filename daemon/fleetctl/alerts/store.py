"""The alerts as stored in fleet_alerts and fleet_alert_runs: listed for `fleetctl alerts` and
/v1/alerts, and the fleet gauges of `fleetctl serve`'s /metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from fleetctl.alerts.rules import KINDS
from fleetctl.analytics.energy import DB
from fleetctl.analytics.pages import Page, decode, fingerprint, instant_of, key_of, next_cursor
from fleetctl.analytics.window import iso


def alert_json(r: Any) -> dict[str, Any]:
    """One alert as the API and `fleetctl alerts --json` show it."""
    return {
        "id": r["id"],
        "kind": r["kind"],
        "subject": r["subject"],
        "state": "open" if r["resolved_at"] is None else "resolved",
        "openedAt": iso(r["opened_at"]),
        "resolvedAt": None if r["resolved_at"] is None else iso(r["resolved_at"]),
        "lastValue": r["last_value"],
        "lastSeenAt": iso(r["last_seen_at"]),
        "details": json.loads(r["details"]) if isinstance(r["details"], str) else r["details"],
    }


# Open alerts first, then newest opened, ties by id: a unique order for keyset pages.
_LIST_SQL = """
SELECT * FROM fleet_alerts
 WHERE (resolved_at IS NULL OR resolved_at >= $1)
   AND ($2::boolean IS NULL OR (resolved_at IS NOT NULL) > $2
        OR ((resolved_at IS NOT NULL) = $2 AND (opened_at, id) < ($3, $4::bigint)))
 ORDER BY resolved_at IS NOT NULL, opened_at DESC, id DESC
 LIMIT $5"""
_OPEN_SQL = "SELECT kind, count(*) AS n FROM fleet_alerts WHERE resolved_at IS NULL GROUP BY kind"


async def list_alerts(
    db: DB,
    *,
    recent_h: float = 24.0,
    page: Page | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Open alerts and those resolved in the last `recent_h` hours before `now`, open first,
    newest first; `page`: `limit` of them after the cursor's (`nextCursor` leads on)."""
    page = page or Page()
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=recent_h)
    query = fingerprint("alerts", recent_h)
    after: list[Any] = [None, None, None]
    if page.cursor is not None:
        resolved, opened, ident = key_of(decode(page.cursor, "alerts", query), bool, str, int)
        after = [resolved, instant_of(opened), ident]
    limit = None if page.limit is None else page.limit + 1
    rows, next_page = next_cursor(
        await db.fetch(_LIST_SQL, since, *after, limit),
        page.limit,
        lambda r: [r["resolved_at"] is not None, r["opened_at"].isoformat(), r["id"]],
        listing="alerts",
        query=query,
        now=now,
    )
    counts = {r["kind"]: r["n"] for r in await db.fetch(_OPEN_SQL + " ORDER BY kind")}
    return {
        "open": sum(counts.values()),
        "openByKind": counts,
        "alerts": [alert_json(r) for r in rows],
        "nextCursor": next_page,
    }


async def fleet_metrics(db: DB, now: datetime | None = None) -> bytes:
    """Prometheus text: chargers and vehicles per status as the last evaluation saw them, open
    alerts per kind, and the age of that evaluation (fleetctl serve's /metrics)."""
    registry = CollectorRegistry()
    chargers_g = Gauge(
        "fleet_chargers",
        "Chargers per diagnosis status (last evaluation)",
        ["status"],
        registry=registry,
    )
    vehicles_g = Gauge(
        "fleet_vehicles",
        "Vehicles per billed-efficiency status (last evaluation)",
        ["status"],
        registry=registry,
    )
    open_g = Gauge("fleet_alerts_open", "Open alerts per kind", ["kind"], registry=registry)
    age_g = Gauge(
        "fleet_alert_evaluation_age_seconds", "Seconds since the last evaluation", registry=registry
    )
    last = await db.fetchrow("SELECT * FROM fleet_alert_runs ORDER BY evaluated_at DESC LIMIT 1")
    if last is not None:
        for status, n in json.loads(last["chargers"]).items():
            chargers_g.labels(status).set(n)
        for status, n in json.loads(last["vehicles"]).items():
            vehicles_g.labels(status).set(n)
        age_g.set(((now or datetime.now(UTC)) - last["evaluated_at"]).total_seconds())
    counts = dict.fromkeys(KINDS, 0)
    for r in await db.fetch(
        "SELECT kind, count(*) FROM fleet_alerts WHERE resolved_at IS NULL GROUP BY kind"
    ):
        counts[r[0]] = r[1]
    for kind, n in counts.items():
        open_g.labels(kind).set(n)
    text: bytes = generate_latest(registry)
    return text

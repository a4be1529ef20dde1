"""`fleetctl alerts run`: the evaluator and the delivery worker side by side, configured from
the environment; and the table `fleetctl alerts` prints."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fleetctl.alerts.delivery import deliver_forever
from fleetctl.alerts.evaluation import AlertConfig, run
from fleetctl.cli import render
from fleetctl.errors import AnalyticsError
from fleetdb.connect import connect


def alert_config(env: Mapping[str, str]) -> AlertConfig:
    """FLEET_ALERT_INTERVAL_S (600), FLEET_ALERT_WINDOW_HOURS (24),
    FLEET_ALERT_OFFLINE_INTERVALS (10), FLEET_ALERT_MQTT_URL (set: deliver over MQTT),
    FLEET_ALERT_WEBHOOKS (comma-separated URLs)."""
    try:
        interval = float(env.get("FLEET_ALERT_INTERVAL_S", "600"))
        window = float(env.get("FLEET_ALERT_WINDOW_HOURS", "24"))
        offline = int(env.get("FLEET_ALERT_OFFLINE_INTERVALS", "10"))
    except ValueError as exc:
        raise AnalyticsError(f"alert settings: {exc}") from None
    if interval <= 0 or window <= 0 or offline < 1:
        raise AnalyticsError("alert settings: interval and window must be > 0, offline >= 1")
    hooks = tuple(u.strip() for u in env.get("FLEET_ALERT_WEBHOOKS", "").split(",") if u.strip())
    for u in hooks:
        if not u.startswith(("http://", "https://")):
            raise AnalyticsError(f"FLEET_ALERT_WEBHOOKS: not an http(s) URL: {u!r}")
    mqtt = ("mqtt",) if env.get("FLEET_ALERT_MQTT_URL") else ()
    return AlertConfig(interval_s=interval, window_h=window, offline_intervals=offline,
                       channels=mqtt + hooks)  # fmt: skip


async def run_alerts(url: str, config: AlertConfig, mqtt_url: str | None) -> None:
    """Evaluate and deliver, each on a connection of its own, until cancelled."""
    evaluator = await connect(url, application_name="fleetctl-alerts")
    worker = await connect(url, application_name="fleetctl-alert-delivery")
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run(evaluator, config))
            tg.create_task(deliver_forever(worker, mqtt_url))
    finally:
        await evaluator.close()
        await worker.close()


def show_alerts(r: dict[str, Any]) -> str:
    """Open alerts first, then those resolved in the last 24 h."""
    if not r["alerts"]:
        return "no open or recent alerts"
    cells = [(a["state"], a["kind"], a["subject"], render.num(a["lastValue"], 3), a["openedAt"],
              a["resolvedAt"] or "") for a in r["alerts"]]  # fmt: skip
    head = f"{r['open']} open ({', '.join(f'{n} {k}' for k, n in r['openByKind'].items())})"
    return head + "\n" + render.table(("state", "kind", "subject", "value", "opened", "resolved"),
                                      cells, right={3})  # fmt: skip

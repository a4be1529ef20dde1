"""`fleetctl alerts list|run`: the open and recent alerts, and the evaluator with its delivery."""

from __future__ import annotations

from typing import Any

from fleetctl.cli import render
from fleetctl.cli.app import Job, NounGroup, Output, Service, command, root, service
from fleetctl.roles import Role


@root.group("alerts", cls=NounGroup, default="list")
def alerts() -> None:
    """Open and recent alerts (`alerts run`: the evaluator)."""


_ALERT_COLUMNS = (
    render.Column("state", lambda a: a["state"]),
    render.Column("kind", lambda a: a["kind"]),
    render.Column("subject", lambda a: a["subject"]),
    render.Column("value", lambda a: render.num(a["lastValue"], 3), right=True),
    render.Column("opened", lambda a: a["openedAt"]),
    render.Column("resolved", lambda a: a["resolvedAt"] or "", wide=True),
)


def show_alerts(r: dict[str, Any], out: Output) -> str:
    """Open alerts first, then those resolved in the last 24 h (-o wide: when)."""
    if not r["alerts"]:
        return "no open or recent alerts"
    head = f"{r['open']} open ({', '.join(f'{n} {k}' for k, n in r['openByKind'].items())})"
    return head + "\n" + render.columns(r["alerts"], _ALERT_COLUMNS, wide=out.wide)


@command(alerts, "list", role=Role.ANALYTICS, show=show_alerts)
def list_() -> Job:
    """Open alerts and those resolved in the last 24 h, newest first."""
    from fleetctl.alerts.store import list_alerts  # noqa: PLC0415

    return list_alerts


@service(alerts, "run", role=Role.ADMIN)
def run() -> Service:
    """Evaluate every FLEET_ALERT_INTERVAL_S and deliver (MQTT, webhooks) until stopped; it
    writes the alert state, as FLEET_ADMIN_DATABASE_URL."""

    async def evaluate_and_deliver(settings: Any, url: str) -> int:
        import structlog  # noqa: PLC0415

        from fleetctl.alerts.service import run_alerts  # noqa: PLC0415

        config = settings.alert_config()
        if not config.channels:
            structlog.get_logger("fleetctl.alerts").warning(
                "alerts_not_delivered",
                reason="neither FLEET_ALERT_MQTT_URL nor FLEET_ALERT_WEBHOOKS is set: alerts "
                "are only stored (fleetctl alerts, /v1/alerts)",
            )
        await run_alerts(url, config, settings.alert_mqtt_url)
        return 0

    return evaluate_and_deliver

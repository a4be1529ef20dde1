"""`fleetctl alerts run`: the evaluator and the delivery worker side by side, configured from
the environment; and the table `fleetctl alerts` prints."""

from __future__ import annotations

import asyncio

import asyncpg

from fleetctl.alerts.delivery import deliver_forever
from fleetctl.alerts.evaluation import AlertConfig, run
from fleetdb.connect import connect
from fleetsvc.settings_fields import ConfigError

VARIABLE = "FLEET_ADMIN_DATABASE_URL"
# What evaluation and delivery write (sql/012_alerts.sql grants them to fleet_admin).
_WRITES = (
    ("fleet_alerts", "INSERT"),
    ("fleet_alerts", "UPDATE"),
    ("fleet_alert_runs", "INSERT"),
    ("fleet_alert_runs", "DELETE"),
    ("fleet_alert_deliveries", "INSERT"),
    ("fleet_alert_deliveries", "UPDATE"),
)
_MISSING = """SELECT DISTINCT t FROM unnest($1::text[], $2::text[]) AS w(t, p)
               WHERE NOT has_table_privilege(t, p) ORDER BY t"""


async def check_login(conn: asyncpg.Connection, variable: str = VARIABLE) -> None:
    """ConfigError naming `variable` when its login may not write the alert state: without it
    every evaluation would fail on a permission, forever (a reports login set by mistake)."""
    missing = await conn.fetch(_MISSING, [t for t, _ in _WRITES], [p for _, p in _WRITES])
    if missing:
        tables = ", ".join(r["t"] for r in missing)
        raise ConfigError(
            f"{variable}: this login may not write the alert state ({tables}): set "
            f"{variable} to a fleet_admin login"
        )


async def run_alerts(url: str, config: AlertConfig, mqtt_url: str | None) -> None:
    """Evaluate and deliver, each on a connection of its own, until cancelled; first check
    that the login may write the alert state (ConfigError naming the variable if not)."""
    evaluator = await connect(url, application_name="fleetctl-alerts")
    try:
        await check_login(evaluator)
        worker = await connect(url, application_name="fleetctl-alert-delivery")
    except BaseException:
        await evaluator.close()
        raise
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run(evaluator, config))
            tg.create_task(deliver_forever(worker, mqtt_url))
    finally:
        await evaluator.close()
        await worker.close()

"""`fleetctl alerts run`: the evaluator and the delivery worker side by side, configured from
the environment; and the table `fleetctl alerts` prints."""

from __future__ import annotations

import asyncio

from fleetctl.alerts.delivery import deliver_forever
from fleetctl.alerts.evaluation import AlertConfig, run
from fleetdb.connect import connect


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

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from fleet_harness.publish import Publisher, readings
from fleetd.settings import Settings
from tests.conftest import running, wait_for_count


async def test_smoke(settings: Settings, mqtt_url: str, db: asyncpg.Connection) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    msgs = readings(100, 100, 10, start, timedelta(minutes=1))
    async with running(settings):
        pub = Publisher(mqtt_url)
        await asyncio.to_thread(pub.publish, msgs)
        pub.close()
        n = await wait_for_count(
            db,
            "SELECT (SELECT count(*) FROM meter_readings)"
            " + (SELECT count(*) FROM vehicle_readings)",
            2000,
            20,
        )
    assert n == 2000

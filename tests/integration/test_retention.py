"""fleetd's hourly maintenance: partitions ahead, raw history and rollups on separate clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetd.service import Daemon
from fleetd.settings import Settings
from tests.integration.test_analytics import load

pytestmark = pytest.mark.integration


async def test_maintenance_drops_history_before_rollups(
    db: asyncpg.Connection, settings: Settings
) -> None:
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    await load(db, [("M1", old, 1.0)], [("V1", old, 1.0)])
    daemon = Daemon(settings.model_copy(update={"retention_days": 7, "rollup_retention_days": 30}))
    await daemon.maintain()
    await daemon.flusher.close()
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 0
    assert await db.fetchval("SELECT count(*) FROM vehicle_hourly") == 1
    ahead = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%d")
    assert await db.fetchval("SELECT to_regclass($1) IS NOT NULL", f"meter_readings_p{ahead}")

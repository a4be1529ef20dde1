"""fleetd's hourly maintenance: partitions ahead, raw history and rollups on separate clocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetd.service import Daemon
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.partitions import PartitionCache
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


async def test_sessions_creating_one_day_at_once_all_succeed(
    db: asyncpg.Connection, database_url: str
) -> None:
    """Writers of one daemon (or several daemons) meeting a new day together: every one of
    them gets its partitions, none an "already exists" error (seen in CI after midnight)."""
    conns = [await connect(database_url) for _ in range(6)]
    try:
        for offset in range(40, 46):
            day = datetime.now(UTC).date() + timedelta(days=offset)
            created = await asyncio.gather(*(PartitionCache().ensure(c, [day]) for c in conns))
            assert sum(created) == 8, day  # each of the 8 tables made once, by someone
    finally:
        for c in conns:
            await c.close()

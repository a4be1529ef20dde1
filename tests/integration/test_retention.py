"""fleetd's hourly maintenance: partitions ahead, raw history and rollups on separate clocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import structlog

from fleetd.service import Daemon
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.partitions import PartitionCache
from tests.integration.test_analytics import load

pytestmark = pytest.mark.integration


async def test_maintenance_drops_history_before_rollups(
    db: asyncpg.Connection, settings: Settings, database_url: str
) -> None:
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    await load(db, [("M1", old, 1.0)], [("V1", old, 1.0)])
    keep = {"retention_days": 7, "rollup_retention_days": 30}
    # As the documented fleet_ingest login: partitions ahead yes, dropping no, and it says why.
    with structlog.testing.capture_logs() as logs:
        daemon = Daemon(settings.model_copy(update=keep))
        await daemon.maintain()
        await daemon.flusher.close()
    refused = [e for e in logs if e["event"] == "retention_not_permitted"]
    assert refused
    assert "schema owner" in refused[0]["hint"]
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 1
    # As the schema owner (a deployment that gives fleetd's maintenance that login).
    daemon = Daemon(settings.model_copy(update=keep | {"database_url": database_url}))
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


async def test_rejects_expire_after_their_own_retention_as_the_ingest_login(
    db: asyncpg.Connection, settings: Settings
) -> None:
    for age_days, payload in ((10, b"old"), (1, b"new")):
        await db.execute(
            """INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256)
               VALUES (now() - make_interval(days => $1), 'meters/M1/telemetry', $2,
                       'payload: not valid JSON', sha256($2))""",
            age_days,
            payload,
        )
    daemon = Daemon(settings.model_copy(update={"reject_retention_days": 7}))
    await daemon.maintain()
    await daemon.flusher.close()
    assert [
        bytes(r["payload"]) for r in await db.fetch("SELECT payload FROM rejected_messages")
    ] == [b"new"]

"""Broker restarts and backpressure: the daemon keeps its promises when the world misbehaves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleet_harness import MosquittoServer, PostgresServer
from fleet_harness.publish import readings
from fleet_harness.rows import COUNT_SQL
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.migrate import migrate
from tests.conftest import publish_all, running, total_readings, wait_for_count

pytestmark = pytest.mark.integration

BOTH = COUNT_SQL  # history rows of both kinds


def _start() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


async def test_broker_restart_loses_nothing_queued_for_the_daemon(
    settings: Settings, broker: MosquittoServer, db: asyncpg.Connection
) -> None:
    msgs = readings(200, 200, 10, _start(), timedelta(minutes=1))
    first, second = msgs[:2000], msgs[2000:]
    url = broker.url()
    async with running(settings) as daemon:
        await publish_all(url, first)
        await wait_for_count(db, BOTH, len(first))
        daemon.mqtt.pause()  # the broker must queue the next messages for our session
        await publish_all(url, second)
        await asyncio.to_thread(broker.stop_server)  # SIGTERM: Mosquitto saves its queue
        await asyncio.to_thread(broker.start_server)
        daemon.mqtt.resume()
        assert await wait_for_count(db, BOTH, len(msgs), 60) == len(msgs)
        assert daemon.mqtt.reconnects >= 1
    assert await total_readings(db) == len(msgs)


async def test_buffer_stays_bounded_while_the_database_is_down(
    settings: Settings, mqtt_url: str
) -> None:
    with PostgresServer() as pg:
        conn = await connect(pg.url)
        await migrate(conn)
        await conn.close()
        own = Settings.model_validate(
            settings.model_dump()
            | {"database_url": pg.url, "max_buffered_rows": 500, "batch_max_rows": 100}
        )
        msgs = readings(100, 100, 15, _start(), timedelta(minutes=1))
        async with running(own) as daemon:
            await asyncio.to_thread(pg.stop_server)
            await publish_all(mqtt_url, msgs)  # the broker accepts all of them
            await asyncio.sleep(2)
            assert daemon.mqtt.paused
            held = len(daemon.batcher) + daemon.flusher.writers * own.batch_max_rows
            # Bounded by the limit plus at most one socket read (~256 KiB of messages).
            assert held < own.max_buffered_rows + 3000
            await asyncio.to_thread(pg.start_server)
            conn = await connect(pg.url)
            try:
                assert await wait_for_count(conn, BOTH, len(msgs), 90) == len(msgs)
            finally:
                await conn.close()

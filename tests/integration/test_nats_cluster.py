"""fleetd on a three-node NATS cluster (MQTT over JetStream, everything replicated three times):
the node fleetd reads from is killed -9 mid-stream, fleetd moves to a survivor by itself, and
exactly what the broker acknowledged to the publisher is stored, once."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleet_harness.nats import NatsCluster, nats_unavailable
from fleet_harness.publish import Publisher, readings
from fleet_harness.rows import COUNT_SQL
from fleetd.settings import Settings
from tests.conftest import running, total_readings, wait_for_count

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(nats_unavailable() is not None, reason=nats_unavailable() or ""),
]

BOTH = COUNT_SQL  # history rows of both kinds


@pytest.fixture
def nats() -> Iterator[NatsCluster]:
    with NatsCluster() as cluster:
        yield cluster


def _keys(msgs: list[tuple[str, bytes]]) -> set[tuple[str, datetime]]:
    out = set()
    for _, payload in msgs:
        body = json.loads(payload)
        out.add(
            (body.get("meterId") or body["vehicleId"], datetime.fromisoformat(body["timestamp"]))
        )
    return out


async def _stored_keys(conn: asyncpg.Connection) -> set[tuple[str, datetime]]:
    rows = await conn.fetch(
        "SELECT meter_id AS id, ts FROM meter_readings UNION ALL "
        "SELECT vehicle_id, ts FROM vehicle_readings"
    )
    return {(r["id"], r["ts"]) for r in rows}


@pytest.mark.timeout(120)
async def test_the_node_fleetd_reads_from_killed_mid_stream_loses_and_doubles_nothing(
    settings: Settings, db: asyncpg.Connection, nats: NatsCluster
) -> None:
    first, survivor, _ = nats.nodes
    own = Settings.model_validate(settings.model_dump() | {"mqtt_url": ",".join(nats.urls())})
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    msgs = readings(500, 500, 12, start, timedelta(minutes=1))
    random.Random(22).shuffle(msgs)
    errors: list[BaseException] = []

    def stream(pub: Publisher) -> None:
        try:
            for i in range(0, len(msgs), 500):
                pub.publish(msgs[i : i + 500])
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    async with running(own) as daemon:
        assert daemon.mqtt.url == first.url()
        assert daemon.mqtt.protocol == "3.1.1"  # NATS answers MQTT 5 with CONNACK 0x01
        pub = Publisher(survivor.url(), "streamer", window=200)
        thread = threading.Thread(target=stream, args=(pub,))
        thread.start()
        try:
            await wait_for_count(db, BOTH, 3000)
            killed = time.monotonic()
            await asyncio.to_thread(nats.kill_node, first)
            while not (daemon.mqtt.connected and daemon.mqtt.url != first.url()):
                assert time.monotonic() - killed < 60, "fleetd did not move to a survivor"
                await asyncio.sleep(0.05)
            moved_s = time.monotonic() - killed
        finally:
            await asyncio.to_thread(thread.join)
            pub.close()
        assert not errors, errors
        assert pub.stats.acked == len(msgs)
        assert await wait_for_count(db, BOTH, len(msgs), timeout_s=60) == len(msgs)
        all_stored_s = time.monotonic() - killed
        # A redelivery after ack_wait (5 s) would be a duplicate: wait it out, then compare.
        await asyncio.sleep(6)
        duplicates = daemon.counters.duplicates
    assert await _stored_keys(db) == _keys(msgs)
    assert await total_readings(db) == len(msgs)
    print(
        f"\nNATS failover: fleetd on a survivor {moved_s:.1f} s after kill -9, "
        f"all {len(msgs)} stored {all_stored_s:.1f} s after it, "
        f"{duplicates} redelivered copies ignored"
    )

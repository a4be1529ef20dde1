"""Scale-out: two fleetd processes share the load through an MQTT 5 shared subscription
(FLEET_SHARE_GROUP); one is killed with SIGKILL mid-stream and restarted, as systemd would.
Every reading must be stored exactly once and the rollups must still equal the raw rows."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
from datetime import datetime, timedelta

import asyncpg
import pytest

from fleet_harness.publish import Publisher, readings
from fleetd.settings import Settings
from tests.conftest import assert_rollups_match_raw, spawn_fleetd, total_readings, wait_for_count
from tests.integration.test_ingest import BOTH, _start, _stored_keys

pytestmark = pytest.mark.integration


async def test_two_daemons_one_killed_every_reading_once(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    msgs = readings(400, 400, 25, _start(), timedelta(minutes=1))
    random.Random(11).shuffle(msgs)
    a = settings.model_copy(update={"client_id": settings.client_id + "-a"})
    b = settings.model_copy(update={"client_id": settings.client_id + "-b"})
    shared = {"FLEET_SHARE_GROUP": "ingest", "FLEET_MQTT_PROTOCOL": "5"}
    proc_a, proc_b = spawn_fleetd(a, **shared), spawn_fleetd(b, **shared)
    done = threading.Event()

    def stream() -> None:
        pub = Publisher(mqtt_url, "streamer", window=200)
        try:
            for i in range(0, len(msgs), 400):
                pub.publish(msgs[i : i + 400])
        finally:
            pub.close()
            done.set()

    try:
        await asyncio.sleep(2.0)  # both subscribed
        thread = threading.Thread(target=stream)
        thread.start()
        await wait_for_count(db, BOTH, 4000)
        proc_a.send_signal(signal.SIGKILL)
        proc_a.wait()
        at_kill = await total_readings(db)
        await asyncio.to_thread(thread.join)
        await asyncio.sleep(1.0)
        assert await total_readings(db) > at_kill  # B kept storing while A was down
        # Messages the broker had handed to A (or queued for its durable session) arrive when
        # it comes back with the same client id.
        proc_a = spawn_fleetd(a, **shared)
        assert await wait_for_count(db, BOTH, len(msgs), timeout_s=90) == len(msgs)
        await asyncio.sleep(1.0)  # a late redelivery would show up as an extra row
    finally:
        for proc in (proc_a, proc_b):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    assert proc_a.returncode == 0
    assert proc_b.returncode == 0
    published = {
        (
            json.loads(p).get("meterId") or json.loads(p)["vehicleId"],
            datetime.fromisoformat(json.loads(p)["timestamp"]),
        )
        for _, p in msgs
    }
    assert await _stored_keys(db) == published
    assert await total_readings(db) == len(msgs)
    await assert_rollups_match_raw(db)

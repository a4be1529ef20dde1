"""Scale-out: two fleetd processes share the load through an MQTT 5 shared subscription
(FLEET_SHARE_GROUP); one is killed with SIGKILL mid-stream and restarted, as systemd would.
Every reading must be stored exactly once and the rollups must still equal the raw rows.

Publishing starts only once both daemons answer /readyz (subscribed): a message the broker
receives before any subscription exists is acked to the publisher and dropped (issue 22: a
fixed 2 s sleep lost the head of the stream on a busy machine). When a reading is missing, the
failure names who lost it (tests/evidence.py) and keeps every log in .test-artifacts/."""

from __future__ import annotations

import asyncio
import random
import signal
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from fleet_harness.publish import readings
from fleetd.settings import Settings
from tests.conftest import assert_rollups_match_raw, spawn_fleetd, total_readings, wait_for_count
from tests.evidence import Stream, check_every_reading_once, counters, wait_ready
from tests.integration.test_ingest import BOTH, _start

pytestmark = pytest.mark.integration


@pytest.mark.mosquitto_debug_log
async def test_two_daemons_one_killed_every_reading_once(
    settings: Settings,
    mqtt_url: str,
    db: asyncpg.Connection,
    artifacts: Path,
    request: pytest.FixtureRequest,
) -> None:
    msgs = readings(400, 400, 25, _start(), timedelta(minutes=1))
    random.Random(11).shuffle(msgs)
    a = settings.model_copy(update={"client_id": settings.client_id + "-a"})
    b = settings.model_copy(update={"client_id": settings.client_id + "-b"})
    shared = {"FLEET_SHARE_GROUP": "ingest", "FLEET_MQTT_PROTOCOL": "5"}
    proc_a = spawn_fleetd(a, log_path=artifacts / "fleetd-a.log", **shared)
    proc_b = spawn_fleetd(b, log_path=artifacts / "fleetd-b.log", **shared)
    procs = [proc_a, proc_b]
    try:
        await asyncio.gather(wait_ready(proc_a), wait_ready(proc_b))
        stream = Stream(mqtt_url, msgs, chunk=400).start()
        await wait_for_count(db, BOTH, 4000, check=stream.raise_if_failed)
        killed_a = await counters(proc_a)  # what A had done, as near the kill as we can read it
        proc_a.send_signal(signal.SIGKILL)
        proc_a.wait()
        at_kill = await total_readings(db)
        published = await stream.join()
        await asyncio.sleep(1.0)
        assert await total_readings(db) > at_kill  # B kept storing while A was down
        # Messages the broker had handed to A (or queued for its durable session) arrive when
        # it comes back with the same client id.
        proc_a = spawn_fleetd(a, log_path=artifacts / "fleetd-a2.log", **shared)
        procs.append(proc_a)
        await wait_for_count(db, BOTH, len(msgs), timeout_s=90)
        await asyncio.sleep(1.0)  # a late redelivery would show up as an extra row
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)
    daemons = {"a (killed)": killed_a, "b": proc_b, "a (restarted)": proc_a}
    await check_every_reading_once(request.node, db, msgs, publisher=published, daemons=daemons)
    assert proc_a.returncode == 0
    assert proc_b.returncode == 0
    await assert_rollups_match_raw(db)

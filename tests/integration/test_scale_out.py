"""Scale-out: two fleetd processes share the load through an MQTT 5 shared subscription
(FLEET_SHARE_GROUP); one is killed with SIGKILL mid-stream and restarted, as systemd would.
Every reading must be stored exactly once and the rollups must still equal the raw rows.

Publishing starts only once both daemons answer /readyz (subscribed): a message the broker
receives before any subscription exists is acked to the publisher and dropped (issue 22: a
fixed 2 s sleep lost the head of the stream on a busy machine). When a reading is missing, the
failure names who lost it (tests/evidence.py) and keeps every log in .test-artifacts/."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from fleet_harness.publish import readings
from fleetd.settings import Settings
from tests.conftest import assert_rollups_match_raw
from tests.evidence import check_every_reading_once
from tests.integration.test_ingest import _start
from tests.scenarios import scale_out

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
    outcome = await scale_out(settings, mqtt_url, db, msgs, artifacts, kill_at=4000)
    await check_every_reading_once(
        request.node, db, msgs, publisher=outcome.published, daemons=outcome.daemons
    )
    assert outcome.exit_codes == [0, 0]
    await assert_rollups_match_raw(db)

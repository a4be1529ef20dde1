"""A device flushing its offline buffer in one MQTT message (a JSON array of readings), end to
end on real Mosquitto and PostgreSQL: good elements stored once, bad ones kept as rejects naming
their index, arrays split across batches acked only once all their elements committed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleet_harness.publish import vehicle_message
from fleetd.settings import Settings
from tests.conftest import publish_all, running, total_readings, wait_for_count

pytestmark = pytest.mark.integration

VEHICLES, BUFFERED = 20, 30


def _offline_buffers(start: datetime) -> list[tuple[str, bytes]]:
    """One array message per vehicle: BUFFERED readings, the 8th of each out of bounds."""
    msgs: list[tuple[str, bytes]] = []
    for v in range(VEHICLES):
        vid = f"VEHICLE-{v:05d}"
        items = []
        for n in range(BUFFERED):
            soc = 120.0 if n == 7 else 20 + n * 0.5
            _, body = vehicle_message(vid, start + n * timedelta(minutes=1), soc, 0.1 * n, 25.0)
            items.append(json.loads(body))
        msgs.append((f"vehicles/{vid}/telemetry", json.dumps(items).encode()))
    return msgs


async def test_an_offline_buffer_in_one_message_is_stored_element_by_element_and_acked_once(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    msgs = _offline_buffers(start)
    good = VEHICLES * (BUFFERED - 1)
    # Batches of 7 rows: every array is split across several transactions.
    small = settings.model_copy(update={"batch_max_rows": 7})
    async with running(small) as daemon:
        await publish_all(mqtt_url, msgs)
        await wait_for_count(db, "SELECT count(*) FROM vehicle_readings", good)
        await wait_for_count(db, "SELECT count(*) FROM rejected_messages", VEHICLES)
        for _ in range(100):  # the acks follow the last commit
            if daemon.counters.acked == VEHICLES:
                break
            await asyncio.sleep(0.1)
        assert daemon.counters.acked == VEHICLES  # one ack per message, not per element
        assert daemon.counters.received == VEHICLES * BUFFERED
        # The same buffers flushed again (the device never saw the ack): nothing doubles.
        await publish_all(mqtt_url, msgs)
        for _ in range(200):
            if daemon.counters.acked == 2 * VEHICLES:
                break
            await asyncio.sleep(0.1)
        assert daemon.counters.acked == 2 * VEHICLES
        assert daemon.counters.duplicates == good
    assert await total_readings(db) == good
    rows = await db.fetch("SELECT topic, payload, reason, field FROM rejected_messages")
    assert len(rows) == VEHICLES
    for r in rows:
        assert r["reason"] == "item 7: soc: must be <= 100.0 (got 120.0)"
        assert r["field"] == "soc"
        assert json.loads(bytes(r["payload"]))["soc"] == 120.0  # the element, not the array

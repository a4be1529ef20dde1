"""Conflicts: a reading whose key (device, ts) is stored with other values is kept as a reject
holding both values, the stored reading unchanged (first write wins); an identical redelivery
stays a plain duplicate. Written as fleetd writes (a fleet_ingest login), read as operators do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleet_harness.publish import Publisher, meter_message, vehicle_message
from fleetctl.analytics import rejects
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.ingest.messages import MeterReading, VehicleReading
from fleetdb.ingest.writer import write_batch
from tests.conftest import assert_rollups_match_raw, running, wait_for_count

pytestmark = pytest.mark.integration

T0 = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
NOW = datetime.now(UTC)


@pytest.fixture
async def ingest(ingest_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(ingest_url)
    await conn.execute("SELECT fleet_ensure_day($1)", T0.date())
    try:
        yield conn
    finally:
        await conn.close()


async def _conflicts(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT topic, payload, reason, stored FROM rejected_messages "
        "WHERE stored IS NOT NULL ORDER BY id"
    )


async def test_reading_resent_with_another_value_is_a_conflict_and_the_stored_one_stays(
    db: asyncpg.Connection, ingest: asyncpg.Connection
) -> None:
    first = MeterReading("M-1", T0, 1.25, 230.0)
    other = MeterReading("M-1", T0, 1.5, 230.0)
    r = await write_batch(ingest, [(first, NOW)], [], [])
    assert (r.meters_inserted, r.conflicts, r.duplicates) == (1, 0, 0)

    r = await write_batch(ingest, [(other, NOW)], [], [])
    assert (r.meters_inserted, r.meter_conflicts, r.duplicates) == (0, 1, 0)
    assert float(await db.fetchval("SELECT kwh_consumed_ac FROM meter_readings")) == 1.25
    assert float(await db.fetchval("SELECT kwh_sum FROM meter_hourly")) == 1.25
    [row] = await _conflicts(db)
    assert row["topic"] == "meters/M-1/telemetry"
    assert json.loads(row["stored"]) == {"kwhConsumedAc": 1.25, "voltage": 230.0}
    received = json.loads(bytes(row["payload"]))
    assert (received["kwhConsumedAc"], received["voltage"], received["meterId"]) == (
        1.5,
        230.0,
        "M-1",
    )
    assert datetime.fromisoformat(received["timestamp"]) == T0
    assert (
        row["reason"] == "kwhConsumedAc: conflicts with the stored reading (got 1.5, stored 1.25)"
    )

    # The same conflicting message redelivered: kept once, counted as a duplicate.
    r = await write_batch(ingest, [(other, NOW)], [], [])
    assert (r.conflicts, r.duplicates) == (0, 1)
    assert len(await _conflicts(db)) == 1


async def test_identical_redelivery_is_a_duplicate_not_a_conflict(
    db: asyncpg.Connection, ingest: asyncpg.Connection
) -> None:
    # Values that are not exact in binary: compared as they are stored (numeric, real).
    v = VehicleReading("V-1", T0, 55.1, 0.123457, 21.3)
    m = MeterReading("M-1", T0, 2.345678, 229.9)
    await write_batch(ingest, [(m, NOW)], [(v, NOW)], [])
    r = await write_batch(ingest, [(m, NOW), (m, NOW)], [(v, NOW)], [])
    assert (r.inserted, r.conflicts, r.duplicates) == (0, 0, 3)
    assert await db.fetchval("SELECT count(*) FROM rejected_messages") == 0


async def test_batch_holding_both_versions_of_a_key_keeps_the_first_received(
    db: asyncpg.Connection, ingest: asyncpg.Connection
) -> None:
    a = VehicleReading("V-2", T0, 40.0, 1.0, 20.0)
    b = VehicleReading("V-2", T0, 41.5, 1.0, 20.0)
    plain = [VehicleReading("V-3", T0 + timedelta(minutes=i), 50.0, 0.5, 20.0) for i in range(3)]
    batch = [(p, NOW) for p in plain[:2]] + [(a, NOW), (b, NOW), (a, NOW)] + [(plain[2], NOW)]
    r = await write_batch(ingest, [], batch, [])
    assert (r.vehicles_inserted, r.vehicle_conflicts, r.duplicates) == (4, 1, 1)
    assert await db.fetchval("SELECT soc FROM vehicle_readings WHERE vehicle_id = 'V-2'") == 40.0
    [row] = await _conflicts(db)
    assert json.loads(row["stored"]) == {"soc": 40.0, "kwhDeliveredDc": 1.0, "batteryTemp": 20.0}
    assert json.loads(bytes(row["payload"]))["soc"] == 41.5
    assert row["reason"].startswith("soc: conflicts with the stored reading (got 41.5, stored 40")
    await assert_rollups_match_raw(db)


async def test_conflicts_are_listed_with_both_values(
    db: asyncpg.Connection, ingest: asyncpg.Connection, analytics_url: str
) -> None:
    m = MeterReading("M-9", T0, 1.0, 230.0)
    await write_batch(ingest, [(m, NOW)], [], [])
    for k in (1.1, 1.2):
        await write_batch(ingest, [(MeterReading("M-9", T0, k, 231.0), NOW)], [], [])
    analytics = await connect(analytics_url)
    try:
        listed = await rejects(analytics, since=NOW - timedelta(hours=1))
    finally:
        await analytics.close()
    assert listed["total"] == 2
    [group] = listed["counts"]
    assert (group["kind"], group["field"], group["count"]) == ("meters", "kwhConsumedAc", 2)
    assert group["rule"].endswith("conflicts with the stored reading")  # without the values
    newest = listed["newest"][0]
    assert newest["stored"] == {"kwhConsumedAc": 1.0, "voltage": 230.0}
    assert json.loads(newest["payload"])["voltage"] == 231.0
    assert (
        "voltage: conflicts with the stored reading (got 231.0, stored 230.0)" in (newest["reason"])
    )


async def test_daemon_counts_a_conflict_and_acks_it(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    msgs = [
        meter_message("M-5", T0, 1.0, 230.0),
        vehicle_message("V-5", T0, 50.0, 1.0, 20.0),
    ]
    again = [
        meter_message("M-5", T0, 1.0, 230.0),  # an identical redelivery
        vehicle_message("V-5", T0, 50.0, 2.0, 20.0),  # a correction, not applied
    ]
    async with running(settings) as daemon:
        pub = Publisher(mqtt_url, "")
        try:
            await asyncio.to_thread(pub.publish, msgs)
            await wait_for_count(
                db, "SELECT count(*) FROM meter_readings, vehicle_readings", 1, timeout_s=30
            )
            await asyncio.to_thread(pub.publish, again)
        finally:
            pub.close()
        sql = "SELECT count(*) FROM rejected_messages WHERE stored IS NOT NULL"
        assert await wait_for_count(db, sql, 1, timeout_s=30) == 1
        for _ in range(50):
            if daemon.counters.acked >= 4:
                break
            await asyncio.sleep(0.1)
        sample = daemon.metrics.registry.get_sample_value
        assert sample("fleet_conflicting_readings_total", {"kind": "vehicle"}) == 1
        assert sample("fleet_duplicate_readings_total") == 1
        assert (daemon.counters.conflicts, daemon.counters.acked) == (1, 4)
    assert float(await db.fetchval("SELECT kwh_delivered_dc FROM vehicle_readings")) == 1.0

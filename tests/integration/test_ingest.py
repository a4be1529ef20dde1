"""The ingestion guarantees, end to end on real PostgreSQL and real brokers: Mosquitto, and
aedes (MQTT 3.1.1 only, so fleetd falls back from MQTT 5) where marked BROKERS."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from fleet_harness import PostgresServer
from fleet_harness.publish import meter_message, readings, rfc3339, vehicle_message
from fleet_harness.rows import COUNT_SQL
from fleetd.ops.health import check
from fleetd.settings import Settings
from fleetdb.connect import connect
from fleetdb.migrate import migrate
from tests.conftest import (
    BROKERS,
    assert_rollups_match_raw,
    publish_all,
    running,
    total_readings,
    wait_for_count,
)
from tests.evidence import check_every_reading_once
from tests.scenarios import kill_9

pytestmark = pytest.mark.integration

BOTH = COUNT_SQL  # history rows of both kinds


def _start() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


async def _stored_keys(conn: asyncpg.Connection) -> set[tuple[str, datetime]]:
    rows = await conn.fetch(
        "SELECT meter_id AS id, ts FROM meter_readings UNION ALL "
        "SELECT vehicle_id, ts FROM vehicle_readings"
    )
    return {(r["id"], r["ts"]) for r in rows}


@BROKERS
async def test_20000_readings_land_once_and_current_holds_newest(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    start = _start()
    msgs = readings(1000, 1000, 10, start, timedelta(minutes=1))
    async with running(settings):
        await publish_all(mqtt_url, msgs)
        assert await wait_for_count(db, BOTH, 20_000) == 20_000
    assert await db.fetchval("SELECT count(*) FROM meter_current") == 1000
    assert await db.fetchval("SELECT count(*) FROM vehicle_current") == 1000
    newest = start + timedelta(minutes=9)
    assert await db.fetchval("SELECT count(*) FROM meter_current WHERE ts = $1", newest) == 1000
    row = await db.fetchrow("SELECT * FROM vehicle_current WHERE vehicle_id = 'VEHICLE-00003'")
    assert row is not None
    assert row["ts"] == newest
    assert row["soc"] == pytest.approx(24.5)
    assert float(row["kwh_delivered_dc"]) == pytest.approx(0.45 + 3 * 0.09)
    await assert_rollups_match_raw(db)


@BROKERS
async def test_every_reading_published_twice_is_stored_once(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    msgs = readings(200, 200, 5, _start(), timedelta(minutes=1))
    doubled = [m for m in msgs for _ in range(2)]
    async with running(settings) as daemon:
        await publish_all(mqtt_url, doubled)
        await wait_for_count(db, BOTH, len(msgs))
        # Let the daemon see (and ignore) every second copy before counting.
        for _ in range(100):
            if daemon.counters.received >= len(doubled) and not len(daemon.batcher):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    assert await total_readings(db) == len(msgs)
    assert daemon.counters.duplicates == len(msgs)
    await assert_rollups_match_raw(db)


async def test_out_of_order_delivery_keeps_newest_current_row(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    start = _start()
    newest_first = [
        meter_message("METER-00001", start + timedelta(minutes=m), 1.0 + m, 230.0 + m)
        for m in (9, 3, 7, 1, 5)
    ] + [
        vehicle_message("VEHICLE-00001", start + timedelta(minutes=m), 50.0 + m, 1.0, 20.0)
        for m in (9, 3, 7, 1, 5)
    ]
    async with running(settings):
        for msg in newest_first:  # one at a time: separate flushes, late ones arrive last
            await publish_all(mqtt_url, [msg])
        await wait_for_count(db, BOTH, 10)
    m = await db.fetchrow("SELECT ts, voltage FROM meter_current WHERE meter_id = 'METER-00001'")
    v = await db.fetchrow("SELECT ts, soc FROM vehicle_current WHERE vehicle_id = 'VEHICLE-00001'")
    assert m is not None
    assert v is not None
    assert m["ts"] == start + timedelta(minutes=9)
    assert m["voltage"] == pytest.approx(239.0)
    assert v["ts"] == start + timedelta(minutes=9)
    assert v["soc"] == pytest.approx(59.0)


def _invalid_cases(now: datetime) -> list[tuple[str, bytes, str]]:
    ts = rfc3339(now)
    good_m = {"meterId": "M1", "kwhConsumedAc": 1.0, "voltage": 230.0, "timestamp": ts}
    good_v = {
        "vehicleId": "V1",
        "soc": 50.0,
        "kwhDeliveredDc": 1.0,
        "batteryTemp": 25.0,
        "timestamp": ts,
    }

    def m(**kw: object) -> bytes:
        return json.dumps({**good_m, **kw}).encode()

    def v(**kw: object) -> bytes:
        return json.dumps({**good_v, **kw}).encode()

    mt, vt = "meters/M1/telemetry", "vehicles/V1/telemetry"
    no_id = dict(good_m)
    del no_id["voltage"]
    return [
        (mt, b"\xff\xfe\x00", "payload: not UTF-8"),
        (mt, b"{not json", "payload: not valid JSON"),
        (mt, b'"a string"', "payload: must be a JSON object"),  # an array: test_array_ingest
        (mt, json.dumps(no_id).encode(), "voltage: is required"),
        (mt, m(kwhConsumedAc="1.0"), "kwhConsumedAc: must be a number"),
        (mt, m(voltage=True), "voltage: must be a number"),
        (
            mt,
            m(kwhConsumedAc=1).replace(b'"kwhConsumedAc": 1', b'"kwhConsumedAc": NaN'),
            "kwhConsumedAc: must be a finite number",
        ),
        (
            mt,
            m(kwhConsumedAc=1).replace(b'"kwhConsumedAc": 1', b'"kwhConsumedAc": Infinity'),
            "kwhConsumedAc: must be a finite number",
        ),
        (mt, m(kwhConsumedAc=-0.5), "kwhConsumedAc: must be >= 0"),
        (vt, v(kwhDeliveredDc=-1), "kwhDeliveredDc: must be >= 0"),
        (vt, v(soc=100.5), "soc: must be <= 100"),
        (vt, v(soc=-1), "soc: must be >= 0"),
        (mt, m(voltage=0), "voltage: must be > 0"),
        (mt, m(voltage=1000.5), "voltage: must be <= 1000"),
        (vt, v(batteryTemp=-51), "batteryTemp: must be >= -50"),
        (vt, v(batteryTemp=151), "batteryTemp: must be <= 150"),
        (mt, m(timestamp="2026-01-01T00:00:00"), "timestamp: must be RFC 3339 with a UTC offset"),
        (mt, m(timestamp=1767225600), "timestamp: must be an RFC 3339 string"),
        (mt, m(timestamp="last tuesday"), "timestamp: must be RFC 3339"),
        (mt, m(timestamp=rfc3339(now + timedelta(minutes=10))), "s in the future (limit 300s)"),
        (mt, m(pad="x" * 9000), "payload: 9"),
        (mt, m(meterId="M2"), "meterId: 'M2' does not match topic id 'M1'"),
        (vt, v(vehicleId="V9"), "vehicleId: 'V9' does not match topic id 'V1'"),
        ("meters/bad id!/telemetry", m(meterId="bad id!"), "topic: device id must match"),
        ("meters/" + "x" * 65 + "/telemetry", m(meterId="x" * 65), "topic: device id must match"),
    ]


@BROKERS
async def test_invalid_payloads_are_kept_with_reasons_and_valid_ones_stored(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    cases = _invalid_cases(now)
    valid = readings(20, 20, 1, now - timedelta(minutes=5), timedelta(minutes=1))
    interleaved: list[tuple[str, bytes]] = []
    for i, (topic, payload, _) in enumerate(cases):
        interleaved += [valid[i], (topic, payload)]
    interleaved += valid[len(cases) :]
    async with running(settings) as daemon:
        await publish_all(mqtt_url, interleaved)
        await wait_for_count(db, "SELECT count(*) FROM rejected_messages", len(cases))
        await wait_for_count(db, BOTH, len(valid))
        assert not daemon.stopping
    assert await total_readings(db) == len(valid)
    rows = await db.fetch("SELECT topic, payload, reason FROM rejected_messages")
    by_payload = {(r["topic"], bytes(r["payload"])): r["reason"] for r in rows}
    assert len(by_payload) == len(cases)
    for topic, payload, reason in cases:
        assert reason in by_payload[(topic, payload)], (topic, payload[:60])
    assert daemon.counters.rejected == len(cases)


@BROKERS
@pytest.mark.mosquitto_debug_log
async def test_kill_9_mid_stream_loses_and_doubles_nothing(
    settings: Settings,
    mqtt_url: str,
    db: asyncpg.Connection,
    artifacts: Path,
    request: pytest.FixtureRequest,
) -> None:
    msgs = readings(500, 500, 20, _start(), timedelta(minutes=1))
    random.Random(7).shuffle(msgs)
    outcome = await kill_9(settings, mqtt_url, db, msgs, artifacts, kill_at=3000)
    await check_every_reading_once(
        request.node, db, msgs, publisher=outcome.published, daemons=outcome.daemons
    )
    assert outcome.exit_codes == [0]
    await assert_rollups_match_raw(db)


async def test_postgres_outage_loses_nothing_and_daemon_survives(
    settings: Settings, mqtt_url: str
) -> None:
    with PostgresServer() as pg:
        conn = await connect(pg.url)
        await migrate(conn)
        await conn.close()
        own = Settings.model_validate(settings.model_dump() | {"database_url": pg.url})
        msgs = readings(100, 100, 30, _start(), timedelta(minutes=1))
        first, during, after = msgs[:2000], msgs[2000:4000], msgs[4000:]
        async with running(own) as daemon:
            run_task = next(t for t in asyncio.all_tasks() if t.get_name() == "daemon")
            await publish_all(mqtt_url, first)
            conn = await connect(pg.url)
            await wait_for_count(conn, BOTH, len(first))
            await conn.close()
            await asyncio.to_thread(pg.stop_server)
            await publish_all(mqtt_url, during)
            await asyncio.sleep(10)
            assert not run_task.done()
            assert not daemon.flusher.healthy
            assert not daemon.last_flush_ok
            assert "last flush failed" in check(daemon).reasons
            await asyncio.to_thread(pg.start_server)
            await publish_all(mqtt_url, after)
            conn = await connect(pg.url)
            try:
                assert await wait_for_count(conn, BOTH, len(msgs), 60) == len(msgs)
                await assert_rollups_match_raw(conn)
            finally:
                await conn.close()
            assert not run_task.done()
            assert daemon.flusher.healthy
            assert daemon.last_flush_ok


async def test_reading_for_a_day_without_partition_is_stored(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    part = f"meter_readings_p{old:%Y%m%d}"
    assert await db.fetchval("SELECT to_regclass($1)", part) is None
    async with running(settings):
        await publish_all(mqtt_url, [meter_message("METER-00001", old, 1.25, 231.0)])
        assert await wait_for_count(db, "SELECT count(*) FROM meter_readings", 1) == 1
    assert await db.fetchval("SELECT to_regclass($1)::text", part) == part
    assert await db.fetchval("SELECT kwh_sum FROM meter_hourly") == pytest.approx(1.25)

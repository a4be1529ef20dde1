"""Gateways (gateways/{id}/telemetry) end to end on real Mosquitto and PostgreSQL: one message
carrying readings of several meters and vehicles, each stored or rejected on its own, the
message acked once all its elements committed; after a kill -9 of fleetd between the
transactions of one message, the broker redelivers it and every reading is stored once;
fleet-sim --gateways landing exactly its truth; and FLEET_MQTT_GATEWAYS=off on a durable
session that subscribed to them before."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from fleet_harness.publish import PublishError, meter_message, vehicle_message
from fleetd.cli import EXIT_CONFIG, one_line
from fleetd.ingest.gateway_grants import GatewaysFileError
from fleetd.service import Daemon
from fleetd.settings import Settings
from fleetsim.gateways import MAX_READINGS
from fleetsim.runner import SimOptions, run_sim
from tests.conftest import (
    assert_rollups_match_raw,
    publish_all,
    running,
    spawn_fleetd,
    total_readings,
    wait_for_count,
)
from tests.evidence import wait_ready

pytestmark = pytest.mark.integration


def _reading(n: int, ts: datetime) -> dict[str, Any]:
    """Reading n: even ones of meters, odd ones of vehicles, 50 devices of each kind."""
    if n % 2:
        _, body = vehicle_message(f"VEHICLE-{n % 100:05d}", ts, 20 + (n % 80), 0.25, 25.0)
    else:
        _, body = meter_message(f"METER-{n % 100:05d}", ts, 0.5, 230.0)
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def _gateway_messages(gateways: int, per_gateway: int, t0: datetime) -> list[tuple[str, bytes]]:
    """Each gateway's readings in minutes of their own: 100 devices a minute, no key twice."""
    msgs = []
    minutes = per_gateway // 100 + 1
    for g in range(gateways):
        items = [
            _reading(n, t0 + timedelta(minutes=g * minutes + n // 100)) for n in range(per_gateway)
        ]
        msgs.append((f"gateways/GW-{g:04d}/telemetry", json.dumps(items).encode()))
    return msgs


async def test_a_gateways_mixed_readings_stored_each_on_its_own_and_acked_once(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    msgs = _gateway_messages(4, 60, t0)
    # One element per message out of bounds, one in the {type, payload} shape.
    topic, payload = msgs[0]
    items = json.loads(payload)
    items[5]["soc"] = 150
    items[6] = {"type": "METER", "payload": items[6]}
    msgs[0] = (topic, json.dumps(items).encode())
    good = 4 * 60 - 1
    # Batches of 7 rows: every message is split across several transactions.
    small = settings.model_copy(update={"batch_max_rows": 7})
    async with running(small) as daemon:
        await publish_all(mqtt_url, msgs)
        await wait_for_count(db, "SELECT count(*) FROM rejected_messages", 1)
        for _ in range(200):  # the acks follow the last commit
            if daemon.counters.acked == len(msgs):
                break
            await asyncio.sleep(0.1)
        assert daemon.counters.acked == len(msgs)  # one ack per message, not per element
        assert daemon.counters.received == 4 * 60
        assert await total_readings(db) == good
        # The same messages again (the gateway never saw the acks): nothing doubles.
        await publish_all(mqtt_url, msgs)
        for _ in range(200):
            if daemon.counters.acked == 2 * len(msgs):
                break
            await asyncio.sleep(0.1)
        assert daemon.counters.duplicates == good
    assert await total_readings(db) == good
    meters = await db.fetchval("SELECT count(*) FROM meter_readings")
    assert meters == 4 * 30
    (reject,) = await db.fetch("SELECT topic, reason, field, payload FROM rejected_messages")
    assert reject["topic"] == f"vehicles/{items[5]['vehicleId']}/telemetry"
    assert reject["reason"] == "gateway GW-0000 item 5: soc: must be <= 100.0 (got 150)"
    assert reject["field"] == "soc"
    assert json.loads(bytes(reject["payload"]))["soc"] == 150
    await assert_rollups_match_raw(db)


async def test_kill_9_between_the_transactions_of_one_message_redelivers_it_and_stores_once(
    settings: Settings, db: asyncpg.Connection, mqtt_url: str, tmp_path: Path
) -> None:
    env = {
        # Two full batches commit at once, the last 100 wait for the (long) interval: the
        # kill lands after some of the message's elements committed and before it was acked.
        "FLEET_BATCH_MAX_ROWS": "150",
        "FLEET_FLUSH_INTERVAL_MS": "60000",
        "FLEET_FLUSH_IDLE_MS": "0",
    }
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=5)
    # 400 readings, ~46 KB: under the repo's mosquitto.conf max_packet_size (64 KiB).
    msgs = _gateway_messages(1, 400, t0)
    first = spawn_fleetd(settings, log_path=tmp_path / "fleetd-1.log", **env)
    try:
        await wait_ready(first)
        await publish_all(mqtt_url, msgs)
        assert await wait_for_count(db, COUNT, 300, timeout_s=30) == 300
        await asyncio.sleep(0.5)
        assert await total_readings(db) == 300  # the last 100 wait: the message is unacked
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    env["FLEET_FLUSH_INTERVAL_MS"] = "200"
    # Same client id, durable session: the broker redelivers the unacked message.
    second = spawn_fleetd(settings, log_path=tmp_path / "fleetd-2.log", **env)
    try:
        await wait_ready(second)
        assert await wait_for_count(db, COUNT, 400, timeout_s=60) == 400
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    for table, key in (("meter_readings", "meter_id"), ("vehicle_readings", "vehicle_id")):
        rows = await db.fetch(f"SELECT {key}, ts, count(*) AS n FROM {table} GROUP BY 1, 2")
        assert len(rows) == 200
        assert all(r["n"] == 1 for r in rows)
    assert await db.fetchval("SELECT count(*) FROM rejected_messages") == 0
    await assert_rollups_match_raw(db)


async def test_fleet_sim_through_gateways_lands_every_reading_once(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    options = SimOptions(
        meters=700,
        vehicles=700,
        seed=5,
        speed=1200,
        sim_hours=10 / 60,
        mqtt_url=mqtt_url,
        gateways=3,  # ~467 readings a gateway a tick: two messages each (MAX_READINGS)
        duplicate_rate=0.02,
        out_of_order_rate=0.02,
        clock_skew_s=20,
    )
    assert MAX_READINGS < 1400 / 3
    async with running(settings) as daemon:
        summary = await run_sim(options)
        valid = summary.meters + summary.vehicles
        assert valid == 14_000
        assert summary.acked == summary.sent < valid / 100
        await wait_for_count(db, COUNT, valid, 60)
        for _ in range(200):  # every copy received and absorbed
            if daemon.counters.acked == summary.sent:
                break
            await asyncio.sleep(0.1)
        assert daemon.counters.acked == summary.sent
        assert daemon.counters.received == valid + summary.duplicates
        assert daemon.counters.rejected == 0
    assert await total_readings(db) == valid
    await assert_rollups_match_raw(db)


COUNT = "SELECT (SELECT count(*) FROM meter_readings) + (SELECT count(*) FROM vehicle_readings)"


async def test_fleet_gateways_file_limits_a_gateway_to_its_devices(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    grants = tmp_path / "gateways"
    grants.write_text("GW-0000 METER-*\n")
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    msgs = _gateway_messages(2, 10, t0)  # GW-0000 and GW-0001 (not listed), 5 meters each
    async with running(settings.model_copy(update={"gateways_file": grants})) as daemon:
        await publish_all(mqtt_url, msgs)
        await wait_for_count(db, "SELECT count(*) FROM rejected_messages", 15)
        for _ in range(100):
            if daemon.counters.acked == len(msgs):
                break
            await asyncio.sleep(0.1)
        assert daemon.counters.acked == len(msgs)
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 5
    assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == 0
    rows = await db.fetch("SELECT topic, field FROM rejected_messages")
    assert len(rows) == 15
    assert {(r["topic"], r["field"]) for r in rows} == {
        ("gateways/GW-0000/telemetry", "device"),
        ("gateways/GW-0001/telemetry", "device"),
    }
    # A file fleetd cannot use: one line naming the variable, exit 2.
    with pytest.raises(GatewaysFileError, match="FLEET_GATEWAYS_FILE: cannot read") as caught:
        Daemon(settings.model_copy(update={"gateways_file": tmp_path / "missing"}))
    assert one_line(caught.value) == (EXIT_CONFIG, f"invalid configuration: {caught.value}")


async def test_gateways_off_after_a_durable_session_subscribed_them_stores_no_gateway_readings(
    settings: Settings, mqtt_url: str, db: asyncpg.Connection
) -> None:
    # FLEET_MQTT_GATEWAYS=off on a client id whose durable session an earlier run (gateways on)
    # subscribed to gateways/+/telemetry: fleetd unsubscribes it, and the gateway message the
    # session queued while fleetd was down is acked and kept as a reject saying why, never
    # stored as readings; the device topics are ingested as before.
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    async with running(settings) as daemon:
        await publish_all(mqtt_url, _gateway_messages(1, 2, t0))
        assert await wait_for_count(db, "SELECT count(*) FROM meter_readings", 1) == 1
    # fleetd is down: the session (kept, 7 days of expiry) queues a gateway's and a device's.
    queued_gateway = _gateway_messages(1, 2, t0 + timedelta(minutes=10))
    _, device = meter_message("METER-00777", t0 + timedelta(minutes=20), 0.5, 230.0)
    await publish_all(mqtt_url, [*queued_gateway, ("meters/METER-00777/telemetry", device)])
    off = settings.model_copy(update={"mqtt_gateways": "off"})
    with structlog.testing.capture_logs() as logs:
        async with running(off) as daemon:
            await wait_for_count(db, "SELECT count(*) FROM rejected_messages", 1)
            assert await wait_for_count(db, "SELECT count(*) FROM meter_readings", 2) == 2
            for _ in range(100):
                if any(e["event"] == "gateway_filter_unsubscribed" for e in logs):
                    break
                await asyncio.sleep(0.1)
            # Unsubscribed: the broker routes a gateway's message to no one now.
            with pytest.raises(PublishError, match="no matching subscribers"):
                await publish_all(mqtt_url, _gateway_messages(1, 2, t0 + timedelta(minutes=30)))
            for _ in range(100):
                if daemon.counters.acked == 2:
                    break
                await asyncio.sleep(0.1)
            assert daemon.counters.acked == 2  # the queued gateway message and the device's
    (done,) = [e for e in logs if e["event"] == "gateway_filter_unsubscribed"]
    assert done["filter"] == "gateways/+/telemetry"
    assert await db.fetchval("SELECT count(*) FROM meter_readings") == 2
    assert await db.fetchval("SELECT count(*) FROM vehicle_readings") == 1  # the first run's
    rows = await db.fetch("SELECT topic, reason, payload FROM rejected_messages")
    assert [(r["topic"], r["reason"], r["payload"]) for r in rows] == [
        (queued_gateway[0][0], "gateways are off (FLEET_MQTT_GATEWAYS=off)", queued_gateway[0][1])
    ]

"""The batched history-only reference pipeline, kept here so every benchmark run measures it.

What a typical Node-RED or Telegraf flow does: subscribe with a durable session, let the MQTT
client ack each message on arrival (paho's default), collect what has arrived into a batch of
up to 5,000, and write it with one multi-row INSERT per history table (unnest arrays, ON
CONFLICT DO NOTHING so a redelivery is not stored twice). No rollups, no current table, no
rejects, no conflict detection: the cheapest write that keeps the history's keys. Unsafe (a
crash loses whatever was acked and not committed); measured only for speed and for the
database CPU one stored reading costs.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fleetd.mqtt.subscriber import TOPIC_FILTERS

BATCH = 5_000

_METERS = """INSERT INTO meter_readings (meter_id, ts, kwh_consumed_ac, voltage, received_at)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::real[], $5::timestamptz[])
ON CONFLICT DO NOTHING"""
_VEHICLES = """INSERT INTO vehicle_readings
    (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, received_at)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::real[], $4::float8[], $5::real[],
                     $6::timestamptz[])
ON CONFLICT DO NOTHING"""


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _columns(batch: list[tuple[str, bytes, datetime]]) -> tuple[list[list[Any]], list[list[Any]]]:
    """The batch as column arrays: meters' (id, ts, kWh, V, received) and vehicles'."""
    meters: list[list[Any]] = [[], [], [], [], []]
    vehicles: list[list[Any]] = [[], [], [], [], [], []]
    for topic, payload, received in batch:
        doc = json.loads(payload)
        row: tuple[Any, ...]
        if topic.startswith("meters/"):
            row = (doc["meterId"], _ts(doc["timestamp"]), doc["kwhConsumedAc"], doc["voltage"])
            target = meters
        else:
            row = (
                doc["vehicleId"],
                _ts(doc["timestamp"]),
                doc["soc"],
                doc["kwhDeliveredDc"],
                doc["batteryTemp"],
            )
            target = vehicles
        for col, value in zip(target, (*row, received), strict=True):
            col.append(value)
    return meters, vehicles


def process_cpu_seconds() -> float:
    """This process's CPU (every thread: paho's network loop included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drain_batched(
    mqtt_url: str, conn: asyncpg.Connection, client_id: str, expected: int
) -> int:
    """Subscribe with the durable session `client_id` (MQTT 3.1.1, clean session off), store
    `expected` messages through `conn` in batches of what has arrived (up to BATCH), one
    transaction per batch, and return how many messages were written."""
    # paho's network thread appends (deque.append is atomic); the writer takes what is there.
    buffer: deque[tuple[str, bytes, datetime]] = deque()
    parts = urlsplit(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        buffer.append((msg.topic, bytes(msg.payload), datetime.now(UTC)))

    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe([(f, 1) for f in TOPIC_FILTERS])
    stored = 0
    try:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        while stored < expected:
            if not buffer:
                await asyncio.sleep(0.001)
                continue
            batch = [buffer.popleft() for _ in range(min(BATCH, len(buffer)))]
            meters, vehicles = _columns(batch)
            async with conn.transaction():
                if meters[0]:
                    await conn.execute(_METERS, *meters)
                if vehicles[0]:
                    await conn.execute(_VEHICLES, *vehicles)
            stored += len(batch)
    finally:
        client.disconnect()
        client.loop_stop()
    return stored

"""The per-message reference design, kept here so every benchmark run measures it again.

This is what the seed designs (NestJS services behind an MQTT client) do: the client acks each
message on arrival (paho's default), then the handler runs one transaction per message that
inserts the history row and upserts the device's current row. It is correct for one message
at a time and loses whatever is between ack and commit on a crash; we measure it only for speed.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fleetd.mqtt.subscriber import TOPIC_FILTERS

_METER = """INSERT INTO meter_readings (meter_id, ts, kwh_consumed_ac, voltage, received_at)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"""
_METER_CURRENT = """
INSERT INTO meter_current AS c (meter_id, ts, kwh_consumed_ac, voltage, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (meter_id) DO UPDATE SET ts = excluded.ts, kwh_consumed_ac = excluded.kwh_consumed_ac,
    voltage = excluded.voltage, updated_at = excluded.updated_at WHERE c.ts < excluded.ts"""
_VEHICLE = """INSERT INTO vehicle_readings
              (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, received_at)
              VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"""
_VEHICLE_CURRENT = """
INSERT INTO vehicle_current AS c (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (vehicle_id) DO UPDATE SET ts = excluded.ts, soc = excluded.soc,
    kwh_delivered_dc = excluded.kwh_delivered_dc, battery_temp = excluded.battery_temp,
    updated_at = excluded.updated_at WHERE c.ts < excluded.ts"""


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def drain_per_message(mqtt_url: str, database_url: str, client_id: str, expected: int) -> int:
    """Subscribe with the durable session `client_id`, store `expected` messages one
    transaction each, and return how many were stored."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    parts = urlsplit(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (msg.topic, bytes(msg.payload)))

    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe([(f, 1) for f in TOPIC_FILTERS])
    conn = await asyncpg.connect(database_url, server_settings={"timezone": "UTC"})
    stored = 0
    try:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        while stored < expected:
            topic, payload = await queue.get()
            doc = json.loads(payload)
            ts = _ts(doc["timestamp"])
            async with conn.transaction():
                if topic.startswith("meters/"):
                    await conn.execute(
                        _METER,
                        doc["meterId"],
                        ts,
                        doc["kwhConsumedAc"],
                        doc["voltage"],
                        datetime.now(ts.tzinfo),
                    )
                    await conn.execute(
                        _METER_CURRENT, doc["meterId"], ts, doc["kwhConsumedAc"], doc["voltage"]
                    )
                else:
                    await conn.execute(
                        _VEHICLE,
                        doc["vehicleId"],
                        ts,
                        doc["soc"],
                        doc["kwhDeliveredDc"],
                        doc["batteryTemp"],
                        datetime.now(ts.tzinfo),
                    )
                    await conn.execute(
                        _VEHICLE_CURRENT,
                        doc["vehicleId"],
                        ts,
                        doc["soc"],
                        doc["kwhDeliveredDc"],
                        doc["batteryTemp"],
                    )
            stored += 1
    finally:
        client.disconnect()
        client.loop_stop()
        await conn.close()
    return stored

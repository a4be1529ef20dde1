"""The benchmark's readings: the simulator's fleet as MQTT messages, decoded for the
write-path stages, published as fast as the broker takes them or paced as live devices."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetdb.ingest.messages import MeterReading, Rejected, VehicleReading, decode
from fleetsim.model import Fleet, FleetConfig
from fleetsim.publisher import MqttPublisher


def fleet_messages(n: int, start: datetime) -> list[tuple[str, bytes]]:
    """n readings of the 10,000 + 10,000 device fleet, one tick after another."""
    fleet = Fleet(FleetConfig())
    out: list[tuple[str, bytes]] = []
    ts = start
    while len(out) < n:
        out.extend((m[2], m[3]) for m in fleet.tick(ts))
        ts += timedelta(seconds=60)
    return out[:n]


def decoded(messages: list[tuple[str, bytes]]) -> tuple[list[Any], list[Any]]:
    now = datetime.now(UTC)
    meters: list[tuple[MeterReading, datetime]] = []
    vehicles: list[tuple[VehicleReading, datetime]] = []
    for topic, payload in messages:
        item = decode(
            topic, payload, now, max_future=timedelta(days=1), max_past=timedelta(days=30)
        )
        if isinstance(item, MeterReading):
            meters.append((item, now))
        elif isinstance(item, VehicleReading):
            vehicles.append((item, now))
        elif isinstance(item, Rejected):
            raise TypeError(f"benchmark reading rejected: {item.reason}")
    return meters, vehicles


async def publish(mqtt_url: str, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 with the simulator's fast publisher; returns messages/s (all acked)."""
    pub = MqttPublisher(mqtt_url, qos=1, connections=2, client_id_prefix="bench")
    await pub.connect()
    started = time.perf_counter()
    await pub.publish(messages)
    await pub.close()
    return len(messages) / (time.perf_counter() - started)


async def paced_load(mqtt_url: str, rate: float, seconds: float) -> int:
    """rate readings/s from 10,000 + 10,000 devices, each stamped with the time it is sent,
    spread evenly as real devices are (not in bursts)."""
    pub = MqttPublisher(mqtt_url, qos=1, connections=1, client_id_prefix="bench-load")
    await pub.connect()
    sent = 0
    started = time.perf_counter()
    step = 0.01  # publish every 10 ms what is due
    try:
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate) + 1 - sent
            now = datetime.now(UTC)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
            batch = []
            for k in range(sent, sent + max(0, due)):
                i = k % 20_000
                if i < 10_000:
                    dev = f"METER-{i + 1:05d}"
                    body = (
                        f'{{"meterId":"{dev}","kwhConsumedAc":0.{k % 1000:03d},'
                        f'"voltage":230.1,"timestamp":"{stamp}"}}'
                    )
                    batch.append((f"meters/{dev}/telemetry", body.encode()))
                else:
                    dev = f"VEHICLE-{i - 9_999:05d}"
                    body = (
                        f'{{"vehicleId":"{dev}","soc":50.5,"kwhDeliveredDc":0.{k % 900:03d},'
                        f'"batteryTemp":25.5,"timestamp":"{stamp}"}}'
                    )
                    batch.append((f"vehicles/{dev}/telemetry", body.encode()))
            if batch:
                await pub.publish(batch)
                sent += len(batch)
            await asyncio.sleep(step)
    finally:
        await pub.close()
    return sent

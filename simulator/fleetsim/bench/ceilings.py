"""The ceilings fleetd is measured against: the broker's (mosquitto_sub draining a queue), the
database's (COPY) and fleetd's own write path without MQTT."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import asyncpg

from fleet_harness import MosquittoServer
from fleetdb.connect import connect
from fleetdb.ingest.writer import write_batch


def broker_ceiling_rate(broker: MosquittoServer, n: int) -> float:
    """mosquitto_sub (C) draining n queued QoS 1 messages."""
    cmd = [
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        str(broker.port),
        "-c",
        "-i",
        "bench-sub",
        "-q",
        "1",
        "-t",
        "meters/+/telemetry",
        "-t",
        "vehicles/+/telemetry",
        "-C",
        str(n),
    ]
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, timeout=600)
    return n / (time.perf_counter() - started)


async def copy_ceiling(url: str, meters: list[Any], vehicles: list[Any]) -> float:
    """COPY into the history tables: the fastest plain write (no conflict handling)."""
    m_rows = [(m.meter_id, m.ts, m.kwh_consumed_ac, m.voltage, r) for m, r in meters]
    v_rows = [
        (v.vehicle_id, v.ts, v.soc, v.kwh_delivered_dc, v.battery_temp, r) for v, r in vehicles
    ]
    a, b = await connect(url), await connect(url)
    try:
        started = time.perf_counter()
        await asyncio.gather(
            a.copy_records_to_table(
                "meter_readings",
                records=m_rows,
                columns=["meter_id", "ts", "kwh_consumed_ac", "voltage", "received_at"],
            ),
            b.copy_records_to_table(
                "vehicle_readings",
                records=v_rows,
                columns=[
                    "vehicle_id",
                    "ts",
                    "soc",
                    "kwh_delivered_dc",
                    "battery_temp",
                    "received_at",
                ],
            ),
        )
        return (len(m_rows) + len(v_rows)) / (time.perf_counter() - started)
    finally:
        await a.close()
        await b.close()


async def dual_write_ceiling(
    url: str, meters: list[Any], vehicles: list[Any], batch: int
) -> tuple[float, list[float]]:
    """fleetd's own write path (history + rollups + current, one transaction per batch) on two
    connections, without MQTT: the database side of the pipeline at full speed. Also each
    batch's seconds in its transaction (what fleetd's write timeout is sized on)."""
    conns = [await connect(url), await connect(url)]
    queue = [
        (meters[i : i + batch // 2], vehicles[i : i + batch // 2])
        for i in range(0, max(len(meters), len(vehicles)), batch // 2)
    ]
    seconds: list[float] = []

    async def worker(conn: asyncpg.Connection) -> None:
        while queue:
            m, v = queue.pop(0)
            began = time.perf_counter()
            await write_batch(conn, m, v, [])
            seconds.append(time.perf_counter() - began)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        return (len(meters) + len(vehicles)) / (time.perf_counter() - started), seconds
    finally:
        for c in conns:
            await c.close()

"""`make demo`: throwaway PostgreSQL + Mosquitto, fleetd as a real subprocess, a few thousand
readings, then what landed. Everything is removed at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from fleet_harness import MosquittoServer, PostgresServer
from fleet_harness.publish import Publisher, readings

BIN = Path(sys.executable).parent


def _fleetd(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "fleetd"), *args], env=os.environ | env)


async def _wait_rows(url: str, expected: int, timeout_s: float = 60) -> int:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            n: int = await conn.fetchval(
                "SELECT (SELECT count(*) FROM meter_readings)"
                " + (SELECT count(*) FROM vehicle_readings)"
            )
            if n >= expected or time.monotonic() > deadline:
                return n
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _report(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM meter_readings) AS meter_rows,
                      (SELECT count(*) FROM vehicle_readings) AS vehicle_rows,
                      (SELECT count(*) FROM meter_current) AS meters,
                      (SELECT count(*) FROM vehicle_current) AS vehicles,
                      (SELECT count(*) FROM rejected_messages) AS rejects"""
        )
        print("\n== what landed ==")
        for key, value in dict(counts or {}).items():
            print(f"  {key:<13} {value:>8}")
        print("\n== a few current vehicle rows ==")
        rows = await conn.fetch(
            "SELECT vehicle_id, ts, soc, kwh_delivered_dc, battery_temp FROM vehicle_current "
            "ORDER BY vehicle_id LIMIT 5"
        )
        for r in rows:
            print(
                f"  {r['vehicle_id']}  {r['ts']:%Y-%m-%d %H:%M:%S}  soc={r['soc']:.1f}%  "
                f"dc={r['kwh_delivered_dc']} kWh  temp={r['battery_temp']:.1f}°C"
            )
    finally:
        await conn.close()


def main() -> int:
    """Run the demo end to end."""
    with PostgresServer() as pg, MosquittoServer() as mq:
        env = {
            "FLEET_DATABASE_URL": pg.url,
            "FLEET_MQTT_URL": mq.url(),
            "FLEET_LOG_FORMAT": "console",
            "FLEET_HTTP_ADDR": "127.0.0.1:0",
        }
        print(f"postgres {pg.url}\nmosquitto {mq.url()}")
        subprocess.run([str(BIN / "fleetd"), "migrate"], env=os.environ | env, check=True)
        daemon = _fleetd(["run"], env)
        try:
            time.sleep(1.5)
            start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
            msgs = readings(250, 250, 10, start, timedelta(minutes=1))
            t0 = time.monotonic()
            pub = Publisher(mq.url(), "demo-publisher")
            pub.publish(msgs)
            pub.close()
            landed = asyncio.run(_wait_rows(pg.url, len(msgs)))
            secs = time.monotonic() - t0
            print(f"\npublished {len(msgs)} readings (QoS 1); {landed} stored in {secs:.1f} s")
            asyncio.run(_report(pg.url))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

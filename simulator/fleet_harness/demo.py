"""`make demo`: throwaway PostgreSQL + Mosquitto, fleetd as a real subprocess, fleet-sim with
10,000 meters + 10,000 vehicles compressing one simulated hour into about a minute, then what
arrived and the fleet efficiency report next to the simulator's truth. Everything is removed at
the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from fleet_harness import MosquittoServer, PostgresServer
from fleet_harness.cleanup import unwind_on_sigterm
from fleet_harness.rows import wait_for_rows
from fleetctl.analytics import fleet_report
from fleetctl.analytics.window import Window
from fleetsim.runner import SimOptions, run_sim, status_line

BIN = Path(sys.executable).parent


def _fleetd(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "fleetd"), *args], env=os.environ | env)


async def _demo(pg: PostgresServer, mq: MosquittoServer, tmp: Path) -> None:
    truth_path = tmp / "truth.json"
    options = SimOptions(
        speed=60.0,
        sim_hours=1.0,
        mqtt_url=mq.url(),
        database_url=pg.url,
        truth_path=str(truth_path),
        invalid_rate=0.0005,
        duplicate_rate=0.001,
        client_id_prefix="demo-sim",
    )
    print("\n== fleet-sim: 10,000 meters + 10,000 vehicles, 1 simulated hour at 60x ==")
    summary = await run_sim(options, on_status=status_line if sys.stderr.isatty() else None)
    print(
        f"\n  published {summary.sent:,} messages in {summary.elapsed_s:.0f} s "
        f"({summary.meters + summary.vehicles:,} valid readings, {summary.invalid:,} invalid, "
        f"{summary.duplicates:,} duplicates)"
    )
    expected = summary.meters + summary.vehicles
    t0 = time.monotonic()
    stored = await wait_for_rows(pg.url, expected, poll_s=0.2)
    print(
        f"  fleetd stored {stored:,} of {expected:,} readings "
        f"({time.monotonic() - t0:.1f} s after the last publish)"
    )
    conn = await asyncpg.connect(pg.url)
    try:
        rejects = await conn.fetchval("SELECT count(*) FROM rejected_messages")
        reasons = await conn.fetch(
            "SELECT split_part(reason, ':', 1) AS field, count(*) AS n FROM rejected_messages "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 4"
        )
        print(
            f"  rejected_messages: {rejects:,} (simulator sent {summary.invalid:,} invalid): "
            + ", ".join(f"{r['field']} {r['n']}" for r in reasons)
        )
        assert summary.start is not None
        assert summary.end is not None
        window = Window(summary.start - timedelta(minutes=1), summary.end)
        report = await fleet_report(conn, window)
    finally:
        await conn.close()
    _print_report(report, json.loads(truth_path.read_text()))


def _print_report(report: dict[str, Any], truth: dict[str, Any]) -> None:
    t = report["totals"]
    print(f"\n== fleet efficiency {report['window']['start']} → {report['window']['end']} ==")
    print(
        f"  {t['vehicles']:,} vehicles, AC {t['totalAcKwh']:,.1f} kWh, DC {t['totalDcKwh']:,.1f}"
        f" kWh, loss {t['lossKwh']:,.1f} kWh, efficiency {t['efficiencyPercent']} %"
    )
    print("  statuses: " + ", ".join(f"{k} {v:,}" for k, v in report["statusCounts"].items()))
    bands = Counter(v["band"] for v in truth["vehicles"].values())
    print("  simulator truth (charger bands): " + ", ".join(f"{k} {v:,}" for k, v in bands.items()))
    judged = [r for r in report["vehicles"] if r["efficiency"] is not None]
    hits = Counter((truth["vehicles"][r["vehicleId"]]["band"], r["status"]) for r in judged)
    for band, status in (("degraded", "degraded"), ("critical", "critical")):
        found = hits[(band, status)]
        total = sum(n for (b, _), n in hits.items() if b == band)
        print(f"  {band} chargers found as {status}: {found:,} of {total:,} that charged")
    print("\n  worst 10 vehicles (measured vs. simulator's charger efficiency):")
    print(
        f"  {'vehicle':<15}{'meter':<13}{'AC kWh':>9}{'DC kWh':>9}{'measured':>10}"
        f"{'truth η':>9}  status"
    )
    for r in judged[:10]:
        tv = truth["vehicles"][r["vehicleId"]]
        print(
            f"  {r['vehicleId']:<15}{tv['meterId']:<13}{r['totalAcKwh']:>9.2f}"
            f"{r['totalDcKwh']:>9.2f}{r['efficiencyPercent']:>9.2f}%{tv['efficiency'] * 100:>8.2f}%"
            f"  {r['status']}"
        )
    print(
        "\n  (try: fleetctl fleet --hours 2, fleetctl performance VEHICLE-00001, "
        "fleetctl anomalies — against your own database)"
    )


def main() -> int:
    """Run the demo end to end."""
    unwind_on_sigterm()
    with (
        PostgresServer() as pg,
        MosquittoServer() as mq,
        tempfile.TemporaryDirectory(prefix="fleet-demo-") as tmp,
    ):
        env = {
            "FLEET_DATABASE_URL": pg.url,
            "FLEET_MQTT_URL": mq.url(),
            "FLEET_LOG_FORMAT": "console",
            "FLEET_LOG_LEVEL": "warning",
            "FLEET_HTTP_ADDR": "127.0.0.1:0",
        }
        print(f"postgres  {pg.url}\nmosquitto {mq.url()}")
        subprocess.run([str(BIN / "fleetd"), "migrate"], env=os.environ | env, check=True)
        daemon = _fleetd(["run"], env)
        try:
            time.sleep(1.5)
            asyncio.run(_demo(pg, mq, Path(tmp)))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

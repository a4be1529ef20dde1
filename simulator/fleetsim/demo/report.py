"""The demo's first part: one simulated hour of the whole fleet, compressed, through fleetd, then
what arrived and the fleet efficiency report next to the simulator's truth."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from fleet_harness.rows import wait_for_rows
from fleetctl.analytics import fleet_report
from fleetctl.analytics.window import Window
from fleetsim.runner import SimOptions, run_sim, status_line


@dataclass(frozen=True)
class HourRun:
    """What the compressed hour left behind for the live part: where simulated time stopped and
    the vehicle the report ranks worst (the example of `fleetctl performance`)."""

    end: datetime
    worst_vehicle: str | None


async def compressed_hour(
    options: SimOptions, database_url: str, truth_path: Path, *, speed: float
) -> HourRun:
    """Publish one simulated hour at `speed`, wait until fleetd stored it, print the report."""
    print(
        f"\n== fleet-sim: {options.meters:,} meters + {options.vehicles:,} vehicles, "
        f"1 simulated hour at {speed:g}x =="
    )
    summary = await run_sim(options, on_status=status_line if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"\n  published {summary.sent:,} messages in {summary.elapsed_s:.0f} s:")
    print(
        f"  {summary.meters + summary.vehicles:,} valid readings, {summary.invalid:,} invalid, "
        f"{summary.duplicates:,} duplicates"
    )
    expected = summary.meters + summary.vehicles
    t0 = time.monotonic()
    stored = await wait_for_rows(database_url, expected, poll_s=0.2)
    print(
        f"  fleetd stored {stored:,} of {expected:,} readings "
        f"({time.monotonic() - t0:.1f} s after the last publish)"
    )
    assert summary.start is not None
    assert summary.end is not None
    conn = await asyncpg.connect(database_url)
    try:
        await _print_rejects(conn, summary.invalid)
        window = Window(summary.start - timedelta(minutes=1), summary.end)
        report = await fleet_report(conn, window)
    finally:
        await conn.close()
    truth = json.loads(truth_path.read_text())  # noqa: ASYNC240 - once, small, after the run
    judged = _print_report(report, truth)
    return HourRun(summary.end, judged[0]["vehicleId"] if judged else None)


async def _print_rejects(conn: asyncpg.Connection, invalid: int) -> None:
    rejects = await conn.fetchval("SELECT count(*) FROM rejected_messages")
    reasons = await conn.fetch(
        "SELECT split_part(reason, ':', 1) AS field, count(*) AS n FROM rejected_messages "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 4"
    )
    _print_wrapped(
        f"rejected_messages: {rejects:,} (simulator sent {invalid:,} invalid): ",
        {r["field"]: r["n"] for r in reasons},
    )


def _print_report(report: dict[str, Any], truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Print the report against the truth; return the vehicles it could judge, worst first."""
    t = report["totals"]
    print(f"\n== fleet efficiency {report['window']['start']} → {report['window']['end']} ==")
    print(f"  {t['vehicles']:,} vehicles, efficiency {t['efficiencyPercent']} %")
    print(
        f"  AC {t['totalAcKwh']:,.1f} kWh, DC {t['totalDcKwh']:,.1f} kWh, "
        f"loss {t['lossKwh']:,.1f} kWh"
    )
    _print_wrapped("statuses: ", report["statusCounts"])
    bands = Counter(v["band"] for v in truth["vehicles"].values())
    _print_wrapped("simulator truth (charger bands): ", bands)
    judged: list[dict[str, Any]] = [r for r in report["vehicles"] if r["efficiency"] is not None]
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
    return judged


def _print_wrapped(head: str, counts: Mapping[str, int]) -> None:
    """`head` and the counts, wrapped to 80 columns."""
    text = head + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    print(textwrap.fill(text, width=79, initial_indent="  ", subsequent_indent="    "))

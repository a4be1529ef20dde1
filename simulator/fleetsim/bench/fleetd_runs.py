"""fleetd measured as operators run it: a backlog drain, paced live load, and both A/B against
another checkout's code."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleet_harness.rows import wait_for_rows
from fleetsim.bench.databases import drain_rate, ensure_days, folded_before, latency, new_database
from fleetsim.bench.mqtt_sessions import create_session, drop_session
from fleetsim.bench.pg_cpu import cluster_cpu_seconds, postmaster_pid, wait_rows_and_cpu
from fleetsim.bench.printing import say
from fleetsim.bench.processes import cpu_seconds, fleetd, peak_rss_mb
from fleetsim.bench.readings import paced_load, publish


async def drain_stage(
    admin_url: str,
    mqtt: str,
    messages: list[tuple[str, bytes]],
    start: datetime,
    name: str,
    *,
    code: str | None = None,
    pg_dir: Path | None = None,
    readings: int | None = None,
) -> dict[str, float]:
    """Queue every message for a durable session, then start fleetd and time the drain.

    With `pg_dir` (the server's data directory) also PostgreSQL's CPU during the drain
    (fleetsim.bench.pg_cpu), from fleetd's start to the last row. `readings`: how many the
    messages hold, when that is not one each (gateways' arrays)."""
    url = await new_database(admin_url, f"bench_{name}")
    await ensure_days(url, start, start + timedelta(days=3))
    await folded_before(url, start)
    create_session(mqtt, name, v5=True)
    await publish(mqtt, messages)
    postmaster = postmaster_pid(pg_dir) if pg_dir is not None else None
    pg0 = cluster_cpu_seconds(postmaster) if postmaster is not None else 0.0
    pg_cpu = float("nan")
    expected = len(messages) if readings is None else readings
    with fleetd(mqtt, url, name, code=code) as proc:
        if postmaster is None:
            got = await wait_for_rows(url, expected, timeout_s=600, proc=proc)
        else:
            got, pg_cpu = await wait_rows_and_cpu(url, expected, postmaster, pg0, proc=proc)
        cpu = cpu_seconds(proc.pid)
        rss = peak_rss_mb(proc.pid)
    drop_session(mqtt, name)
    _, rate = await drain_rate(url)
    return {
        "rows": got,
        "perS": rate,
        "cpuSeconds": cpu,
        "peakRssMb": rss,
        "cpuUsPerReading": cpu / max(1, got) * 1e6,
        "pgCpuUsPerReading": pg_cpu / max(1, got) * 1e6,
    }


async def load_stage(
    admin_url: str, mqtt: str, label: str, rate_s: float, seconds: float, *, code: str | None = None
) -> dict[str, float]:
    """fleetd under paced live load: publish-to-commit latency and CPU."""
    name = f"fleetd-{label}-{'ref' if code else 'this'}"
    url = await new_database(admin_url, f"bench_{label.lower()}")
    create_session(mqtt, name, v5=True)
    with fleetd(mqtt, url, name, code=code) as proc:
        await asyncio.sleep(2.0)  # start-up and subscription, not measured
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        since = datetime.now(UTC)
        sent = await paced_load(mqtt, rate_s, seconds)
        got = await wait_for_rows(url, sent, timeout_s=60, proc=proc)
        cpu = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0)
        rss = peak_rss_mb(proc.pid)
    drop_session(mqtt, name)
    return {
        "ratePerS": rate_s,
        "sent": sent,
        "stored": got,
        "cpuPercent": cpu * 100,
        "peakRssMb": rss,
        **await latency(url, since),
    }


async def ab_stage(
    args: argparse.Namespace,
    admin_url: str,
    mqtt: str,
    messages: list[tuple[str, bytes]],
    start: datetime,
) -> dict[str, Any]:
    """Drain and 10x-nominal latency of this code (A) and the reference checkout (B),
    alternating A B A B so both see the same machine."""
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "ref": []}
    seconds = 10.0 if args.quick else 30.0
    for _ in range(args.ab_rounds):
        for side, code in (("this", None), ("ref", args.ab_ref)):
            drain = await drain_stage(admin_url, mqtt, messages, start, f"ab_{side}", code=code)
            load = {
                label: await load_stage(admin_url, mqtt, label, rate, seconds, code=code)
                for label, rate in (("nominal", 333.0), ("tenX", 3333.0))
            }
            figures = {"drainPerS": drain["perS"]}
            for label, x in load.items():
                figures |= {
                    f"{label}P50Ms": x["p50Ms"],
                    f"{label}P99Ms": x["p99Ms"],
                    f"{label}CpuPercent": x["cpuPercent"],
                }
            runs[side].append(figures)
            say(f"    {side}: " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()))
    return {"ref": args.ab_ref, "rounds": args.ab_rounds, "runs": runs}

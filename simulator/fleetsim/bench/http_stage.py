"""The bench's HTTP stage: `fleetctl serve` (fleetsvc.web on aiohttp) against uvicorn serving a
trivial app, in the same run on the same machine.

1. 2,000 keep-alive clients on /healthz (wrk when installed, else an asyncio client), the two
   servers alternated, each first in turn: timeouts of ours, and our req/s as a ratio of
   uvicorn's (target >= 0.7 with 0 timeouts; ours asks the database at most once a second,
   uvicorn answers a constant; uvicorn on its default event loop as installed).
2. 3,000 connections sending never-ending headers at ours: its peak RSS against the
   MemoryMax of its systemd unit (config/fleet-api.service).
3. 3,000 connections each sending 60 whole headers of 8,000 bytes (each within the per-field
   limit) and never the end of the head, at a fresh server of ours: its peak RSS likewise.

Alone, on a throwaway PostgreSQL: `python -m fleetsim.bench.http_stage [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fleet_harness import PostgresServer, free_port
from fleetsim.bench.databases import PG_SETTINGS, new_database
from fleetsim.bench.http_load import (
    LARGE_HEADER_BYTES,
    LARGE_HEADERS,
    cpu_s,
    endless_headers,
    large_headers,
    rate,
    server_process,
    trivial_server_argv,
)

UNIT = Path(__file__).resolve().parents[3] / "config" / "fleet-api.service"
CLIENTS = 2000
FLOOD_CONNECTIONS = 3000


def memory_max_mb(unit: Path = UNIT) -> float:
    """MemoryMax= of a systemd unit in MiB (512M -> 512.0)."""
    found = re.search(r"^MemoryMax=(\d+)([KMG])$", unit.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{unit}: no MemoryMax=")
    return int(found.group(1)) * {"K": 1 / 1024, "M": 1.0, "G": 1024.0}[found.group(2)]


def _serve_argv() -> list[str]:
    return [str(Path(sys.executable).parent / "fleetctl"), "serve"]


def _serve_env(database_url: str, port: int) -> dict[str, str]:
    return os.environ | {
        "FLEET_DATABASE_URL": database_url,
        "FLEET_ANALYTICS_DATABASE_URL": database_url,
        "FLEET_API_ADDR": f"127.0.0.1:{port}",
        "FLEET_LOG_FORMAT": "json",
        "FLEET_LOG_LEVEL": "warning",
    }


async def http_stage(
    database_url: str, *, quick: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    """Both measurements; figures as a dict for the results JSON."""
    seconds = 5.0 if quick else 10.0
    rounds = 1 if quick else 3
    ours_port, ref_port = free_port(), free_port()
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "uvicorn": []}
    with (
        server_process(_serve_argv(), ours_port, _serve_env(database_url, ours_port)) as a,
        server_process(trivial_server_argv("uvicorn-httptools", ref_port), ref_port) as b,
    ):
        servers = [("ours", ours_port, a.pid), ("uvicorn", ref_port, b.pid)]
        for i in range(rounds):
            # ABBA...: neither server always runs right after the other on a drifting machine
            for name, port, pid in servers if i % 2 == 0 else servers[::-1]:
                cpu_before = cpu_s(pid)
                measured = await asyncio.to_thread(
                    rate, "127.0.0.1", port, "/healthz", CLIENTS, seconds
                )
                requests = max(1.0, measured.requests_per_s * round(seconds))
                cpu_us = (cpu_s(pid) - cpu_before) / requests * 1e6
                runs[name].append(asdict(measured) | {"cpu_us_per_request": cpu_us})
                per_s, timeouts = measured.requests_per_s, measured.timeouts
                say(f"    {name}: {per_s:,.0f} req/s, {timeouts} timeouts, {cpu_us:.0f} us CPU/req")
    ours = statistics.median(r["requests_per_s"] for r in runs["ours"])
    ref = statistics.median(r["requests_per_s"] for r in runs["uvicorn"])
    ours_cpu = statistics.median(r["cpu_us_per_request"] for r in runs["ours"])
    ref_cpu = statistics.median(r["cpu_us_per_request"] for r in runs["uvicorn"])
    flood_port = free_port()
    with server_process(_serve_argv(), flood_port, _serve_env(database_url, flood_port)) as proc:
        flood = await endless_headers("127.0.0.1", flood_port, proc.pid, FLOOD_CONNECTIONS, seconds)
    heads_port = free_port()
    with server_process(_serve_argv(), heads_port, _serve_env(database_url, heads_port)) as proc:
        heads = await large_headers("127.0.0.1", heads_port, proc.pid, FLOOD_CONNECTIONS, seconds)
    limit = memory_max_mb()
    return {
        "clients": CLIENTS,
        # uvicorn's default loop ("auto"): uvloop when installed
        "uvicornLoop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "tool": runs["ours"][0]["tool"],
        "runs": runs,
        "oursPerS": ours,
        "uvicornPerS": ref,
        "ratio": ours / ref,
        # Server CPU per request: what the req/s would show on a machine of our own (on a
        # busy shared one, the req/s also measure who got the CPU, wrk included).
        "oursCpuUsPerRequest": ours_cpu,
        "uvicornCpuUsPerRequest": ref_cpu,
        "cpuRatio": ref_cpu / ours_cpu,
        "oursTimeouts": sum(r["timeouts"] for r in runs["ours"]),
        "oursErrors": sum(r["errors"] for r in runs["ours"]),
        "flood": asdict(flood),
        "memoryMaxMb": limit,
        "floodPeakOfMemoryMax": flood.rss_peak_mb / limit,
        "largeHeadersFlood": asdict(heads)
        | {"headers": LARGE_HEADERS, "bytes": LARGE_HEADER_BYTES},
        "largeHeadersPeakOfMemoryMax": heads.rss_peak_mb / limit,
    }


def table_lines(h: dict[str, Any]) -> list[str]:
    """The stage's lines in the bench table."""
    f = h["flood"]
    lines = [
        f"11 HTTP /healthz, {h['clients']:,} keep-alive clients ({h['tool']}):",
        f"{'    fleetctl serve / uvicorn trivial app (httptools, ' + h['uvicornLoop'] + ')':<58}"
        f"{h['oursPerS']:>7,.0f} / {h['uvicornPerS']:,.0f} /s = {h['ratio']:.2f} x",
        f"{'    server CPU per request, uvicorn / fleetctl serve':<58}"
        f"{h['uvicornCpuUsPerRequest']:>7.0f} / {h['oursCpuUsPerRequest']:.0f} us = "
        f"{h['cpuRatio']:.2f} x",
        f"{'    fleetctl serve timeouts / errors':<58}{h['oursTimeouts']:>7} / {h['oursErrors']}",
        f"{'    ' + format(f['connections'], ',') + ' endless-header connections: RSS peak':<58}"
        f"{f['rss_peak_mb']:>7.0f} MB of {h['memoryMaxMb']:.0f} (MemoryMax)",
    ]
    g = h.get("largeHeadersFlood")  # results from before it was measured have none
    if g is not None:
        shape = f"{g['connections']:,} x {g['headers']} headers of {g['bytes']:,} B"
        lines.append(
            f"{'    ' + shape + ', no end: RSS peak':<58}"
            f"{g['rss_peak_mb']:>7.0f} MB of {h['memoryMaxMb']:.0f} (MemoryMax)"
        )
    return lines


async def _alone(quick: bool) -> dict[str, Any]:
    with PostgresServer(settings=PG_SETTINGS) as pg:
        url = await new_database(pg.url, "bench_http")
        return await http_stage(url, quick=quick, say=print)


def main(argv: list[str] | None = None) -> int:
    """The stage alone: its progress, its lines of the bench table, then its figures as JSON."""
    parser = argparse.ArgumentParser(prog="fleetsim.bench.http_stage", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 5 s instead of 3 of 10")
    args = parser.parse_args(argv)
    figures = asyncio.run(_alone(args.quick))
    print("\n".join(table_lines(figures)))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

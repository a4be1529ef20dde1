"""`make bench` / `make bench-quick`: every figure measured in one run on the same machine.

Stages (see README "Performance"): broker ceiling, database ceilings, per-message baseline,
fleetd backlog drain, fleetd at nominal and 10x nominal load, fleetd behind small broker windows
(RabbitMQ's mqtt.prefetch), storage per reading, queries. `--ab-ref DIR` also runs the drain
and load stages against another checkout's code (A/B interleaved in this run).
Throughputs are backlog drains measured from the database's own clock: rows / (last commit
- first receive), with track_commit_timestamp on, so process start-up is not counted and the
three subscribers are timed the same way.

Modules by job: `stages` (the stages in the order they run: add one there), the measurements
(`ceilings`, `fleetd_runs`, `windows`, `baseline`, `http_stage`, `query_bench`, `diagnosis`),
what they share (`readings`, `databases`, `processes`, `mqtt_sessions`), `printing` (progress
and the table); this one: the command line, the run, and its JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleet_harness import MosquittoServer, PostgresServer
from fleet_harness.cleanup import unwind_on_sigterm
from fleetsim.bench.assignments import assignment_stage
from fleetsim.bench.databases import PG_SETTINGS
from fleetsim.bench.diagnosis import diagnosis_stage
from fleetsim.bench.layouts import layout_stage
from fleetsim.bench.printing import say, table
from fleetsim.bench.query_bench import query_stage
from fleetsim.bench.readings import fleet_messages
from fleetsim.bench.stages import STAGES, Bench


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every stage and return the figures."""
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "startedAt": datetime.now(UTC).isoformat(),
        "n": args.n,
        "baselineN": args.baseline_n,
        "quick": args.quick,
    }
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    messages = fleet_messages(args.n, start)
    total = len(STAGES) + 1
    with PostgresServer(settings=PG_SETTINGS) as pg, MosquittoServer() as broker:
        bench = Bench(args, pg, broker, start, messages, results)
        for i, stage in enumerate(STAGES, 1):
            say(f"[{i}/{total}] {(stage.__doc__ or stage.__name__).splitlines()[0].rstrip('.')}")
            await stage(bench)
    # After the throughput stages' servers are stopped, so their checkpoints don't share the CPU.
    if args.quick or args.no_queries:
        results["queries"] = None
    else:
        say(f"[{total}/{total}] queries on {args.query_days} days x 10,000 + 10,000 devices")
        results["queries"] = await query_stage(args.query_days, Path(args.cache_dir), say)
        say("      the fleet report on fleetd's layout against COPY's (6 h, cached)")
        results["queries"]["layout"] = await layout_stage(Path(args.cache_dir), say)
    say("diagnosis: the charger fit on 3 h, 24 h (and 7 d) windows against the truth")
    results["diagnosis"] = diagnosis_stage(quick=args.quick, say=say)
    results["assignments"] = assignment_stage(quick=args.quick, say=say)
    drain = results["fleetdDrain"]["perS"]
    results["ratios"] = {
        "fleetdVsBrokerCeiling": drain / results["brokerCeilingPerS"],
        "fleetdVsDualWriteCeiling": drain / results["dualWriteCeilingPerS"],
        "fleetdVsCopyCeiling": drain / results["copyCeilingPerS"],
        "fleetdVsPerMessage": drain / results["baselinePerS"],
    }
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point: python -m fleetsim.bench [--quick] [--json PATH]."""
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(prog="fleetsim.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, no 7-day query dataset")
    parser.add_argument("--json", help="also write the figures as JSON to this path")
    parser.add_argument("--n", type=int, help="readings per throughput stage")
    parser.add_argument("--baseline-n", type=int, help="readings for the per-message baseline")
    parser.add_argument("--query-days", type=int, default=7)
    parser.add_argument("--cache-dir", default=".bench-cache")
    parser.add_argument("--no-queries", action="store_true", help="skip the query stage")
    parser.add_argument("--ab-ref", help="another checkout: A/B its fleetd against this one")
    parser.add_argument("--ab-rounds", type=int, default=2)
    args = parser.parse_args(argv)
    args.n = args.n or (20_000 if args.quick else 200_000)
    args.baseline_n = args.baseline_n or (2_000 if args.quick else 10_000)
    started = time.perf_counter()
    results = asyncio.run(run(args))
    results["elapsedS"] = time.perf_counter() - started
    print(table(results))
    print(f"\n(bench took {results['elapsedS']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0

"""fleetd's backlog drain against the batched history-only pipeline (fleetsim.bench.
batched_baseline), interleaved in one run: readings/s and PostgreSQL CPU per stored reading.

Each round drains the same N queued readings with the baseline, then with fleetd (and with
each checkout of `refs`, its fleetd, when given), each into a fresh database on the same
server. A ref that is a scratch checkout with one statement taken out of the writer shows
what that statement costs PostgreSQL (docs/performance.md).
Figures are medians over the rounds; the ratio is fleetd's readings/s over the baseline's.
The rollups fleetd's drain leaves to its fold are costed once (fleetsim.bench.fold_cost) and
added to its PostgreSQL CPU per reading against the issue's target (15 µs).

On its own: python -m fleetsim.bench.ingest_cost [--n N] [--rounds R] [--ab-ref DIR ...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from fleet_harness import MosquittoServer, PostgresServer
from fleetsim.bench.batched_baseline import drain_batched, process_cpu_seconds
from fleetsim.bench.databases import PG_SETTINGS, drain_rate, ensure_days, new_database
from fleetsim.bench.fleetd_runs import drain_stage
from fleetsim.bench.fold_cost import fold_cost_stage
from fleetsim.bench.mqtt_sessions import create_session, drop_session
from fleetsim.bench.pg_cpu import cluster_cpu_seconds, postmaster_pid
from fleetsim.bench.printing import ingest_cost_lines
from fleetsim.bench.readings import fleet_messages, publish

FIGURES = ("perS", "pgCpuUsPerReading", "cpuUsPerReading")


async def baseline_drain(
    admin_url: str, pg_dir: Path, mqtt: str, messages: list[tuple[str, bytes]], start: datetime
) -> dict[str, float]:
    """The batched baseline draining `messages` queued for its session (MQTT 3.1.1)."""
    url = await new_database(admin_url, "bench_batched")
    await ensure_days(url, start, start + timedelta(days=3))
    create_session(mqtt, "bench-batched", v5=False)
    await publish(mqtt, messages)
    postmaster = postmaster_pid(pg_dir)
    conn = await asyncpg.connect(url, server_settings={"timezone": "UTC"})
    try:
        pg0, own0 = cluster_cpu_seconds(postmaster), process_cpu_seconds()
        await drain_batched(mqtt, conn, "bench-batched", len(messages))
        # Before the connection closes: an exited backend's CPU is in no process's figures
        # until the postmaster has reaped it.
        pg, own = cluster_cpu_seconds(postmaster) - pg0, process_cpu_seconds() - own0
    finally:
        await conn.close()
    drop_session(mqtt, "bench-batched")
    rows, rate = await drain_rate(url)
    return {
        "rows": rows,
        "perS": rate,
        "pgCpuUsPerReading": pg / max(1, rows) * 1e6,
        "cpuUsPerReading": own / max(1, rows) * 1e6,
    }


async def ingest_cost_stage(
    admin_url: str,
    pg_dir: Path,
    mqtt: str,
    messages: list[tuple[str, bytes]],
    start: datetime,
    *,
    rounds: int,
    refs: tuple[str, ...] = (),
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """`rounds` x (baseline, fleetd[, each reference's fleetd]); the runs and their medians.
    A reference is named by its checkout's directory."""
    sides: dict[str, str | None] = {"fleetd": None} | {Path(r).name: r for r in refs}
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], **{s: [] for s in sides}}
    for i in range(rounds):
        runs["baseline"].append(await baseline_drain(admin_url, pg_dir, mqtt, messages, start))
        for side, code in sides.items():
            runs[side].append(
                await drain_stage(
                    admin_url, mqtt, messages, start, f"cost_{side}", code=code, pg_dir=pg_dir
                )
            )
        say(
            f"    round {i + 1}: "
            + "; ".join(
                f"{side} {r[-1]['perS']:,.0f}/s {r[-1]['pgCpuUsPerReading']:.1f} µs PG"
                for side, r in runs.items()
            )
        )
    medians = {
        side: {k: statistics.median(r[k] for r in rs) for k in FIGURES} for side, rs in runs.items()
    }
    # A drain writes no rollups; fleetd folds them once their buckets close (fleetdb.fold).
    folded = await fold_cost_stage(admin_url)
    say(f"    fold, as fleetd folds: {folded['pgCpuUsPerReading']:.1f} µs PG per reading")
    return {
        "n": len(messages),
        "rounds": rounds,
        "refs": list(refs),
        "runs": runs,
        "medians": medians,
        "fleetdVsBaseline": medians["fleetd"]["perS"] / medians["baseline"]["perS"],
        "fold": folded,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    messages = fleet_messages(args.n, start)
    with PostgresServer(settings=PG_SETTINGS) as pg, MosquittoServer() as broker:
        return await ingest_cost_stage(
            pg.url,
            pg.data_dir,
            broker.url(),
            messages,
            start,
            rounds=args.rounds,
            refs=tuple(args.ab_ref),
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point: this comparison on its own servers."""
    parser = argparse.ArgumentParser(prog="fleetsim.bench.ingest_cost", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="readings queued per drain")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ab-ref",
        action="append",
        default=[],
        help="another checkout: its fleetd drains in each round too (repeatable)",
    )
    args = parser.parse_args(argv)
    print("\n".join(ingest_cost_lines(asyncio.run(_main(args)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What folding the rollups (fleetdb.fold) costs PostgreSQL per reading, folded as a running
fleetd folds them: each 10-minute bucket once it has closed, each hour and 4-hour block once its
finer buckets are folded.

A drain's backlog is a few minutes of the fleet, so folding it right after the drain writes one
row per device in every level for those few readings: several times the steady cost per
reading of the coarser levels (a row per device per hour, per 4 hours). Here 4 hours of a
fleet are stored (fleet-sim backfill --direct), the rollup rows dropped and the watermarks put
back at the start, then folded in 10-minute steps of "now" (fold(), as FoldLoop calls it); the
CPU of the folding backend over the stored readings is the figure. The per-reading cost does
not depend on the fleet's size (every statement is one pass over a bucket's rows), so a fleet
of 2,000 + 2,000 keeps the stage short.

On its own: python -m fleetsim.bench.fold_cost [--devices N] [--hours H]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet_harness import PostgresServer
from fleetdb.connect import connect
from fleetdb.fold import fold
from fleetdb.kinds import REGISTRY
from fleetdb.rollups import LEVELS, floor_to
from fleetsim.bench.databases import PG_SETTINGS, ensure_days, folded_before, new_database
from fleetsim.bench.pg_cpu import backend_cpu_seconds
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig

_STEP = timedelta(minutes=10)
_GRACE = timedelta(minutes=2)  # FLEET_FOLD_GRACE_S's default


async def fold_cost_stage(
    admin_url: str, *, devices: int = 2_000, hours: int = 4
) -> dict[str, Any]:
    """Store `hours` of `devices` meters + vehicles, fold them step by step; the folding
    backend's CPU per stored reading."""
    coarsest = LEVELS[-1].width
    start = floor_to(datetime.now(UTC), coarsest) - 2 * coarsest - timedelta(hours=hours)
    end = start + timedelta(hours=hours)
    url = await new_database(admin_url, "bench_fold_cost")
    await ensure_days(url, start, end)
    config = FleetConfig(meters=devices, vehicles=devices)
    summary = await backfill_direct(url, config, start, end)
    readings = summary.meter_rows + summary.vehicle_rows
    conn = await connect(url, application_name="bench-fold")
    try:
        # backfill_direct built and folded every level: start over from the raw rows.
        for kind in REGISTRY:
            for table in kind.rollups:
                await conn.execute(f"TRUNCATE {table}")
        await conn.execute("VACUUM ANALYZE")
        await folded_before(url, start)
        me = await conn.fetchval("SELECT pg_backend_pid()")
        cpu0 = backend_cpu_seconds(me)
        folds = 0
        now = start + _STEP + _GRACE
        while now <= end + coarsest + _GRACE:
            while (await fold(conn, now, _GRACE)).spans:
                folds += 1
            now += _STEP
        cpu = backend_cpu_seconds(me) - cpu0
    finally:
        await conn.close()
    return {
        "devices": devices,
        "hours": hours,
        "readings": readings,
        "folds": folds,
        "pgCpuUsPerReading": cpu / max(1, readings) * 1e6,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    with PostgresServer(settings=PG_SETTINGS) as pg:
        return await fold_cost_stage(pg.url, devices=args.devices, hours=args.hours)


def main(argv: list[str] | None = None) -> int:
    """Entry point: this stage on a server of its own; prints its figures as JSON."""
    parser = argparse.ArgumentParser(prog="fleetsim.bench.fold_cost", description=__doc__)
    parser.add_argument("--devices", type=int, default=2_000, help="meters, and as many vehicles")
    parser.add_argument("--hours", type=int, default=4)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_main(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage 8b: the fleet report on data laid out as fleetd writes it, against the COPY layout.

The query stage's dataset is built by COPY, a day at a time, and its rollups bucket by bucket:
every bucket's rows sit together. fleetd commits a flush at a time (history and current), and
folds each level's buckets once they close (fleetdb.fold). Before the fold, fleetd's rollup
rows were created at their bucket's first reading and updated in place by every later flush,
which spread a bucket's rows over the partition (one partition's hour 16:00 read 948 pages
instead of 186); this stage is what showed it.

Two clusters under the cache directory hold the same 6 h: one by `backfill_direct` (COPY), one
by its `ingest_order` with the watermarks at the data's start (each minute committed as one
flush through fleetd's statements, the levels folded as each 10-minute bucket closes).
The same windows are timed on both, call by call: the 24 h ending at the data's end (so it
starts 18 h before the fleet's first readings, the issue's worst case), and 5 h windows inside
the data with mid-hour edges and on hour boundaries.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from fleet_harness import PostgresServer
from fleetctl.analytics import fleet_report
from fleetctl.analytics.window import Window
from fleetdb.connect import connect, create_pool
from fleetdb.migrate import migrate
from fleetsim.bench.databases import folded_before
from fleetsim.bench.query_bench import END_INTO_HOUR, FLEET_TARGET_MS, time_pair
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig

# Bump when what the two datasets hold changes.
LAYOUT_VERSION = 2  # 2: fleetd folds its rollups
HOURS = 6
_ORDERS = ("copy", "ingest")
_VACUUM_TIMEOUT_S = 3600.0


def _windows(end: datetime) -> dict[str, Window]:
    hour = end.replace(minute=0, second=0, microsecond=0)
    return {
        "24 h ending at the data's end (from 18 h before it)": Window(
            end - timedelta(hours=24), end
        ),
        "5 h, mid-hour edges": Window(
            end - timedelta(hours=5, minutes=50), end - timedelta(minutes=50)
        ),
        "5 h on hour boundaries": Window(hour - timedelta(hours=5), hour),
    }


async def _build(url: str, start: datetime, end: datetime, *, ingest_order: bool) -> None:
    conn = await connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    if ingest_order:  # as a fleetd that has run since before the data's start
        await folded_before(url, start)
    await backfill_direct(url, FleetConfig(), start, end, ingest_order=ingest_order)
    conn = await connect(url)
    try:
        await conn.execute("VACUUM ANALYZE", timeout=_VACUUM_TIMEOUT_S)
    finally:
        await conn.close()


async def layout_stage(cache_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """p50 of the fleet report on both layouts, alternated call by call, and their ratio."""
    dirs = {o: cache_dir / f"pg-layout-{HOURS}h-v{LAYOUT_VERSION}-{o}" for o in _ORDERS}
    metas = [d / "dataset.json" for d in dirs.values()]
    ends = {json.loads(m.read_text())["end"] for m in metas if m.exists()}
    cached = len(ends) == 1 and all(m.exists() for m in metas)
    if not cached:  # both from scratch: a half-built one cannot be completed (backfill_direct)
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
    servers: dict[str, PostgresServer] = {}
    try:
        for o, d in dirs.items():
            servers[o] = PostgresServer(keep_dir=d, settings={"shared_buffers": "1GB"}).start()
        if cached:
            end = datetime.fromisoformat(ends.pop())
        else:
            hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            end = hour - timedelta(hours=1) + END_INTO_HOUR
            for o, pg in servers.items():
                say(f"      building {HOURS} h in the {o} layout once (cached)")
                await _build(pg.url, end - timedelta(hours=HOURS), end, ingest_order=o == "ingest")
                (dirs[o] / "dataset.json").write_text(json.dumps({"end": end.isoformat()}))
        pools = {
            o: await create_pool(pg.url, min_size=2, max_size=2, application_name="bench")
            for o, pg in servers.items()
        }
        try:
            out: dict[str, Any] = {"hours": HOURS, "windows": {}}
            for name, w in _windows(end).items():
                copy, ingest = await time_pair(
                    partial(fleet_report, pools["copy"], w),
                    partial(fleet_report, pools["ingest"], w),
                    10,
                )
                if w.seconds == 24 * 3600:
                    copy["targetMs"] = ingest["targetMs"] = FLEET_TARGET_MS
                out["windows"][name] = {
                    "copy": copy,
                    "ingest": ingest,
                    "ratio": ingest["p50Ms"] / copy["p50Ms"],
                }
            return out
        finally:
            for pool in pools.values():
                await pool.close()
    finally:
        for pg in servers.values():
            pg.stop()

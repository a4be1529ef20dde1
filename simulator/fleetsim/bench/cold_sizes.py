"""Bytes per reading of a compacted day by fleet size: device groups sized by the day's readings
(fleetdb.cold.groups, this version) against the fixed 64 groups of the version before, on the
same day in the same run.

For each size N (N meters + N vehicles, FleetConfig's model otherwise) one whole UTC day is built
by backfill --direct into a database of its own. Its blocks and summaries are written with each
layout in turn, measured as `fleetctl storage` counts them (the cold partitions and their
indexes, after VACUUM, as autovacuum leaves them) and emptied before the next. The day stays
open throughout: the measure needs its raw partitions, which a compaction run would drop.

Compaction speed, sized against fixed: each hour of each kind fetched, split into groups and
encoded both ways in turn, the order alternating hour by hour (the machine's speed drifts by
tens of percent over minutes here: whole passes one after the other measured that drift, not
the layouts). The store is one INSERT per hour either way, of fewer rows when sized.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from fleetdb.cold import blocks, compact
from fleetdb.cold.groups import LEGACY_GROUPS, day_readings, groups_for
from fleetdb.cold.layout import LAYOUTS
from fleetdb.cold.storage import day_storage
from fleetdb.connect import connect
from fleetsim.bench.databases import new_database
from fleetsim.direct import backfill_direct
from fleetsim.model import FleetConfig

SIZES = (60, 1_000, 10_000)
QUICK_SIZES = (60,)  # ~20 s; 1,000 devices take ~3 min (building the day)
# Issue 27: a compacted day <= 6 B per reading at 60 devices, <= 4 B at 10,000.
TARGETS = {60: 6.0, 10_000: 4.0}
_LAYOUTS = ("fixed", "sized")


async def _speeds(
    conn: asyncpg.Connection, day: date, groups: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """Readings per second of fetch + split + encode, each layout, interleaved hour by hour."""
    seconds = dict.fromkeys(_LAYOUTS, 0.0)
    readings = dict.fromkeys(_LAYOUTS, 0)
    for hour in range(24):
        order = _LAYOUTS if hour % 2 == 0 else _LAYOUTS[::-1]
        for kind in LAYOUTS:
            for layout in order:
                n = groups[layout][kind]
                t0 = time.perf_counter()
                encoded = blocks.encode_all(await blocks.fetch_hour(conn, kind, day, hour, n), n)
                seconds[layout] += time.perf_counter() - t0
                readings[layout] += sum(r for _, r, _ in encoded)
    return {k: readings[k] / seconds[k] for k in _LAYOUTS}


async def _one_size(admin_url: str, devices: int, say: Callable[[str], None]) -> dict[str, Any]:
    url = await new_database(admin_url, f"bench_cold_{devices}")
    day = datetime.now(UTC).date() - timedelta(days=5)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    built = time.perf_counter()
    await backfill_direct(
        url, FleetConfig(meters=devices, vehicles=devices), start, start + timedelta(days=1)
    )
    conn = await connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
        built = time.perf_counter() - built
        await conn.fetchval("SELECT fleet_ensure_cold_day($1)", day)
        kinds = tuple(LAYOUTS)
        readings = {k: await day_readings(conn, k, day) for k in kinds}
        groups = {
            "fixed": dict.fromkeys(kinds, LEGACY_GROUPS),
            "sized": {k: groups_for(n) for k, n in readings.items()},
        }
        sizes: dict[str, float] = {}
        by_kind: dict[str, dict[str, float]] = {"fixed": {}, "sized": {}}
        parts = [f"{LAYOUTS[k].cold}_p{day:%Y%m%d}" for k in kinds]
        parts += [f"{LAYOUTS[k].hours}_p{day:%Y%m%d}" for k in kinds]
        for layout in _LAYOUTS:
            progress = compact.Progress()
            for kind in kinds:
                n = groups[layout][kind]
                await compact.write_blocks(
                    conn, kind, day, n, progress=progress, report=lambda _p: None
                )
                await compact.write_summaries(conn, kind, day, n)
            for part in parts:
                await conn.execute(f"VACUUM {part}")
            total = 0
            for kind in kinds:
                st = await day_storage(conn, day, kind, "compacted")
                by_kind[layout][kind] = st.bytes_per_reading or 0.0
                total += st.raw_bytes + st.index_bytes
            sizes[layout] = total / sum(readings.values())
            await conn.execute(f"TRUNCATE {', '.join(parts)}")
        speeds = await _speeds(conn, day, groups)
    finally:
        await conn.close()
    admin = await connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "bench_cold_{devices}" WITH (FORCE)')
    finally:
        await admin.close()
    fixed, sized = sizes["fixed"], sizes["sized"]
    fixed_rate, sized_rate = speeds["fixed"], speeds["sized"]
    target = TARGETS.get(devices)
    say(
        f"      {devices:,} + {devices:,} devices: {fixed:.2f} -> {sized:.2f} B/reading"
        f" ({groups['sized']} groups), compaction {fixed_rate:,.0f} -> {sized_rate:,.0f}/s"
        f" (day built in {built:.0f} s)"
    )
    return {
        "devices": devices,
        "readings": sum(readings.values()),
        "groups": groups["sized"],
        "fixedBytesPerReading": fixed,
        "sizedBytesPerReading": sized,
        "byKind": by_kind,
        "sizedVsFixed": sized / fixed,
        "targetBytesPerReading": target,
        "sizedVsTarget": sized / target if target else None,
        "fixedReadingsPerSecond": fixed_rate,
        "sizedReadingsPerSecond": sized_rate,
        "speedSizedVsFixed": sized_rate / fixed_rate,
    }


async def cold_size_stage(
    admin_url: str, *, quick: bool, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Each size's figures (see the module docstring)."""
    return [await _one_size(admin_url, n, say) for n in (QUICK_SIZES if quick else SIZES)]

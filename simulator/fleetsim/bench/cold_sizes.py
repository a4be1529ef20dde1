"""Bytes per reading of a compacted day by fleet size: device groups sized by the day's readings
(fleetdb.cold.groups, this version) against the fixed 64 groups of the version before, on the
same day in the same run.

For each size N (N meters + N vehicles, FleetConfig's model otherwise) one whole UTC day is built
by backfill --direct into a database of its own. Its blocks and summaries are then written with
each layout in turn (fixed, sized, sized, fixed: a slow moment of the machine weighs on both),
measured as `fleetctl storage` counts them (the cold partitions and their indexes, after VACUUM,
as autovacuum leaves them) and emptied before the next. The day stays open throughout: the
measure needs its raw partitions, which a compaction run would drop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetdb.cold import compact
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
_ORDER = ("fixed", "sized", "sized", "fixed")


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
        sizes: dict[str, list[float]] = {"fixed": [], "sized": []}
        speeds: dict[str, list[float]] = {"fixed": [], "sized": []}
        by_kind: dict[str, dict[str, float]] = {"fixed": {}, "sized": {}}
        parts = [f"{LAYOUTS[k].cold}_p{day:%Y%m%d}" for k in kinds]
        parts += [f"{LAYOUTS[k].hours}_p{day:%Y%m%d}" for k in kinds]
        for layout in _ORDER:
            progress = compact.Progress()
            t0 = time.perf_counter()
            for kind in kinds:
                n = groups[layout][kind]
                await compact.write_blocks(
                    conn, kind, day, n, progress=progress, report=lambda _p: None
                )
                await compact.write_summaries(conn, kind, day, n)
            speeds[layout].append(progress.readings / (time.perf_counter() - t0))
            for part in parts:
                await conn.execute(f"VACUUM {part}")
            total = 0
            for kind in kinds:
                st = await day_storage(conn, day, kind, "compacted")
                by_kind[layout][kind] = st.bytes_per_reading or 0.0
                total += st.raw_bytes + st.index_bytes
            sizes[layout].append(total / sum(readings.values()))
            await conn.execute(f"TRUNCATE {', '.join(parts)}")
    finally:
        await conn.close()
    admin = await connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "bench_cold_{devices}" WITH (FORCE)')
    finally:
        await admin.close()
    fixed, sized = min(sizes["fixed"]), min(sizes["sized"])
    fixed_rate, sized_rate = max(speeds["fixed"]), max(speeds["sized"])
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

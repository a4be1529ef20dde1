"""Readings for days that are no longer open: routed by writers to *_late, never stored twice.

A writer locks (shared) every day of its batch before today and reads those days' states in
the same transaction (fleet_lock_days). Readings of open days go the usual way. The others
are inserted into *_late unless stored already: in the raw partitions (a `compacting` day, still
there) or in the day's blocks (a `compacted` day: decoded here, ~1 ms per block), and *_late's
own key drops a repeat of a late reading. A stored one with other values is a conflict
(fleetdb.ingest.conflicts), found in the same three places. Compaction changes a day's state,
and merges late readings, under the exclusive lock of the day, so what a writer checked stays
true until it commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import asyncpg

from fleetdb.cold.groups import day_groups, group_of
from fleetdb.cold.layout import HOUR, day_start
from fleetdb.kinds import KindRef


async def closed_days(conn: asyncpg.Connection, days: Iterable[date]) -> dict[date, str]:
    """Lock `days` (shared, until the transaction ends) and return those not open, with
    their state. Call inside the batch transaction."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    rows = await conn.fetch("SELECT day, state FROM fleet_lock_days($1::date[])", wanted)
    return {r[0]: r[1] for r in rows if r[1] != "open"}


# A reading as a block holds it: kWh in millionths, then the layout's real columns.
BlockValues = tuple[int, tuple[float, ...]]


async def stored_in_blocks(
    conn: asyncpg.Connection, kind: KindRef, keys: Iterable[tuple[str, datetime]]
) -> dict[tuple[str, datetime], BlockValues]:
    """Which (device, ts) of compacted days are in their blocks already, with their values
    (a reading received again is a duplicate, or a conflict when its values differ)."""
    # numpy (~20 MB, ~0.1 s) only once fleetd meets a late reading of a compacted day.
    from fleetdb.cold import blocks  # noqa: PLC0415

    wanted: dict[tuple[date, int], list[tuple[str, datetime]]] = {}
    for dev, ts in keys:
        day = ts.date()
        wanted.setdefault((day, (ts - day_start(day)) // HOUR), []).append((dev, ts))
    found: dict[tuple[str, datetime], BlockValues] = {}
    if not wanted:
        return found
    n_groups = await day_groups(conn, kind, [day for day, _ in wanted])
    for (day, hour), items in wanted.items():
        g = n_groups[day]
        loaded = await blocks.load(conn, kind, day, hour, {group_of(d, g) for d, _ in items})
        base = day_start(day) + hour * HOUR
        for dev, ts in items:
            b = loaded.get(group_of(dev, g))
            if b is None:
                continue
            span = b.spans().get(dev)
            if span is None:
                continue
            us = (ts - base) // HOUR.resolution
            hits = (b.ts_us[span[0] : span[1]] == us).nonzero()[0]
            if len(hits):
                at = span[0] + int(hits[0])
                found[(dev, ts)] = (int(b.kwh_u[at]), tuple(float(f[at]) for f in b.floats))
    return found

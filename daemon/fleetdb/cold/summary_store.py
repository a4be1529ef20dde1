"""Hourly summaries in the database: built from a day's hourly rollups, loaded, replaced."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import lru_cache

import asyncpg
import numpy as np

from fleetdb.cold.blocks import fetch_bodies, from_array_send
from fleetdb.cold.groups import group_of
from fleetdb.cold.layout import DAY, day_start
from fleetdb.cold.summary import Summary, build, columns, decode_summary, encode_summary
from fleetdb.kinds import DeviceKind, KindRef, resolve
from fleetdb.rollups import HOURLY

# Summary column: its element type and its SQL from the hourly rollup row (fleetdb.rollups).
_FROM_ROLLUP = {
    "n": ("i8", "readings::int8"),
    "kwh": ("i8", "(kwh_sum * 1000000)::int8"),
    "temp_sum": ("f8", "{spread}_sum"),
    "temp_min": ("f4", "{spread}_min"),
    "temp_max": ("f4", "{spread}_max"),
    "soc_first": ("f4", "{edges}_first"),
    "soc_last": ("f4", "{edges}_last"),
    "first_us": ("i8", "(extract(epoch FROM {edges}_first_ts - $1) * 1000000)::int8"),
    "last_us": ("i8", "(extract(epoch FROM {edges}_last_ts - $1) * 1000000)::int8"),
}


def _rollup_sql(kind: DeviceKind) -> str:
    """One row of column arrays: the devices, hours (0-23) and columns(kind) of a day's
    hourly rollups, by device and hour."""
    names = columns(kind)
    spread, edges = kind.spread, kind.edges
    prefixes = {"spread": spread and spread.prefix, "edges": edges and edges.prefix}
    exprs = ", ".join(f"{_FROM_ROLLUP[n][1].format(**prefixes)} AS c_{n}" for n in names)
    arrays = ", ".join(f"array_send(array_agg(c_{n}))" for n in names)
    dev, table = kind.device, HOURLY.table(kind)
    return f"""
SELECT array_agg({dev}), array_send(array_agg(h)), {arrays}
  FROM (SELECT {dev}, extract(hour FROM hour AT TIME ZONE 'UTC')::int8 AS h, {exprs}
          FROM {table} WHERE hour >= $1 AND hour < $2
         ORDER BY {dev}, hour) s"""


async def from_rollups(
    conn: asyncpg.Connection, kind: KindRef, day: date, n_groups: int
) -> dict[int, Summary]:
    """The day's hourly rollups of `kind` as summaries, one per group of `n_groups`."""
    k = resolve(kind)
    lo = day_start(day)
    [row] = await conn.fetch(_rollup_sql(k), lo, lo + DAY)
    devices = list(row[0] or ())
    hours = from_array_send(row[1], "i8")
    cols = {
        name: from_array_send(row[2 + i], _FROM_ROLLUP[name][0])
        for i, name in enumerate(columns(k))
    }
    groups = np.fromiter(
        (group_of(d, n_groups) for d in devices), dtype=np.int64, count=len(devices)
    )
    out = {}
    for g in np.unique(groups).tolist():
        sel = np.flatnonzero(groups == g)
        out[g] = build(
            [devices[i] for i in sel.tolist()],
            hours[sel],
            {k: v[sel] for k, v in cols.items()},
            kind=k,
        )
    return out


async def store(
    conn: asyncpg.Connection, kind: KindRef, day: date, summaries: dict[int, Summary]
) -> None:
    """Write (or replace) summaries of one day."""
    if not summaries:
        return
    k = resolve(kind)
    grps = sorted(summaries)
    await conn.execute(
        f"""INSERT INTO {k.hours} (day, grp, readings, body)
            SELECT $1, g, n, b FROM unnest($2::smallint[], $3::int[], $4::bytea[]) u(g, n, b)
            ON CONFLICT (day, grp) DO UPDATE
               SET readings = excluded.readings, body = excluded.body""",
        day,
        grps,
        [int(summaries[g].n.sum()) for g in grps],
        [encode_summary(summaries[g], kind=k) for g in grps],
    )


async def load(
    conn: asyncpg.Connection | asyncpg.Pool,
    kind: KindRef,
    day: date,
    groups: Iterable[int] | None = None,
    *,
    for_update: bool = False,
) -> dict[int, Summary]:
    """Decoded summaries of one day by group (all groups when `groups` is None)."""
    k = resolve(kind)
    rows = await fetch_bodies(conn, k.hours, day, groups, for_update=for_update)
    fresh = groups is None or for_update
    return {
        g: decode_summary(body, kind=k) if fresh else decode_cached(body, kind=k)
        for g, body in rows
    }


@lru_cache(maxsize=64)
def decode_cached(body: bytes, *, kind: KindRef) -> Summary:
    """decode_summary() remembered by content, as blocks.decode_cached: callers must not
    modify the result."""
    return decode_summary(body, kind=resolve(kind))

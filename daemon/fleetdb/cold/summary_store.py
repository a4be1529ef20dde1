"""Hourly summaries in the database: built from a day's hourly rollups, loaded, replaced."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import lru_cache

import asyncpg
import numpy as np

from fleetdb.cold.blocks import fetch_bodies, from_array_send
from fleetdb.cold.layout import DAY, LAYOUTS, day_start, group_of
from fleetdb.cold.summary import Summary, build, decode_summary, encode_summary
from fleetdb.rollups import Kind

_ROLLUP_SQL = {
    "meter": """
SELECT array_agg(meter_id), array_send(array_agg(h)), array_send(array_agg(n)),
       array_send(array_agg(k))
  FROM (SELECT meter_id, extract(hour FROM hour AT TIME ZONE 'UTC')::int8 AS h,
               readings::int8 AS n, (kwh_sum * 1000000)::int8 AS k
          FROM meter_hourly WHERE hour >= $1 AND hour < $2
         ORDER BY meter_id, hour) s""",
    "vehicle": """
SELECT array_agg(vehicle_id), array_send(array_agg(h)), array_send(array_agg(n)),
       array_send(array_agg(k)), array_send(array_agg(temp_sum)), array_send(array_agg(temp_min)),
       array_send(array_agg(temp_max)), array_send(array_agg(soc_first)),
       array_send(array_agg(soc_last)), array_send(array_agg(f)), array_send(array_agg(l))
  FROM (SELECT vehicle_id, extract(hour FROM hour AT TIME ZONE 'UTC')::int8 AS h,
               readings::int8 AS n, (kwh_sum * 1000000)::int8 AS k, temp_sum, temp_min,
               temp_max, soc_first, soc_last,
               (extract(epoch FROM soc_first_ts - $1) * 1000000)::int8 AS f,
               (extract(epoch FROM soc_last_ts - $1) * 1000000)::int8 AS l
          FROM vehicle_hourly WHERE hour >= $1 AND hour < $2
         ORDER BY vehicle_id, hour) s""",
}
_VEHICLE_COLS = (
    ("n", "i8"),
    ("kwh", "i8"),
    ("temp_sum", "f8"),
    ("temp_min", "f4"),
    ("temp_max", "f4"),
    ("soc_first", "f4"),
    ("soc_last", "f4"),
    ("first_us", "i8"),
    ("last_us", "i8"),
)


async def from_rollups(conn: asyncpg.Connection, kind: Kind, day: date) -> dict[int, Summary]:
    """The day's hourly rollups of `kind` as summaries by group."""
    lo = day_start(day)
    [row] = await conn.fetch(_ROLLUP_SQL[kind], lo, lo + DAY)
    devices = list(row[0] or ())
    hours = from_array_send(row[1], "i8")
    vehicle = kind == "vehicle"
    specs = _VEHICLE_COLS if vehicle else _VEHICLE_COLS[:2]
    cols = {name: from_array_send(row[2 + i], t) for i, (name, t) in enumerate(specs)}
    groups = np.fromiter((group_of(d) for d in devices), dtype=np.int64, count=len(devices))
    out = {}
    for g in np.unique(groups).tolist():
        sel = np.flatnonzero(groups == g)
        out[g] = build(
            [devices[i] for i in sel.tolist()],
            hours[sel],
            {k: v[sel] for k, v in cols.items()},
            vehicle=vehicle,
        )
    return out


async def store(
    conn: asyncpg.Connection, kind: Kind, day: date, summaries: dict[int, Summary]
) -> None:
    """Write (or replace) summaries of one day."""
    if not summaries:
        return
    vehicle = kind == "vehicle"
    grps = sorted(summaries)
    await conn.execute(
        f"""INSERT INTO {LAYOUTS[kind].hours} (day, grp, readings, body)
            SELECT $1, g, n, b FROM unnest($2::smallint[], $3::int[], $4::bytea[]) u(g, n, b)
            ON CONFLICT (day, grp) DO UPDATE
               SET readings = excluded.readings, body = excluded.body""",
        day,
        grps,
        [int(summaries[g].n.sum()) for g in grps],
        [encode_summary(summaries[g], vehicle=vehicle) for g in grps],
    )


async def load(
    conn: asyncpg.Connection | asyncpg.Pool,
    kind: Kind,
    day: date,
    groups: Iterable[int] | None = None,
    *,
    for_update: bool = False,
) -> dict[int, Summary]:
    """Decoded summaries of one day by group (all groups when `groups` is None)."""
    rows = await fetch_bodies(conn, LAYOUTS[kind].hours, day, groups, for_update=for_update)
    vehicle = kind == "vehicle"
    fresh = groups is None or for_update
    return {
        g: decode_summary(body, vehicle=vehicle) if fresh else decode_cached(body, vehicle=vehicle)
        for g, body in rows
    }


@lru_cache(maxsize=64)
def decode_cached(body: bytes, *, vehicle: bool) -> Summary:
    """decode_summary() remembered by content, as blocks.decode_cached: callers must not
    modify the result."""
    return decode_summary(body, vehicle=vehicle)

"""What each day costs on disk, per kind: readings, bytes and bytes per reading, open or
compacted. Sizes are PostgreSQL's own (pg_total_relation_size, pg_indexes_size)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from fleetdb.cold.layout import DAY, day_start
from fleetdb.kinds import REGISTRY, DeviceKind, KindRef, resolve
from fleetdb.rollups import HOURLY, LEVELS, Kind


@dataclass(frozen=True)
class DayStorage:
    """One day of one kind."""

    day: date
    kind: Kind
    state: str
    readings: int
    raw_bytes: int  # history (open) or blocks (compacted): heap, TOAST, maps
    index_bytes: int
    rollup_bytes: int  # every rollup level (open) or the hourly summaries (compacted)

    @property
    def bytes_per_reading(self) -> float | None:
        """History and its indexes per reading (the cold tier's measure)."""
        return (self.raw_bytes + self.index_bytes) / self.readings if self.readings else None

    @property
    def rollup_bytes_per_reading(self) -> float | None:
        """Rollups per reading."""
        return self.rollup_bytes / self.readings if self.readings else None


# Everything on disk (heap, TOAST and its index, free space and visibility maps, indexes),
# split into the table's own indexes and the rest.
_SIZE = """
SELECT coalesce(pg_total_relation_size(t) - pg_indexes_size(t), 0),
       coalesce(pg_indexes_size(t), 0)
  FROM (SELECT to_regclass($1) AS t) x
"""
_TOTAL = """
SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)::bigint FROM unnest($1::text[]) t
"""


async def day_storage(conn: asyncpg.Connection, day: date, kind: KindRef, state: str) -> DayStorage:
    """Sizes of one day of one kind."""
    lay = resolve(kind)
    suffix = f"_p{day:%Y%m%d}"
    if state == "compacted":
        [(raw, idx)] = await conn.fetch(_SIZE, lay.cold + suffix)
        rollups = await conn.fetchval(_TOTAL, [lay.hours + suffix])
        readings = await conn.fetchval(
            f"SELECT coalesce(sum(readings), 0) FROM {lay.cold} WHERE day = $1", day
        )
    else:
        [(raw, idx)] = await conn.fetch(_SIZE, lay.raw + suffix)
        rollups = await conn.fetchval(_TOTAL, [lv.table(lay) + suffix for lv in LEVELS])
        readings = await conn.fetchval(
            f"SELECT coalesce(sum(readings), 0) FROM {HOURLY.table(lay)}"
            " WHERE hour >= $1 AND hour < $2",
            day_start(day),
            day_start(day) + DAY,
        )
    return DayStorage(day, lay.name, state, int(readings), int(raw), int(idx), int(rollups))


async def storage(
    conn: asyncpg.Connection, kinds: tuple[DeviceKind, ...] = REGISTRY
) -> list[DayStorage]:
    """Every day that fleet_days knows, oldest first, kind by kind (meters then vehicles)."""
    out = []
    for r in await conn.fetch("SELECT day, state FROM fleet_days ORDER BY day"):
        for kind in kinds:
            out.append(await day_storage(conn, r["day"], kind, r["state"]))
    return out

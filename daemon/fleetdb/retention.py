"""Partition lifecycle: list the daily partitions and drop those past the retention period.

History and rollups have separate retention: rollups (all three levels) take ~21 B per reading
against ~134 B of raw history, so operators keep them (and the reports they answer) long after
the raw rows are gone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from fleetdb.cold.layout import day_start
from fleetdb.rollups import rollup_tables

# Compacted days (fleetdb.cold): blocks are history, hourly summaries are rollups.
HISTORY = ("meter_readings", "vehicle_readings", "meter_cold", "vehicle_cold")
ROLLUPS = (*rollup_tables(), "meter_cold_hours", "vehicle_cold_hours")
# Only tables fleet_ensure_day() made are ever dropped: the name says parent and day.
_NAME = re.compile(rf"^({'|'.join(HISTORY + ROLLUPS)})_p(\d{{8}})$")


@dataclass(frozen=True)
class Partition:
    """One daily partition."""

    name: str
    parent: str
    day: date
    bytes: int
    rows_estimate: int


async def list_partitions(conn: asyncpg.Connection) -> list[Partition]:
    """Every daily partition of the partitioned tables, by parent then day."""
    rows = await conn.fetch(
        """SELECT c.relname AS name, p.relname AS parent,
                  pg_total_relation_size(c.oid) AS bytes, greatest(c.reltuples, 0)::bigint AS n
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = ANY($1::text[])""",
        list(HISTORY + ROLLUPS),
    )
    out = []
    for r in rows:
        m = _NAME.match(r["name"])
        if m is None:
            continue
        day = datetime.strptime(m.group(2), "%Y%m%d").date()
        out.append(Partition(r["name"], r["parent"], day, r["bytes"], r["n"]))
    return sorted(out, key=lambda p: (p.parent, p.day))


async def drop_older_than(
    conn: asyncpg.Connection,
    days: int,
    parents: tuple[str, ...] = HISTORY,
    *,
    today: date | None = None,
) -> list[str]:
    """Drop the partitions of `parents` whose whole day ended more than `days` days ago.

    DETACH ... CONCURRENTLY first, so ingest into today's partition never waits for the drop.
    """
    if days < 1:
        raise ValueError("retention must be at least 1 day")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=days)
    dropped = []
    for part in await list_partitions(conn):
        if part.parent not in parents or part.day >= cutoff:
            continue
        # Names are validated by _NAME above, so quoting them is safe.
        await conn.execute(
            f'ALTER TABLE "{part.parent}" DETACH PARTITION "{part.name}" CONCURRENTLY'
        )
        await conn.execute(f'DROP TABLE "{part.name}"')
        dropped.append(part.name)
    if "meter_readings" in parents:
        # Late readings of compacted days not merged yet go with the rest of their day.
        for table in ("meter_late", "vehicle_late"):
            await conn.execute(f"DELETE FROM {table} WHERE ts < $1", day_start(cutoff))
    return dropped

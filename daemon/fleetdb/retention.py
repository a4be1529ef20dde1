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
from fleetdb.kinds import REGISTRY, DeviceKind
from fleetdb.rollups import rollup_tables

Kinds = tuple[DeviceKind, ...]


def history_tables(kinds: Kinds = REGISTRY) -> tuple[str, ...]:
    """Partitioned tables of readings: raw history, and (compacted days, fleetdb.cold) blocks."""
    return (*(k.history for k in kinds), *(k.cold for k in kinds))


def rollup_parents(kinds: Kinds = REGISTRY) -> tuple[str, ...]:
    """Partitioned tables of rollups: every level, and the compacted days' hourly summaries."""
    return (*rollup_tables(kinds), *(k.hours for k in kinds))


HISTORY = history_tables()
ROLLUPS = rollup_parents()
# Only tables fleet_ensure_day() made are ever dropped: the name says parent and day.
_DAY = re.compile(r"_p(\d{8})$")


@dataclass(frozen=True)
class Partition:
    """One daily partition."""

    name: str
    parent: str
    day: date
    bytes: int
    rows_estimate: int


async def list_partitions(conn: asyncpg.Connection, kinds: Kinds = REGISTRY) -> list[Partition]:
    """Every daily partition of the partitioned tables, by parent then day."""
    rows = await conn.fetch(
        """SELECT c.relname AS name, p.relname AS parent,
                  pg_total_relation_size(c.oid) AS bytes, greatest(c.reltuples, 0)::bigint AS n
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = ANY($1::text[])""",
        [*history_tables(kinds), *rollup_parents(kinds)],
    )
    out = []
    for r in rows:
        m = _DAY.search(r["name"])
        if m is None or r["name"] != f"{r['parent']}{m.group(0)}":
            continue
        day = datetime.strptime(m.group(1), "%Y%m%d").date()
        out.append(Partition(r["name"], r["parent"], day, r["bytes"], r["n"]))
    return sorted(out, key=lambda p: (p.parent, p.day))


async def drop_older_than(
    conn: asyncpg.Connection,
    days: int,
    parents: tuple[str, ...] | None = None,
    *,
    today: date | None = None,
    kinds: Kinds = REGISTRY,
) -> list[str]:
    """Drop the partitions of `parents` (default: history_tables(kinds)) whose whole day ended
    more than `days` days ago.

    DETACH ... CONCURRENTLY first, so ingest into today's partition never waits for the drop.
    """
    if parents is None:
        parents = history_tables(kinds)
    if days < 1:
        raise ValueError("retention must be at least 1 day")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=days)
    if set(parents) & set(history_tables(kinds)):
        # Raw history only of days folded at every level (fleetdb.fold; the coarsest
        # watermark is the earliest): after a watermark, the reports and the fold itself read
        # the raw rows, so a day dropped before its fold would be gone from every report.
        folded = await conn.fetchval("SELECT min(folded_to) FROM fleet_rollup_folded")
        if folded is not None:
            cutoff = min(cutoff, folded.astimezone(UTC).date())
    dropped = []
    for part in await list_partitions(conn, kinds):
        if part.parent not in parents or part.day >= cutoff:
            continue
        # Names are parent + _pYYYYMMDD of our own parents (list_partitions): safe to quote.
        await conn.execute(
            f'ALTER TABLE "{part.parent}" DETACH PARTITION "{part.name}" CONCURRENTLY'
        )
        await conn.execute(f'DROP TABLE "{part.name}"')
        dropped.append(part.name)
    for kind in kinds:
        if kind.history in parents:
            # Late readings of compacted days not merged yet go with the rest of their day.
            await conn.execute(f"DELETE FROM {kind.late} WHERE ts < $1", day_start(cutoff))
    return dropped

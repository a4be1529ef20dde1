"""How a compacted day of one kind splits its devices into groups: one block per group and hour.

A device's group is the CRC-32 of its id modulo the day's group count. The count is chosen per
(day, kind) when the day is compacted, from the readings the day holds: ~READINGS_PER_BLOCK per
block, rounded to a power of two. A fleet of 10,000 devices (600,000 readings an hour) gets the
64 groups every day had before the count was chosen, blocks of ~9,400 readings whose device
hour decodes in ~1 ms; a fleet of 60 gets one block per hour, where a fixed 64 groups made
blocks of one device: zlib learnt nothing from 60 readings, and the per-row costs of
PostgreSQL (tuple, index entry, TOAST chunk) were paid 1,440 times a day instead of 24.

The readings are counted from the hourly rollups, and from the raw history for the hours the
rollups do not hold (day_readings).

The count is recorded in fleet_cold_groups before the day's first block is written. A day
without a row was compacted by the version before: LEGACY_GROUPS, as it was written.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from datetime import date

import asyncpg

from fleetdb.cold.layout import DAY, day_start
from fleetdb.kinds import KindRef, resolve
from fleetdb.rollups import HOURLY

LEGACY_GROUPS = 64
READINGS_PER_BLOCK = 9_400
MAX_GROUPS = 4_096  # 256 million readings a day at the target size


def group_of(device: str, groups: int) -> int:
    """The group of a device among `groups`: stable across processes and versions (CRC-32)."""
    return zlib.crc32(device.encode()) % groups


def groups_for(readings: int) -> int:
    """The group count for a day of `readings` readings of one kind: the power of two that
    brings blocks nearest READINGS_PER_BLOCK (one group below that)."""
    blocks = readings / 24 / READINGS_PER_BLOCK
    if blocks <= 1:
        return 1
    return min(MAX_GROUPS, 1 << round(math.log2(blocks)))


async def day_groups(
    db: asyncpg.Connection | asyncpg.Pool, kind: KindRef, days: Iterable[date]
) -> dict[date, int]:
    """The group count of each of `days` (compacted or being compacted)."""
    wanted = sorted(set(days))
    rows = await db.fetch(
        "SELECT day, groups FROM fleet_cold_groups WHERE kind = $1 AND day = ANY($2::date[])",
        resolve(kind).name,
        wanted,
    )
    found = {r[0]: int(r[1]) for r in rows}
    return {d: found.get(d, LEGACY_GROUPS) for d in wanted}


async def choose_groups(conn: asyncpg.Connection, kind: KindRef, day: date) -> int:
    """The group count compaction writes `day` of `kind` with, recorded on first use: the one
    recorded; LEGACY_GROUPS when the version before left blocks or summaries of the day (a run
    it did not finish); else from the day's readings (day_readings)."""
    lay = resolve(kind)
    recorded = await conn.fetchval(
        "SELECT groups FROM fleet_cold_groups WHERE kind = $1 AND day = $2", lay.name, day
    )
    if recorded is not None:
        return int(recorded)
    legacy = await conn.fetchval(
        f"SELECT EXISTS (SELECT FROM {lay.cold} WHERE day = $1)"
        f" OR EXISTS (SELECT FROM {lay.hours} WHERE day = $1)",
        day,
    )
    groups = LEGACY_GROUPS if legacy else groups_for(await day_readings(conn, kind, day))
    await record(conn, kind, day, groups)
    return groups


async def day_readings(conn: asyncpg.Connection, kind: KindRef, day: date) -> int:
    """Readings of `day` of `kind`: for the hours its hourly rollups hold, as they count them
    (exact, and ~100x fewer rows to read than the raw history); for the hours they do not hold
    (rollup retention dropped the day, or the rollups are not complete that far yet), counted
    in the raw history, so such a day is not sized as empty (one group: one block an hour of
    every device)."""
    lay = resolve(kind)
    lo = day_start(day)
    rows = await conn.fetch(
        f"SELECT hour, sum(readings) FROM {HOURLY.table(lay)}"
        " WHERE hour >= $1 AND hour < $2 GROUP BY hour",
        lo,
        lo + DAY,
    )
    counted = sum(int(r[1]) for r in rows)
    if len(rows) == 24:
        return counted
    # One scan of the day's raw rows at most, a fraction of what writing its blocks reads.
    raw = await conn.fetchval(
        f"SELECT count(*) FROM {lay.history} WHERE ts >= $1 AND ts < $2"
        " AND date_bin('1 hour', ts, $1) <> ALL($3::timestamptz[])",
        lo,
        lo + DAY,
        [r[0] for r in rows],
    )
    return counted + int(raw)


async def record(conn: asyncpg.Connection, kind: KindRef, day: date, groups: int) -> None:
    """Record the group count of `day`, before its first block is written (one compaction
    runs at a time: nothing else records it meanwhile)."""
    await conn.execute(
        "INSERT INTO fleet_cold_groups (day, kind, groups) VALUES ($1, $2, $3)"
        " ON CONFLICT (day, kind) DO NOTHING",
        day,
        resolve(kind).name,
        groups,
    )

"""Compaction of closed days, and the merge of late readings into compacted ones.

A day goes open -> compacting -> compacted (fleet_days):
1. `compacting` (under the exclusive day lock, so no flush is writing into the day): from now
   on writers put the day's readings into *_late, checked against the raw rows, and the raw
   and rollup partitions of the day no longer change. Reports still read them.
2. Every hour of each kind is encoded into blocks, one per device group (fleetdb.cold.groups:
   their count, sized by the day's readings, is recorded first), one transaction per (kind,
   hour), and the day's hourly rollups become one summary row per group. A killed run leaves
   whole hours: the next run skips the hours it finds and does the rest.
3. The blocks must hold exactly the readings the rollups count; then `compacted`: reports read
   the blocks and summaries, writers check late readings against the blocks.
4. The raw and rollup partitions are dropped: DROP locks the parent tables for that moment
   only, with a lock timeout and retries (a later run drops what is left).
Late readings of a compacted day are merged into its blocks and summaries in one transaction
under the exclusive day lock, and deleted from *_late in the same transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from fleetdb.cold import blocks, summary_store
from fleetdb.cold.codec import Block
from fleetdb.cold.groups import choose_groups, day_groups, group_of
from fleetdb.cold.layout import DAY, HOUR, day_start, hour_start, latest_allowed
from fleetdb.cold.stats import slice_stats
from fleetdb.cold.summary import Summary
from fleetdb.fold import fold_until
from fleetdb.kinds import REGISTRY, DeviceKind, KindRef, resolve
from fleetdb.rollups import HOURLY, LEVELS, rollup_tables

Kinds = tuple[DeviceKind, ...]


def history(kinds: Kinds = REGISTRY) -> tuple[str, ...]:
    """The raw history tables."""
    return tuple(k.history for k in kinds)


def partitioned(kinds: Kinds = REGISTRY) -> tuple[str, ...]:
    """What fleet_drop_compacted_day drops: a day with any of these left has its drop step
    to do."""
    return (*history(kinds), *rollup_tables(kinds))


_LOCK = "SELECT pg_try_advisory_lock(hashtext('fleet_compaction'))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext('fleet_compaction'))"
_DROP_ATTEMPTS = 5


class CompactionBusyError(RuntimeError):
    """Another compaction holds the lock."""


@dataclass
class Progress:
    """What a run has done so far (passed to the progress callback after each hour)."""

    day: date | None = None
    readings: int = 0
    late_merged: int = 0
    days_done: list[date] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Readings per second so far."""
        return self.readings / max(time.monotonic() - self.started, 1e-9)


ProgressFn = Callable[[Progress], None]


async def _has_any(conn: asyncpg.Connection, day: date, parents: tuple[str, ...]) -> bool:
    """Whether any of `parents` still has its partition for `day`."""
    names = [f"{t}_p{day:%Y%m%d}" for t in parents]
    return bool(
        await conn.fetchval(
            "SELECT bool_or(to_regclass(n) IS NOT NULL) FROM unnest($1::text[]) n", names
        )
    )


async def write_blocks(
    conn: asyncpg.Connection,
    kind: KindRef,
    day: date,
    n_groups: int,
    *,
    progress: Progress,
    report: ProgressFn,
) -> None:
    """Encode the hours of `day` that have no blocks yet into blocks of `n_groups` groups."""
    lay = resolve(kind)
    done = {
        r[0] for r in await conn.fetch(f"SELECT DISTINCT hour FROM {lay.cold} WHERE day = $1", day)
    }
    loop = asyncio.get_running_loop()
    for hour in range(24):
        if hour in done:
            continue
        rows = await blocks.fetch_hour(conn, lay, day, hour, n_groups)
        # zlib releases the GIL: encoding in a thread lets the next fetch's wait overlap it.
        encoded = await loop.run_in_executor(None, blocks.encode_all, rows, n_groups)
        async with conn.transaction():
            progress.readings += await blocks.store_encoded(conn, lay, day, hour, encoded)
        report(progress)


async def write_summaries(
    conn: asyncpg.Connection, kind: KindRef, day: date, n_groups: int
) -> None:
    """The day's hourly rollups as summary rows of `n_groups` groups, once (one transaction)."""
    lay = resolve(kind)
    async with conn.transaction():
        if await conn.fetchval(f"SELECT EXISTS (SELECT FROM {lay.hours} WHERE day = $1)", day):
            return
        await summary_store.store(
            conn, lay, day, await summary_store.from_rollups(conn, lay, day, n_groups)
        )


async def _check(conn: asyncpg.Connection, lay: DeviceKind, day: date) -> None:
    in_blocks = await conn.fetchval(
        f"SELECT coalesce(sum(readings), 0) FROM {lay.cold} WHERE day = $1", day
    )
    summed = await conn.fetchval(
        f"SELECT coalesce(sum(readings), 0) FROM {lay.hours} WHERE day = $1", day
    )
    if in_blocks != summed:
        raise RuntimeError(
            f"{lay.name} blocks of {day} hold {in_blocks} readings but the rollups count {summed};"
            " the day stays readable from its raw partitions"
        )


async def _drop(conn: asyncpg.Connection, day: date) -> bool:
    for attempt in range(_DROP_ATTEMPTS):
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '2s'")
                await conn.fetchval("SELECT fleet_drop_compacted_day($1)", day)
            return True
        except asyncpg.LockNotAvailableError:
            await asyncio.sleep(0.5 * (attempt + 1))
    return False


async def compact_day(
    conn: asyncpg.Connection,
    day: date,
    progress: Progress,
    report: ProgressFn,
    kinds: Kinds = REGISTRY,
) -> None:
    """Take one day through every step that is still to do (see the module docstring)."""
    progress.day = day
    state = await conn.fetchval("SELECT state FROM fleet_days WHERE day = $1", day)
    if state in (None, "open"):
        await conn.fetchval("SELECT fleet_set_day_state($1, 'open', 'compacting')", day)
        state = "compacting"
    if state == "compacting":
        await conn.fetchval("SELECT fleet_ensure_cold_day($1)", day)
        # Without raw partitions (retention dropped them) the rollups still become summaries.
        raw = await _has_any(conn, day, history(kinds))
        for kind in kinds:
            n_groups = await choose_groups(conn, kind, day)
            if raw:
                await write_blocks(conn, kind, day, n_groups, progress=progress, report=report)
            await write_summaries(conn, kind, day, n_groups)
            if raw:
                await _check(conn, kind, day)
        await conn.fetchval("SELECT fleet_set_day_state($1, 'compacting', 'compacted')", day)
    if await _has_any(conn, day, partitioned(kinds)):
        await _drop(conn, day)
    progress.days_done.append(day)


async def _late_days(conn: asyncpg.Connection, kinds: Kinds) -> list[date]:
    late = " UNION ALL ".join(f"SELECT ts FROM {k.late}" for k in kinds)
    rows = await conn.fetch(
        f"""SELECT DISTINCT (l.ts AT TIME ZONE 'UTC')::date AS day FROM ({late}) l
           JOIN fleet_days f ON f.day = (l.ts AT TIME ZONE 'UTC')::date
          WHERE f.state = 'compacted' ORDER BY 1"""
    )
    return [r[0] for r in rows]


async def run(
    conn: asyncpg.Connection,
    before: date,
    report: ProgressFn | None = None,
    *,
    kinds: Kinds = REGISTRY,
) -> Progress:
    """Compact every day before `before` that is not compacted yet, finish what a killed run
    left, and merge late readings into compacted days."""
    if before > latest_allowed():
        raise ValueError(f"days from {latest_allowed()} on cannot be compacted yet")
    if not await conn.fetchval(_LOCK):
        raise CompactionBusyError("another compaction is running")
    progress = Progress()
    cb: ProgressFn = report or (lambda _p: None)
    try:
        # A day's summaries come from its rollups: only a day whose every level is folded
        # (fleetdb.fold) is complete in them. Folded here up to `before`'s midnight only:
        # folding up to now would move the watermarks past a backlog fleetd is draining.
        reached = await fold_until(conn, day_start(before), timedelta(0), kinds)
        before = min(before, reached[LEVELS[-1].name].astimezone(UTC).date())
        days = await conn.fetch(
            """SELECT day FROM fleet_days WHERE day < $1 AND state <> 'compacted'
               UNION
               SELECT day FROM fleet_days WHERE state = 'compacted'
                  AND EXISTS (SELECT FROM unnest($2::text[]) t
                               WHERE to_regclass(t || '_p' || to_char(day, 'YYYYMMDD')) IS NOT NULL)
               ORDER BY 1""",
            before,
            [HOURLY.table(k) for k in kinds],
        )
        for r in days:
            await compact_day(conn, r[0], progress, cb, kinds)
        for day in await _late_days(conn, kinds):
            progress.late_merged += await merge_late(conn, day, kinds)
        return progress
    finally:
        await conn.fetchval(_UNLOCK)


# --- late readings -------------------------------------------------------------------------


def late_columns(kind: DeviceKind) -> str:
    """A late row as a block holds it: device, ts, received_at, kWh in millionths, floats."""
    floats = "".join(f", {f}" for f in kind.floats)
    return f"{kind.device}, ts, received_at, ({kind.kwh} * 1000000)::bigint{floats}"


def _insert_into(b: Block, dev: str, rows: list[Any], base: datetime) -> int:
    """Add late rows of `dev` to block `b` unless stored already; returns rows added."""
    spans = b.spans()
    a, e = spans.get(dev, (None, None))
    have = set(b.ts_us[a:e].tolist()) if a is not None else set()
    new = []
    for r in rows:
        us = (r[1] - base) // timedelta(microseconds=1)
        if us not in have:
            have.add(us)
            new.append((us, (r[2] - r[1]) // timedelta(seconds=1), r[3], *r[4:]))
    if not new:
        return 0
    if a is None or e is None:
        # A device new to this block: at its sorted place.
        i = sum(1 for d in b.devices if d < dev)
        a = e = int(b.counts[:i].sum())
        b.devices.insert(i, dev)
        b.counts = np.insert(b.counts, i, 0)
    else:
        i = b.devices.index(dev)
    old = [
        (int(b.ts_us[j]), int(b.recv_s[j]), int(b.kwh_u[j]), *(float(c[j]) for c in b.floats))
        for j in range(a, e)
    ]
    merged = sorted(old + new, key=lambda t: t[0])
    cols = list(zip(*merged, strict=True))

    def splice(col: Any, values: Any, dtype: Any) -> Any:
        return np.concatenate([col[:a], np.asarray(values, dtype=dtype), col[e:]])

    b.ts_us = splice(b.ts_us, cols[0], np.int64)
    b.recv_s = splice(b.recv_s, cols[1], np.int64)
    b.kwh_u = splice(b.kwh_u, cols[2], np.int64)
    b.floats = [splice(f, cols[3 + k], np.float32) for k, f in enumerate(b.floats)]
    b.counts[i] += len(new)
    return len(new)


async def merge_late(conn: asyncpg.Connection, day: date, kinds: Kinds = REGISTRY) -> int:
    """Move the late readings of compacted `day` into its blocks and summaries, in one
    transaction; returns how many were new (the others were stored already: just deleted)."""
    added = 0
    lo = day_start(day)
    async with conn.transaction():
        # Writers take this lock (shared) before they check or insert a late reading of the
        # day: none can slip in between the read below and the DELETE.
        await conn.execute("SELECT fleet_lock_day_exclusive($1)", day)
        for lay in kinds:
            rows = await conn.fetch(
                f"SELECT {late_columns(lay)} FROM {lay.late}"
                " WHERE ts >= $1 AND ts < $2 ORDER BY 1, 2",
                lo,
                lo + DAY,
            )
            if not rows:
                continue
            n_groups = (await day_groups(conn, lay, [day]))[day]
            by_hour: dict[int, dict[str, list[Any]]] = {}
            for r in rows:
                by_hour.setdefault((r[1] - lo) // HOUR, {}).setdefault(r[0], []).append(r)
            for hour, devs in sorted(by_hour.items()):
                base = hour_start(day, hour)
                found = await blocks.load(
                    conn, lay, day, hour, {group_of(d, n_groups) for d in devs}, for_update=True
                )
                touched = []
                for dev, dev_rows in devs.items():
                    empty = [np.zeros(0, dtype=np.float32) for _ in lay.floats]
                    b = found.setdefault(group_of(dev, n_groups), Block(floats=empty))
                    n = _insert_into(b, dev, dev_rows, base)
                    if n:
                        added += n
                        touched.append(dev)
                if not touched:
                    continue
                await blocks.store_encoded(
                    conn, lay, day, hour, blocks.encode_all(list(found.values()), n_groups)
                )
                sums = await summary_store.load(
                    conn, lay, day, {group_of(d, n_groups) for d in touched}, for_update=True
                )
                for dev in touched:
                    b = found[group_of(dev, n_groups)]
                    a, e = b.spans()[dev]
                    s = sums.setdefault(group_of(dev, n_groups), Summary())
                    s.set_hour(
                        s.row_of(dev, kind=lay),
                        hour,
                        slice_stats(b, a, e, base, kind=lay),
                        lo,
                        kind=lay,
                    )
                await summary_store.store(conn, lay, day, sums)
            await conn.execute(f"DELETE FROM {lay.late} WHERE ts >= $1 AND ts < $2", lo, lo + DAY)
    return added

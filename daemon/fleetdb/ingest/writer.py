"""One flush = one transaction of set-based SQL: history INSERT ... ON CONFLICT DO NOTHING whose
RETURNING rows feed the rollup levels whose buckets they fall in are folded already (late
readings: fleetdb.fold aggregates the others from history later; only really-new rows are
counted either way), an upsert of the
newest reading per device into the current tables (never moving back in time), and the rejects.
Readings of days that are compacted or being compacted go to the late tables instead
(fleetdb.cold.late), still exactly once. A reading whose key is stored with other values is
kept as a conflict reject in the same transaction (fleetdb.ingest.conflicts).

Every statement is built from the kind's registry entry (fleetdb.kinds), once per kind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any

import asyncpg

from fleetdb.cold.late import closed_days, stored_in_blocks
from fleetdb.fold import LOCK_SHARED, Marks
from fleetdb.fold import marks as read_marks
from fleetdb.ingest.conflicts import Conflict, compare_with_block, find_stored
from fleetdb.ingest.conflicts import store as store_conflicts
from fleetdb.ingest.messages import Rejected
from fleetdb.kinds import METER, REGISTRY, VEHICLE, DeviceKind
from fleetdb.rollups import LEVELS, upsert_sql

Kinds = tuple[DeviceKind, ...]
# A reading of any kind (its class is the kind's `reading`) with its receive time.
Pair = tuple[Any, datetime]


def _rolls(kind: DeviceKind, first: int) -> str:
    # Every rollup level fed from the rows this statement really inserted (CTE `ins`) whose
    # bucket is folded already: level i's watermark is parameter $first+i.
    return "".join(
        f",\nroll_{lv.name} AS (\n    {upsert_sql(kind, lv, 'ins', where=f'WHERE ts < ${i}')}\n)"
        for i, lv in enumerate(LEVELS, start=first)
    )


def _received(kind: DeviceKind, alias: str) -> list[str]:
    """The value columns of unnest alias `alias` as stored (numeric cast from float8)."""
    return [
        f"{alias}.c{i}::{c.sql_type}" if c.numeric else f"{alias}.c{i}"
        for i, c in enumerate(kind.columns)
    ]


def _arrays(kind: DeviceKind, first: int) -> str:
    """The value columns' parameter arrays, from $first on."""
    return "".join(f", ${first + i}::{c.param}[]" for i, c in enumerate(kind.columns))


def _aliases(kind: DeviceKind) -> str:
    return "".join(f", c{i}" for i in range(len(kind.columns)))


# float8 -> numeric(12,6) in SQL: PostgreSQL converts with 15 significant digits, so the JSON
# number "2.345678" (parsed to the nearest double) is stored as exactly 2.345678.
# Rows are inserted in key order, ties in arrival order (ordinality): of two versions of one
# key in a batch, the first received is stored. The second column lists (1-based) the readings
# not inserted, only when there are any: the subquery is evaluated only then (an InitPlan is
# run on first use), so a batch without duplicates pays nothing for conflict detection. A
# reading equal to one inserted by this statement is a plain duplicate and left out.
@lru_cache(maxsize=32)
def insert_sql(kind: DeviceKind, *, rolled: bool = False) -> str:
    """The history INSERT of `kind`: $1 ids, $2 ts, then one array per value column, then the
    receive times; `rolled`: with the rollups of folded buckets, each level's watermark a
    parameter after those (finest first)."""
    n = len(kind.columns)
    cols = ", ".join(kind.names)
    same = "".join(
        f"\n                          AND ins.{c.name} = {v}"
        for c, v in zip(kind.columns, _received(kind, "d"), strict=True)
    )
    return f"""
WITH ins AS (
    INSERT INTO {kind.history} ({kind.device}, ts, {cols}, received_at)
    SELECT u.d, u.t, {", ".join(_received(kind, "u"))}, u.r
    FROM unnest($1::text[], $2::timestamptz[]{_arrays(kind, 3)}, ${n + 3}::timestamptz[])
         WITH ORDINALITY AS u(d, t{_aliases(kind)}, r, o)
    ORDER BY u.d COLLATE "C", u.t, u.o
    ON CONFLICT DO NOTHING
    RETURNING {kind.device}, ts, {cols}
){_rolls(kind, n + 4) if rolled else ""}
SELECT count(*), CASE WHEN count(*) < cardinality($1::text[]) THEN (
    SELECT array_agg(o)
      FROM unnest($1::text[], $2::timestamptz[]{_arrays(kind, 3)})
           WITH ORDINALITY AS d(d, t{_aliases(kind)}, o)
     WHERE NOT EXISTS (SELECT FROM ins WHERE ins.{kind.device} = d.d AND ins.ts = d.t{same})
) END
FROM ins
"""


# A reading of a day that is no longer open, unless stored already: the raw partitions still
# hold a `compacting` day; blocks are checked before this (stored_in_blocks).
@lru_cache(maxsize=32)
def insert_late_sql(kind: DeviceKind) -> str:
    """The late table's INSERT of `kind` (parameters as insert_sql's)."""
    n = len(kind.columns)
    cols = ", ".join(kind.names)
    return f"""
WITH ins AS (
    INSERT INTO {kind.late} ({kind.device}, ts, {cols}, received_at)
    SELECT u.d, u.t, {", ".join(_received(kind, "u"))}, u.r
    FROM unnest($1::text[], $2::timestamptz[]{_arrays(kind, 3)}, ${n + 3}::timestamptz[])
         AS u(d, t{_aliases(kind)}, r)
    WHERE NOT EXISTS (SELECT FROM {kind.history} x WHERE x.{kind.device} = u.d AND x.ts = u.t)
    ON CONFLICT DO NOTHING
    RETURNING {kind.device}, ts
)
SELECT {kind.device}, ts FROM ins
"""


# Only the newest reading per device of the batch is sent (ON CONFLICT DO UPDATE may not touch
# one key twice), and only applied when newer than the stored one: the hot row never goes back.
@lru_cache(maxsize=32)
def upsert_current_sql(kind: DeviceKind) -> str:
    """The current table's upsert of `kind`: $1 ids, $2 ts, then one array per value column."""
    cols = ", ".join(kind.names)
    sets = "".join(f"{c} = excluded.{c}, " for c in kind.names)
    return f"""
INSERT INTO {kind.current} AS c ({kind.device}, ts, {cols}, updated_at)
SELECT u.d, u.t, {", ".join(_received(kind, "u"))}, now()
FROM unnest($1::text[], $2::timestamptz[]{_arrays(kind, 3)}) AS u(d, t{_aliases(kind)})
ORDER BY u.d COLLATE "C"
ON CONFLICT ({kind.device}) DO UPDATE
   SET ts = excluded.ts, {sets}updated_at = excluded.updated_at
 WHERE c.ts < excluded.ts
"""


INSERT_REJECTS = """
INSERT INTO rejected_messages (received_at, topic, payload, reason, payload_sha256, field, rule)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bytea[], $4::text[], $5::bytea[],
                     $6::text[], $7::text[])
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed flush did, per kind (by name). duplicates = readings that were
    already stored with the same values; conflicts = readings whose key was stored with other
    values (kept as rejects, the stored value unchanged), newly kept by this flush.

    Per reading, for an HTTP request's answer (fleetd.ingest.tickets): `missed` holds the id()
    of each reading object not inserted (a duplicate or a conflict), `conflict_keys` the
    (kind, device, ts) of the conflicts, `refused` the id() and reason of readings the database
    refused (stored as rejects instead). Empty on the hot path unless something was missed."""

    inserted_by: Mapping[str, int] = field(default_factory=dict)
    totals_by: Mapping[str, int] = field(default_factory=dict)
    rejects: int = 0
    conflicts_by: Mapping[str, int] = field(default_factory=dict)
    missed: frozenset[int] = frozenset()
    conflict_keys: frozenset[tuple[str, str, datetime]] = frozenset()
    refused: tuple[tuple[int, str], ...] = ()

    @property
    def meters_inserted(self) -> int:
        return self.inserted_by.get("meter", 0)

    @property
    def vehicles_inserted(self) -> int:
        return self.inserted_by.get("vehicle", 0)

    @property
    def meter_conflicts(self) -> int:
        return self.conflicts_by.get("meter", 0)

    @property
    def vehicle_conflicts(self) -> int:
        return self.conflicts_by.get("vehicle", 0)

    @property
    def inserted(self) -> int:
        return sum(self.inserted_by.values())

    @property
    def conflicts(self) -> int:
        return sum(self.conflicts_by.values())

    @property
    def duplicates(self) -> int:
        return sum(self.totals_by.values()) - self.inserted - self.conflicts

    def __add__(self, other: WriteResult) -> WriteResult:
        def add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}

        return WriteResult(
            add(self.inserted_by, other.inserted_by),
            add(self.totals_by, other.totals_by),
            self.rejects + other.rejects,
            add(self.conflicts_by, other.conflicts_by),
            self.missed | other.missed,
            self.conflict_keys | other.conflict_keys,
            self.refused + other.refused,
        )


def columns(kind: DeviceKind, readings: Iterable[Any]) -> tuple[list[Any], ...]:
    """Column arrays: ids, ts, then the value columns (the order every statement takes)."""
    rows = list(readings)
    return (
        list(map(attrgetter(kind.device), rows)),
        [r.ts for r in rows],
        *(list(map(attrgetter(c), rows)) for c in kind.names),
    )


def _with_received(kind: DeviceKind, pairs: Sequence[Pair]) -> tuple[list[Any], ...]:
    """A history statement's parameters: the reading columns, then the receive times."""
    return (*columns(kind, [r for r, _ in pairs]), [t for _, t in pairs])


def _newest(kind: DeviceKind, readings: Sequence[Pair]) -> list[Any]:
    """The newest reading of each device (the current tables take one row per device)."""
    device = attrgetter(kind.device)
    newest: dict[str, Any] = {}
    for r, _ in readings:
        d = device(r)
        seen = newest.get(d)
        if seen is None or r.ts > seen.ts:
            newest[d] = r
    return list(newest.values())


def _split(readings: Sequence[Pair], closed: dict[date, str]) -> tuple[list[Pair], list[Pair]]:
    keep: list[Pair] = []
    late: list[Pair] = []
    for pair in readings:
        (late if pair[0].ts.date() in closed else keep).append(pair)
    return keep, late


async def _not_in_blocks(
    conn: asyncpg.Connection,
    kind: DeviceKind,
    late: list[Pair],
    closed: dict[date, str],
    conflicts: list[Conflict],
) -> list[Pair]:
    """The late readings not stored in a compacted day's blocks; those stored there with
    other values are added to `conflicts`."""
    device = attrgetter(kind.device)
    cold = [(device(r), r.ts) for r, _ in late if closed[r.ts.date()] == "compacted"]
    if not cold:
        return late
    stored = await stored_in_blocks(conn, kind, cold)
    rest = []
    for r, t in late:
        twin = stored.get((device(r), r.ts))
        if twin is None:
            rest.append((r, t))
        elif (c := compare_with_block(kind, r, t, *twin)) is not None:
            conflicts.append(c)
    return rest


async def _write_late(
    conn: asyncpg.Connection,
    kind: DeviceKind,
    late: list[Pair],
    closed: dict[date, str],
    conflicts: list[Conflict],
    *,
    missed: set[int],
) -> int:
    """Readings of closed days into the late table, unless stored already (a conflict when
    stored with other values: in the blocks, the raw partitions of a `compacting` day, or
    the late table itself). A rare path: conflicts are looked for whenever one was not
    inserted. The id() of each reading not inserted is added to `missed`."""
    every = [r for r, _ in late]
    late = await _not_in_blocks(conn, kind, late, closed, conflicts)
    inserted: set[tuple[str, datetime]] = set()
    if late:
        rows = await conn.fetch(insert_late_sql(kind), *_with_received(kind, late))
        inserted.update((r[0], r[1]) for r in rows)
        if len(rows) < len(late):
            conflicts += await find_stored(conn, kind, late)
            conflicts += await find_stored(conn, kind, late, late=True)
    device = attrgetter(kind.device)
    missed.update(id(r) for r in every if (device(r), r.ts) not in inserted)
    return len(inserted)


async def _insert(
    conn: asyncpg.Connection,
    kind: DeviceKind,
    pairs: Sequence[Pair],
    conflicts: list[Conflict],
    folded: Marks,
    *,
    missed: set[int],
) -> int:
    """One history INSERT (with the rollups of readings in folded buckets, when there are
    any); the readings it did not insert are checked for conflicts, and their id() added to
    `missed`."""
    args = _with_received(kind, pairs)
    # The finest level's watermark is the latest: a reading at or after it is in no folded
    # bucket of any level (the hot path: no rollup statements at all).
    if min(r.ts for r, _ in pairs) < folded[LEVELS[0].name]:
        marks = [folded[lv.name] for lv in LEVELS]
        row = await conn.fetchrow(insert_sql(kind, rolled=True), *args, *marks)
    else:
        row = await conn.fetchrow(insert_sql(kind), *args)
    inserted, not_inserted = (0, None) if row is None else (row[0], row[1])  # an aggregate
    if not_inserted:
        left_out = [pairs[i - 1] for i in not_inserted]
        missed.update(id(r) for r, _ in left_out)
        conflicts += await find_stored(conn, kind, left_out)
    return int(inserted)


def by_kind(readings: Iterable[Pair], kinds: Kinds = REGISTRY) -> dict[DeviceKind, list[Pair]]:
    """Readings grouped by their kind (the kind whose `reading` class each is), kinds in
    registry order."""
    of = {k.reading: k for k in kinds}
    out: dict[DeviceKind, list[Pair]] = {}
    for pair in readings:
        out.setdefault(of[type(pair[0])], []).append(pair)
    return {k: out[k] for k in kinds if k in out}


async def write(
    conn: asyncpg.Connection,
    readings: Mapping[DeviceKind, Sequence[Pair]],
    rejects: Sequence[tuple[Rejected, datetime]],
) -> WriteResult:
    """Write one batch in one transaction: the readings of each kind (each paired with its
    receive time; by_kind() groups them), and the rejects.

    The caller makes sure the partitions of every reading's day exist.
    """
    inserted: dict[str, int] = {}
    conflicts: list[Conflict] = []
    missed: set[int] = set()
    # Per reading on the hot path: one datetime comparison; date() only for the rare old ones.
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    old = {r.ts.date() for pairs in readings.values() for r, _ in pairs if r.ts < midnight}
    # READ COMMITTED whatever the server's default_transaction_isolation says: under
    # REPEATABLE READ the snapshot would be taken by the lock statement, before a fold that
    # commits while it waits, and the watermarks read after it would be the old ones (readings
    # between the old and the new watermark counted in no rollup).
    async with conn.transaction(isolation="read_committed"):
        # Shared with other flushes, exclusive with a fold (fleetdb.fold); the watermarks are
        # read by a statement after it, so a fold committed while waiting is seen.
        await conn.execute(LOCK_SHARED)
        folded = await read_marks(conn)
        closed = await closed_days(conn, old) if old else {}
        for kind, every in readings.items():
            pairs: Sequence[Pair] = every
            n = 0
            if closed:
                pairs, late = _split(every, closed)
                if late:
                    n += await _write_late(conn, kind, late, closed, conflicts, missed=missed)
            if pairs:
                n += await _insert(conn, kind, pairs, conflicts, folded, missed=missed)
            if every:
                # Late readings too: the hot row may move forward (a device back after days).
                await conn.execute(upsert_current_sql(kind), *columns(kind, _newest(kind, every)))
            inserted[kind.name] = n
        if rejects:
            await conn.execute(
                INSERT_REJECTS,
                [r for _, r in rejects],
                [j.topic for j, _ in rejects],
                [j.payload for j, _ in rejects],
                [j.reason for j, _ in rejects],
                [hashlib.sha256(j.payload).digest() for j, _ in rejects],
                [j.field for j, _ in rejects],
                [j.rule for j, _ in rejects],
            )
        # In the batch's transaction: a conflict is kept exactly when its batch commits.
        kept = {}
        for kind in readings:
            mine = [c for c in conflicts if c.kind == kind.name]
            if mine:
                kept[kind.name] = await store_conflicts(conn, mine)
    return WriteResult(
        inserted,
        {k.name: len(v) for k, v in readings.items()},
        len(rejects),
        kept,
        frozenset(missed),
        frozenset((c.kind, c.device, c.ts) for c in conflicts),
    )


async def write_batch(
    conn: asyncpg.Connection,
    meters: Sequence[Pair],
    vehicles: Sequence[Pair],
    rejects: Sequence[tuple[Rejected, datetime]],
) -> WriteResult:
    """write() of the built-in kinds: meter readings, vehicle readings and rejects."""
    return await write(conn, {METER: meters, VEHICLE: vehicles}, rejects)

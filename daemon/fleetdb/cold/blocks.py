"""Reading and writing the blocks of one (kind, day, hour) in the database."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import date
from functools import lru_cache

import asyncpg
import numpy as np
import numpy.typing as npt

from fleetdb.cold.codec import Block, decode, encode
from fleetdb.cold.groups import group_of
from fleetdb.cold.layout import HOUR, KindLayout, hour_start
from fleetdb.kinds import KindRef, resolve


def _fetch_sql(lay: KindLayout) -> str:
    floats = "".join(f", array_send(array_agg({f}))" for f in lay.floats)
    float_cols = "".join(f", {f}" for f in lay.floats)
    # Column arrays in PostgreSQL's binary array format (array_send): numpy reads the elements
    # in place, ~50x cheaper than a Python object per value. The inner ORDER BY sets the
    # arrays' order (array_agg has no parallel plan in PostgreSQL 15; the counts are checked).
    return f"""
SELECT array_send(array_agg(t)), array_send(array_agg(r)), array_send(array_agg(k)){floats} FROM (
    SELECT (extract(epoch FROM ts - $1) * 1000000)::bigint AS t,
           floor(extract(epoch FROM received_at - ts))::bigint AS r,
           ({lay.kwh} * 1000000)::bigint AS k{float_cols}
      FROM {lay.raw} WHERE ts >= $1 AND ts < $2
     ORDER BY {lay.device}, ts
) s"""


def _devices_sql(lay: KindLayout) -> str:
    return f"""
SELECT array_agg(d ORDER BY d), array_agg(n ORDER BY d) FROM (
    SELECT {lay.device} AS d, count(*)::int AS n FROM {lay.raw}
     WHERE ts >= $1 AND ts < $2 GROUP BY 1
) s"""


_ARRAY_HEAD = struct.Struct(">iiIii")  # ndim, has-nulls, element type, length, lower bound


def from_array_send(data: bytes | None, kind: str) -> npt.NDArray[np.generic]:
    """A one-dimensional int8 ('i8') or real ('f4') array without NULLs, from array_send."""
    if not data:
        return np.zeros(0, dtype=kind)
    ndim, nulls, _, n, _ = _ARRAY_HEAD.unpack_from(data)
    if ndim != 1 or nulls:
        raise ValueError("expected a one-dimensional array without NULLs")
    width = np.dtype(kind).itemsize
    rec = np.frombuffer(
        data, dtype=[("len", ">i4"), ("v", ">" + kind)], count=n, offset=_ARRAY_HEAD.size
    )
    if (rec["len"] != width).any():
        raise ValueError("unexpected element length")
    return rec["v"].astype(np.dtype(kind).newbyteorder("="))


async def fetch_hour(
    conn: asyncpg.Connection, kind: KindRef, day: date, hour: int, groups: int
) -> list[Block]:
    """The raw readings of one hour as blocks, one per group of `groups` (empty ones left out)."""
    lay = resolve(kind)
    start = hour_start(day, hour)
    [(devs, counts)] = await conn.fetch(_devices_sql(lay), start, start + HOUR)
    [row] = await conn.fetch(_fetch_sql(lay), start, start + HOUR)
    ts = from_array_send(row[0], "i8")
    if sum(counts or ()) != len(ts):
        raise RuntimeError(f"{kind} readings of {day} hour {hour} changed while compacting")
    whole = Block(
        list(devs or ()),
        np.asarray(counts or (), dtype=np.int64),
        ts.astype(np.int64),
        from_array_send(row[1], "i8").astype(np.int64),
        from_array_send(row[2], "i8").astype(np.int64),
        [from_array_send(row[3 + i], "f4").astype(np.float32) for i in range(len(lay.floats))],
    )
    return split_groups(whole, groups)


def split_groups(whole: Block, groups: int) -> list[Block]:
    """One hour's readings of every device (sorted by device, ts) as blocks, one per group of
    `groups` that has readings."""
    of = [group_of(d, groups) for d in whole.devices]
    starts = whole.starts()
    out = []
    for g in sorted(set(of)):
        members = [i for i, x in enumerate(of) if x == g]
        rows = np.concatenate([np.arange(starts[i], starts[i] + whole.counts[i]) for i in members])
        out.append(
            Block(
                [whole.devices[i] for i in members],
                whole.counts[members],
                whole.ts_us[rows],
                whole.recv_s[rows],
                whole.kwh_u[rows],
                [f[rows] for f in whole.floats],
            )
        )
    return out


_UPSERT = """
INSERT INTO {table} (day, hour, grp, readings, body)
SELECT $1, $2, g, n, b FROM unnest($3::smallint[], $4::int[], $5::bytea[]) AS u(g, n, b)
ON CONFLICT (day, hour, grp) DO UPDATE SET readings = excluded.readings, body = excluded.body
"""


Encoded = list[tuple[int, int, bytes]]


def encode_all(items: Iterable[Block], groups: int) -> Encoded:
    """(group, readings, body) of every non-empty block of a day split into `groups` (CPU
    only: safe in a thread)."""
    return [(group_of(b.devices[0], groups), len(b), encode(b)) for b in items if len(b)]


async def store_encoded(
    conn: asyncpg.Connection, kind: KindRef, day: date, hour: int, items: Encoded
) -> int:
    """Write (or replace) encoded blocks of one hour; returns the readings written."""
    if not items:
        return 0
    await conn.execute(
        _UPSERT.format(table=resolve(kind).cold),
        day,
        hour,
        [g for g, _, _ in items],
        [n for _, n, _ in items],
        [body for _, _, body in items],
    )
    return sum(n for _, n, _ in items)


async def fetch_bodies(
    conn: asyncpg.Connection | asyncpg.Pool,
    table: str,
    day: date,
    groups: Iterable[int] | None,
    *,
    hour: int | None = None,
    for_update: bool = False,
) -> list[tuple[int, bytes]]:
    """(group, body) rows of a cold table for one day (and hour, for blocks), of `groups` or
    of all. `table` comes from fleetdb.kinds only."""
    where = "day = $1" + ("" if hour is None else " AND hour = $2")
    args: list[object] = [day] if hour is None else [day, hour]
    if groups is not None:
        args.append(sorted(set(groups)))
        where += f" AND grp = ANY(${len(args)}::smallint[])"
    lock = " FOR UPDATE" if for_update else ""
    rows = await conn.fetch(f"SELECT grp, body FROM {table} WHERE {where}{lock}", *args)
    return [(r["grp"], r["body"]) for r in rows]


async def load(
    conn: asyncpg.Connection | asyncpg.Pool,
    kind: KindRef,
    day: date,
    hour: int,
    groups: Iterable[int] | None = None,
    *,
    for_update: bool = False,
) -> dict[int, Block]:
    """Decoded blocks of one hour by group (all groups when `groups` is None)."""
    rows = await fetch_bodies(
        conn, resolve(kind).cold, day, groups, hour=hour, for_update=for_update
    )
    # A whole hour is not worth keeping; a block to be modified must be a copy of its own.
    fresh = groups is None or for_update
    return {g: decode(body) if fresh else decode_cached(body) for g, body in rows}


@lru_cache(maxsize=64)
def decode_cached(body: bytes) -> Block:
    """decode() of the blocks one device's reports read, remembered by their bytes (a report
    reads a vehicle's edge blocks for its battery figures and again for its hourly energy; a
    dashboard asks again). Keyed by content, so a merged block is a new entry. Callers must
    not modify the result."""
    return decode(body)

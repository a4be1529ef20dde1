"""Reading and writing the blocks of one (kind, day, hour) in the database."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from itertools import groupby
from typing import Any

import asyncpg

from fleetdb.cold.codec import Block, decode, encode
from fleetdb.cold.layout import HOUR, LAYOUTS, KindLayout, group_of, hour_start
from fleetdb.rollups import Kind


def _fetch_sql(lay: KindLayout) -> str:
    floats = "".join(f", array_agg({f})" for f in lay.floats)
    float_cols = "".join(f", {f}" for f in lay.floats)
    # One row of column arrays: asyncpg decodes int8 and real arrays in C, ~10x cheaper than
    # a record per reading. The inner ORDER BY sets the arrays' order (array_agg has no
    # parallel plan in PostgreSQL 15; fetch_hour checks the order anyway).
    return f"""
SELECT array_agg(d), array_agg(t), array_agg(r), array_agg(k){floats} FROM (
    SELECT {lay.device} AS d, (extract(epoch FROM ts - $1) * 1000000)::bigint AS t,
           floor(extract(epoch FROM received_at - ts))::bigint AS r,
           ({lay.kwh} * 1000000)::bigint AS k{float_cols}
      FROM {lay.raw} WHERE ts >= $1 AND ts < $2
     ORDER BY {lay.device}, ts
) s"""


async def fetch_hour(conn: asyncpg.Connection, kind: Kind, day: date, hour: int) -> list[Block]:
    """The raw readings of one hour as GROUPS blocks (empty groups left out), by group."""
    lay = LAYOUTS[kind]
    start = hour_start(day, hour)
    row = await conn.fetchrow(_fetch_sql(lay), start, start + HOUR)
    return split_groups(row)


def split_groups(row: Any) -> list[Block]:
    """Blocks by group from one row of column arrays sorted by (device, ts)."""
    ids = row[0] or []
    ts, recv, kwh = row[1] or [], row[2] or [], row[3] or []
    floats = [row[4 + i] or [] for i in range(len(row) - 4)]
    blocks: dict[int, Block] = {}
    at = 0
    prev = None
    for dev, run in groupby(ids):
        if prev is not None and dev <= prev:
            raise ValueError("readings are not sorted by device")
        prev = dev
        n = sum(1 for _ in run)
        g = group_of(dev)
        b = blocks.get(g)
        if b is None:
            b = blocks[g] = Block(floats=[[] for _ in floats])
        b.devices.append(dev)
        b.counts.append(n)
        end = at + n
        b.ts_us.extend(ts[at:end])
        b.recv_s.extend(recv[at:end])
        b.kwh_u.extend(kwh[at:end])
        for col, src in zip(b.floats, floats, strict=True):
            col.extend(src[at:end])
        at = end
    return [blocks[g] for g in sorted(blocks)]


_UPSERT = """
INSERT INTO {table} (day, hour, grp, readings, body)
SELECT $1, $2, g, n, b FROM unnest($3::smallint[], $4::int[], $5::bytea[]) AS u(g, n, b)
ON CONFLICT (day, hour, grp) DO UPDATE SET readings = excluded.readings, body = excluded.body
"""


Encoded = list[tuple[int, int, bytes]]


def encode_all(items: Iterable[Block]) -> Encoded:
    """(group, readings, body) of every non-empty block (CPU only: safe in a thread)."""
    return [(group_of(b.devices[0]), len(b), encode(b)) for b in items if len(b)]


async def store_encoded(
    conn: asyncpg.Connection, kind: Kind, day: date, hour: int, items: Encoded
) -> int:
    """Write (or replace) encoded blocks of one hour; returns the readings written."""
    if not items:
        return 0
    await conn.execute(
        _UPSERT.format(table=LAYOUTS[kind].cold),
        day,
        hour,
        [g for g, _, _ in items],
        [n for _, n, _ in items],
        [body for _, _, body in items],
    )
    return sum(n for _, n, _ in items)


async def load(
    conn: asyncpg.Connection | asyncpg.Pool,
    kind: Kind,
    day: date,
    hour: int,
    groups: Iterable[int] | None = None,
    *,
    for_update: bool = False,
) -> dict[int, Block]:
    """Decoded blocks of one hour by group (all groups when `groups` is None)."""
    table = LAYOUTS[kind].cold
    lock = " FOR UPDATE" if for_update else ""
    if groups is None:
        rows = await conn.fetch(
            f"SELECT grp, body FROM {table} WHERE day = $1 AND hour = $2{lock}", day, hour
        )
    else:
        rows = await conn.fetch(
            f"SELECT grp, body FROM {table} WHERE day = $1 AND hour = $2"
            f" AND grp = ANY($3::smallint[]){lock}",
            day,
            hour,
            sorted(set(groups)),
        )
    return {r["grp"]: decode(r["body"]) for r in rows}

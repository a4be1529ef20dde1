"""Folding the rollup levels from stored history instead of feeding them per reading (issue 27).

Each level has a watermark (fleet_rollup_folded.folded_to): its buckets before it are complete,
later ones are not read from it. Ingest transactions hold FOLD_LOCK shared and add to a level
only the readings of buckets already folded (late readings, fleetdb.ingest.writer); the fold
holds it exclusively, so no ingest transaction is in flight while it reads the finer source
and every later one sees the new watermarks. It aggregates the buckets [W, W_new) of each
level from the finer source (raw history for 10 minutes, 10-minute rows for hours, hours for
4-hour blocks), replacing what is stored there, and moves W to W_new in the same
transaction: killed anywhere, either all of it committed or none.

Why: the upserts of three levels per reading were ~17 of fleetd's ~28-30 µs of PostgreSQL CPU
per reading; aggregating closed buckets costs ~1.5 µs per reading for 10-minute buckets and
~0.35 µs per coarser level (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from fleetdb.connect import connect
from fleetdb.kinds import REGISTRY, DeviceKind
from fleetdb.rollups import LEVELS, Level, combine_sql, floor_to, upsert_sql

# One key for the fold (exclusive) and ingest transactions (shared).
FOLD_LOCK = "hashtext('fleet_rollup_fold')"
LOCK_SHARED = f"SELECT pg_advisory_xact_lock_shared({FOLD_LOCK})"
LOCK_EXCLUSIVE = f"SELECT pg_advisory_xact_lock({FOLD_LOCK})"
MARKS = "SELECT level, folded_to FROM fleet_rollup_folded"
_SET = "UPDATE fleet_rollup_folded SET folded_to = $2 WHERE level = $1"

_HELD = "SELECT name FROM fleet_kinds"

# Level name -> its watermark.
Marks = Mapping[str, datetime]


class FoldRefusedError(RuntimeError):
    """The database holds a device kind the fold was not given: the watermarks are shared by
    every kind, so moving them would leave that kind's buckets in no rollup."""


async def marks(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, datetime]:
    """Every level's watermark. Read it in the snapshot of the rollup reads it bounds, or
    before them: a watermark only moves forward, and the buckets below an older one are final."""
    return {r[0]: r[1] for r in await conn.fetch(MARKS)}


def targets(now: datetime, grace: timedelta) -> dict[str, datetime]:
    """Where each level can be folded to at `now`: buckets that ended `grace` ago, a coarser
    level only over whole buckets of the finer one."""
    out: dict[str, datetime] = {}
    edge = now - grace
    for level in LEVELS:
        edge = floor_to(edge, level.width)
        out[level.name] = edge
    return out


def _source(kind: DeviceKind, level: Level) -> str:
    i = LEVELS.index(level)
    if i == 0:
        return upsert_sql(
            kind, level, kind.history, where="WHERE ts >= $1 AND ts < $2", on_conflict="replace"
        )
    return combine_sql(kind, level, LEVELS[i - 1])


@dataclass
class Folded:
    """What one fold did: per level name, the buckets' span [from, to) folded (none: nothing
    was due)."""

    spans: dict[str, tuple[datetime, datetime]]
    behind: bool = False  # a level stopped short of its target (MAX_SPAN): fold again


# At most this much of a level (or one bucket of it) per fold: after a long stop, folding
# catches up in transactions that each hold the ingest lock for a few seconds (an hour of the
# 20,000-device fleet is 1.2 M readings, ~3 s at ~2.7 µs each), well within fleetd's write
# timeout (FLEET_DB_WRITE_TIMEOUT_S, 15 s) that a flush waiting for the lock counts against.
MAX_SPAN = timedelta(hours=1)


async def fold(
    conn: asyncpg.Connection,
    now: datetime,
    grace: timedelta = timedelta(minutes=2),
    kinds: tuple[DeviceKind, ...] = REGISTRY,
) -> Folded:
    """Fold every level towards targets(now, grace) (at most MAX_SPAN each), in one
    transaction."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    behind = False
    want = targets(now, grace)
    # READ COMMITTED whatever the server's default says: each statement after the lock must
    # see every flush that committed while the fold waited for it (under REPEATABLE READ the
    # lock statement takes the snapshot, and those flushes' readings would be in no rollup).
    async with conn.transaction(isolation="read_committed"):
        await conn.execute(LOCK_EXCLUSIVE)
        have = await marks(conn)  # a statement after the lock: sees every committed flush
        missing = sorted({r[0] for r in await conn.fetch(_HELD)} - {k.name for k in kinds})
        if missing:
            raise FoldRefusedError(
                f"the database holds device kinds this fold was not given ({', '.join(missing)}):"
                " the watermarks are every kind's, so nothing is folded (reports stay exact,"
                " reading the finer levels); fold with every kind fleet_kinds lists"
            )
        finer: datetime | None = None
        for level in LEVELS:
            lo = have[level.name]
            hi = min(want[level.name], floor_to(lo + max(MAX_SPAN, level.width), level.width))
            if finer is not None:  # only whole buckets of the finer level, folded already
                hi = min(hi, floor_to(finer, level.width))
            finer = max(lo, hi)
            behind = behind or hi < want[level.name]
            if hi <= lo:
                continue
            for kind in kinds:
                await conn.execute(_source(kind, level), lo, hi)
            await conn.execute(_SET, level.name, hi)
            spans[level.name] = (lo, hi)
    return Folded(spans, behind)


async def fold_until(
    conn: asyncpg.Connection,
    now: datetime,
    grace: timedelta = timedelta(minutes=2),
    kinds: tuple[DeviceKind, ...] = REGISTRY,
) -> dict[str, datetime]:
    """fold() until nothing is due (after a long stop: one MAX_SPAN per transaction); the
    watermarks reached."""
    while (await fold(conn, now, grace, kinds)).spans:
        pass
    return await marks(conn)


async def _main(url: str, grace: timedelta) -> dict[str, str]:
    conn = await connect(url, application_name="fleetd-fold")
    try:
        reached = await fold_until(conn, datetime.now(UTC), grace)
    finally:
        await conn.close()
    return {k: v.isoformat() for k, v in reached.items()}


def main(argv: list[str] | None = None) -> int:
    """`python -m fleetdb.fold [--grace-s S]`: fold every level now, as fleetd does every
    minute (a backfill, or a fleetd that was stopped); FLEET_DATABASE_URL names the database.
    Prints the watermarks reached as one JSON line; exit 1 on failure."""

    parser = argparse.ArgumentParser(prog="python -m fleetdb.fold")
    parser.add_argument("--grace-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    url = os.environ.get("FLEET_DATABASE_URL")
    if not url:
        print("FLEET_DATABASE_URL is not set", file=sys.stderr)
        return 1
    try:
        result = asyncio.run(_main(url, timedelta(seconds=args.grace_s)))
    except Exception as exc:
        print(f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

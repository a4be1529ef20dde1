"""A/B of GET /v1/current's whole listing: PostgreSQL's JSON text against the dicts encoded.

    python -m fleetsim.bench.current_ab --database-url URL [--seed 10000] [--rounds 7 --calls 3]

Each round times `--calls` calls of each side in turn (the order alternates by round), with a
pool of two connections as `fleetctl serve` has: the dicts `current()` builds encoded by the
API's json_body (before issue 27's change), and `current_body()`, the bytes the API now sends.
Both answers are checked equal. `--seed N` first fills meter_current and vehicle_current with N
devices each (the current tables hold one row per device: no history needed); use a scratch
database for it, since it empties both tables.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from fleetctl.analytics import CurrentKind, current, current_body
from fleetdb.connect import connect, create_pool
from fleetsvc.web import json_body

_SEED = """
    TRUNCATE meter_current, vehicle_current;
    INSERT INTO meter_current
    SELECT format('METER-%s', lpad(i::text, 5, '0')), now() - (i % 400) * interval '1 s',
           now() - (i % 5) * interval '1.5 s', (225 + random() * 10)::real,
           round((random() * 100000)::numeric, 6)
      FROM generate_series(1, {n}) i;
    INSERT INTO vehicle_current
    SELECT format('VEHICLE-%s', lpad(i::text, 5, '0')), now() - (i % 400) * interval '1 s',
           now() - (i % 3) * interval '2 s',
           CASE WHEN i % 50 = 0 THEN 100 ELSE (random() * 100)::real END,
           (20 + random() * 20)::real, round((random() * 5000)::numeric, 6)
      FROM generate_series(1, {n}) i;
"""


async def _run(url: str, kind: CurrentKind, rounds: int, calls: int) -> None:
    pool = await create_pool(url, min_size=2, max_size=2, application_name="current-ab")
    try:
        now = datetime.now(UTC)
        if json_body(await current(pool, kind, now=now)) != await current_body(pool, kind, now=now):
            raise SystemExit("the two answers differ")

        async def dicts() -> None:
            json_body(await current(pool, kind))

        async def text() -> None:
            await current_body(pool, kind)

        sides: dict[str, Callable[[], Awaitable[None]]] = {"dicts": dicts, "text": text}
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(rounds):
            for name in sorted(sides, reverse=r % 2 == 1):
                for _ in range(calls):
                    t0 = time.perf_counter()
                    await sides[name]()
                    times[name].append((time.perf_counter() - t0) * 1000)
        a, b = (statistics.median(times[n]) for n in ("dicts", "text"))
        print(
            f"current {kind}: dicts + json {a:.1f} ms, PostgreSQL's text {b:.1f} ms ({b / a:.2f}x)"
        )
    finally:
        await pool.close()


async def _seed(url: str, n: int) -> None:
    conn: asyncpg.Connection = await connect(url)
    try:
        await conn.execute(_SEED.format(n=int(n)))
        for table in ("meter_current", "vehicle_current"):
            await conn.execute(f"VACUUM ANALYZE {table}")  # outside the seed's transaction
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and print each side's median and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m fleetsim.bench.current_ab")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--kind", default="all", choices=("all", "meters", "vehicles"))
    parser.add_argument("--seed", type=int, default=0, help="fill N devices of each kind first")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args(argv)
    if args.seed:
        asyncio.run(_seed(args.database_url, args.seed))
    asyncio.run(_run(args.database_url, args.kind, args.rounds, args.calls))


if __name__ == "__main__":
    main()

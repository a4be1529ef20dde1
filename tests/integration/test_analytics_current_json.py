"""GET /v1/current's whole listings come from PostgreSQL's own JSON text (current_body): the
same bytes as encoding current()'s dicts, on awkward values (issue 27)."""

from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from fleetctl.analytics import CurrentKind, current, current_body
from fleetdb.connect import connect_analytics, create_pool
from fleetsvc.web import json_body

NOW = datetime(2026, 11, 23, 14, 59, 30, 250000, tzinfo=UTC)


@pytest.fixture
async def db(admin_url: str) -> AsyncIterator[asyncpg.Connection]:
    """fleet_admin: writes the current rows directly (one row per device, no history needed)."""
    conn = await connect_analytics(admin_url)
    yield conn
    await conn.close()


def _f32(x: float) -> float:
    """x as a real column stores it."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


# Ties at the 3rd decimal that a float32 holds exactly (Python rounds them to even, numeric's
# round would not), whole numbers, zeros of both signs, values that round to -0.0.
REALS = [0.125, 0.375, 0.625, 0.875, -0.125, -0.375, 21.125, -49.875, 100.0, 0.0, -0.0]
REALS += [-0.004, 0.004, 0.005, 0.015, 98.51, 230.0, 999.995, 1000.0, -50.0, 12.345, 33.335]
KWH = ["0", "0.000001", "0.00005", "0.0001", "12.5", "7", "999999.999999", "0.1", "123.456789"]
# Whole seconds, milli- and microseconds, in the future (negative age), long ago.
STAMPS = [NOW, NOW - timedelta(seconds=60), NOW - timedelta(microseconds=1)]
STAMPS += [NOW + timedelta(seconds=3, milliseconds=1), NOW - timedelta(days=400, microseconds=5)]
STAMPS += [NOW - timedelta(milliseconds=180_000), NOW - timedelta(seconds=180, microseconds=1)]
IDS = ['M"quoted"', "M\\back", "M\tTab", "M-0001", "m lower", "M-0002/x"]


async def _fill(db: asyncpg.Connection, n: int) -> None:
    rnd = random.Random(27)
    meters, vehicles = [], []
    for i in range(n):
        ts, upd = STAMPS[i % len(STAMPS)], STAMPS[(i * 3 + 1) % len(STAMPS)]
        volt = REALS[i] if i < len(REALS) else _f32(rnd.uniform(0.01, 1000))
        kwh = Decimal(KWH[i % len(KWH)]) if i < 3 * len(KWH) else Decimal(f"{rnd.random():.6f}")
        soc = REALS[-i - 1] if i < len(REALS) else _f32(rnd.uniform(0, 100))
        temp = REALS[(i + 5) % len(REALS)] if i < len(REALS) else _f32(rnd.uniform(-50, 150))
        mid = IDS[i] if i < len(IDS) else f"M-{i:05d}"
        meters.append((mid, ts, upd, volt, kwh))
        vehicles.append((f"V{mid[1:]}", ts, upd, soc, temp, kwh))
    await db.executemany("INSERT INTO meter_current VALUES ($1, $2, $3, $4, $5)", meters)
    await db.executemany("INSERT INTO vehicle_current VALUES ($1, $2, $3, $4, $5, $6)", vehicles)


async def _same(db: asyncpg.Connection | asyncpg.Pool) -> None:
    kinds: tuple[CurrentKind, ...] = ("all", "meters", "vehicles")
    for kind in kinds:
        old = json_body(await current(db, kind, now=NOW))
        assert await current_body(db, kind, now=NOW) == old, kind


async def test_current_body_is_current_encoded(db: asyncpg.Connection, database_url: str) -> None:
    await _same(db)  # nothing stored: empty lists
    await _fill(db, 3000)
    await _same(db)
    # A session in another time zone: the same UTC stamps.
    await db.execute("SET TIME ZONE 'Europe/Berlin'")
    await _same(db)
    pool = await create_pool(database_url, min_size=2, max_size=2)
    try:
        await _same(pool)
    finally:
        await pool.close()
